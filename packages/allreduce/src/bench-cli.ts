#!/usr/bin/env node
// `npm run bench -w @mpo/allreduce` / `node dist/bench-cli.js --ranks 2 --json`
import { allreduceBenchMain } from './bench.js';

process.exitCode = await allreduceBenchMain(process.argv.slice(2));
