// `npm run worker` (node apps/worker/dist/main.js): one worker agent,
// configured by the environment (see config.ts and the README). SIGTERM or
// SIGINT: running trials finish their step, checkpoint and go back to the
// queue, then the agent exits 0. A second signal exits at once (the trials'
// jobs come back after their locks expire and resume from their checkpoints).
import { Agent } from './agent.js';
import { loadAgentConfig } from './config.js';
import { createLogger } from './log.js';

const cfg = loadAgentConfig();
const log = createLogger(cfg.logLevel, { agent: cfg.id });
const agent = new Agent(cfg, { log });

let signalled = false;
const shutdown = (signal: NodeJS.Signals) => {
  if (signalled) {
    log.warn({ signal }, 'second signal: exiting without waiting for running jobs');
    process.exit(1);
  }
  signalled = true;
  log.info({ signal }, 'signal received');
  agent.stop().then(
    () => process.exit(0),
    (err) => {
      log.error({ err }, 'shutdown failed');
      process.exit(1);
    },
  );
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));

try {
  await agent.start();
} catch (err) {
  log.fatal({ err }, 'agent failed to start');
  process.exit(1);
}
