// @mpo/queue: the contract between the API and the worker agents. See README.md.
export * from './agents.js';
export * from './asha.js';
export * from './cancel.js';
export * from './config-text.js';
export * from './connection.js';
export * from './flow.js';
export * from './jobs.js';
export * from './llamafactory.js';
export * from './names.js';
export * from './paths.js';
export * from './problems.js';
export * from './rng.js';
export * from './rungs.js';
export { schemaProblems } from './schema-problems.js';
export * from './spec.js';
export * from './sweep.js';
export * from './trainer-protocol.js';
export * from './validate.js';
