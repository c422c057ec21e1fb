#!/usr/bin/env node
// `node dist/launch-cli.js --ranks K -- <command...>` (what `mpo launch` wires to launchMain).
import { launchMain } from './launch.js';

process.exitCode = await launchMain(process.argv.slice(2));
