// Each command registers itself on import.
import './allreduce.js';
import './launch.js';
import './train.js';
import './version.js';
