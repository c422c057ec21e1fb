#!/usr/bin/env node
// `npm run api`: the control plane, configured by env (README: PORT, HOST,
// DATABASE_URL, REDIS_URL, MPO_ADMIN_TOKEN, MPO_MODEL_ROOT, MPO_DATA_ROOT,
// MPO_QUEUE_PREFIX, LOG_LEVEL). A failed start-up check (Postgres or Redis
// unreachable, Redis not noeviction) exits 1 with the reason on stderr.
import { errorMessage } from '@mpo/util';
import { buildApp } from './app.js';

const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? '127.0.0.1';

let app: Awaited<ReturnType<typeof buildApp>>;
try {
  app = await buildApp();
} catch (err) {
  process.stderr.write(`api: start-up failed: ${errorMessage(err)}\n`);
  process.exit(1);
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    app.log.info({ signal }, 'shutting down');
    app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
await app.listen({ port, host });
