// @mpo/worker: the worker agent (main.ts runs one). Exported for tests and tools.
export { Agent, type AgentOptions, LATER_DELAY_MS, NEVER_BACKOFF_MS, NEVER_DELAY_MS } from './agent.js';
export { type AgentConfig, DEFAULT_CLI, loadAgentConfig, parseCommand, REPO_ROOT } from './config.js';
export {
  cpuCores,
  type DeviceSlots,
  detectDevices,
  detectGpus,
  parseDevices,
  type SlotLease,
  SlotPool,
} from './devices.js';
export { evalConfig } from './eval-run.js';
export { createLogger, jobLogger } from './log.js';
export type { Outcome } from './outcome.js';
export { newProtocolFile, ProtocolFollower, replayProtocol } from './protocol.js';
export { backoffMs, retrying, withTimeout } from './retry.js';
export { finalizeRun, type SweepSummary } from './sweep-run.js';
export { buildTrainConfig, guessDataFormat, JobConfigError, type Roots, trialDir } from './trainer-config.js';
export { acquireTrialLock, pidAlive } from './trial-lock.js';
export { type RungDue, TrialState } from './trial-state.js';
export { TrialWriter, type TrialWriterOptions } from './trial-writer.js';
