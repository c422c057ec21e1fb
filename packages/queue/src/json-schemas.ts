// The JSON Schema files published in the repository (schemas/<name>.schema.json) and served by the API
// (GET /schemas/<name>.schema.json), rendered from the TypeBox sources so editors see what the validators
// check. `npm run schemas` writes them; a test fails when a file is out of date.
import type { TSchema } from '@sinclair/typebox';
import { RunSpecSchema } from './spec.js';
import { TrainConfigSchema } from './train-config.js';

/** name → schema: `mpo train` configs and `POST /runs` specs. */
const SOURCES: Record<string, TSchema> = {
  'train-config': TrainConfigSchema,
  'run-spec': RunSpecSchema,
};

export const PUBLISHED_SCHEMA_NAMES = Object.keys(SOURCES);

/** A JSON Schema document (draft 2020-12): TypeBox's schema without its symbols, with `$schema` and `$id`. */
export function publishedSchema(name: string): Record<string, unknown> | undefined {
  const schema = SOURCES[name];
  if (!schema) return undefined;
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: `${name}.schema.json`,
    ...JSON.parse(JSON.stringify(schema)),
  };
}

/** The file's text: two-space JSON and a final newline. */
export function publishedSchemaText(name: string): string | undefined {
  const doc = publishedSchema(name);
  return doc && `${JSON.stringify(doc, null, 2)}\n`;
}
