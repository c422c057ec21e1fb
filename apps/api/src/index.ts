export { type BuildAppOptions, buildApp } from './app.js';
export { type AppConfig, loadConfig, ONE_MIB } from './config.js';
export { unavailableDependency } from './errors.js';
export { OutboxPublisher } from './plugins/outbox.js';
