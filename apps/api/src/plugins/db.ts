// Postgres through @mpo/db's repositories (the API never touches Prisma). The
// admin token from the environment is stored (hashed) at start-up, so it
// authenticates like any other token and owns the runs it creates.

import { createDb, type Db } from '@mpo/db';
import { errorMessage } from '@mpo/util';
import fp from 'fastify-plugin';

declare module 'fastify' {
  interface FastifyInstance {
    db: Db;
  }
}

export interface DbPluginOptions {
  databaseUrl: string;
  poolSize: number;
  connectTimeoutMs: number;
  adminToken: string | undefined;
  /** An existing Db (tests, embedding); not closed with the app. */
  db?: Db;
}

export default fp<DbPluginOptions>(
  async (app, opts) => {
    const db =
      opts.db ??
      createDb(opts.databaseUrl, { poolSize: opts.poolSize, connectTimeoutMs: opts.connectTimeoutMs });
    app.decorate('db', db);
    if (!opts.db)
      app.addHook('onClose', async () => {
        if (!(await db.close()))
          app.log.warn('Postgres pools did not close in time (a cut connection); going on');
      });
    try {
      await db.ping();
    } catch (err) {
      throw new Error(`Postgres unreachable at ${redact(opts.databaseUrl)}: ${errorMessage(err)}`, {
        cause: err,
      });
    }
    if (opts.adminToken) {
      if (opts.adminToken.length < 16) throw new Error('MPO_ADMIN_TOKEN must be at least 16 characters');
      const admin = await db.tokens.ensure('admin (MPO_ADMIN_TOKEN)', opts.adminToken, { isAdmin: true });
      if (admin.revokedAt)
        throw new Error(
          `MPO_ADMIN_TOKEN is token ${admin.id}, revoked at ${admin.revokedAt.toISOString()}; a revoked token is never revived. Set MPO_ADMIN_TOKEN to a new secret (or unset it and use an existing admin token)`,
        );
      if (!admin.isAdmin)
        throw new Error(
          `MPO_ADMIN_TOKEN is token ${admin.id}, which is not an admin token; set it to a new secret`,
        );
    }
  },
  { name: 'db' },
);

function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable DATABASE_URL)';
  }
}
