import path from 'node:path';
import { PrismaPg } from '@prisma/adapter-pg';
import { defineConfig } from 'prisma/config';

// `engine: "js"` with the pg driver adapter: the CLI never downloads engine binaries.
const url = process.env.DATABASE_URL ?? 'postgresql://root@127.0.0.1:5432/mpo';

export default defineConfig({
  experimental: { adapter: true },
  engine: 'js',
  schema: path.join('prisma', 'schema.prisma'),
  migrations: { path: path.join('prisma', 'migrations') },
  async adapter() {
    return new PrismaPg({ connectionString: url });
  },
});
