// Each command registers itself on import.
import './allreduce.js';
import './bench.js';
import './completion.js';
import './data.js';
import './eval.js';
import './launch.js';
import './plan.js';
import './queues.js';
import './report.js';
import './reproduce.js';
import './runs.js';
import './score.js';
import './testbed.js';
import './train.js';
import './version.js';
