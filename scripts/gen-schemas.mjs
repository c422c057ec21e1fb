// Writes schemas/<name>.schema.json from the TypeBox sources (packages/queue/src/json-schemas.ts).
// Run after building @mpo/queue: `npm run schemas`. packages/queue/test/json-schemas.test.ts fails
// when a committed file differs from what this writes.
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PUBLISHED_SCHEMA_NAMES, publishedSchemaText } from '@mpo/queue';

const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'schemas');
for (const name of PUBLISHED_SCHEMA_NAMES) {
  const file = join(dir, `${name}.schema.json`);
  writeFileSync(file, publishedSchemaText(name));
  console.log(`wrote ${file}`);
}
