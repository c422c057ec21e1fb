import pg from 'pg';

export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgresql://root@127.0.0.1:5432/mpo';

/** A throwaway database on the same server, dropped by the returned function. */
export async function scratchDatabase(tag: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `mpo_scratch_${tag}_${process.pid}_${Date.now() % 1e6}`;
  const admin = new pg.Client({ connectionString: new URL('/postgres', DATABASE_URL).toString() });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  return {
    url: new URL(`/${name}`, DATABASE_URL).toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: new URL('/postgres', DATABASE_URL).toString() });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

export async function query<T extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}
