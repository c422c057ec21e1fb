// GET /schemas/<name>.schema.json: the published JSON Schemas of the training config and the run spec
// (@mpo/queue json-schemas.ts, the same text as the repository's schemas/ files), for editors and tools that
// follow a config's `$schema`. Public, like /healthz: a schema holds nothing secret, and an editor has no token.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { PUBLISHED_SCHEMA_NAMES, publishedSchemaText } from '@mpo/queue';
import { Type } from '@sinclair/typebox';
import { HttpError } from '../errors.js';
import { ProblemResponse } from './common.js';

const SUFFIX = /(\.schema)?\.json$/;

const schemaRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/schemas/:file',
    {
      config: { auth: 'public' },
      schema: {
        tags: ['ops'],
        summary: 'A published JSON Schema',
        description: `The JSON Schema (draft 2020-12) of ${PUBLISHED_SCHEMA_NAMES.map((n) => `\`${n}.schema.json\``).join(', ')} (\`<name>.json\` also answers), as in the repository's schemas/ folder.`,
        security: [],
        params: Type.Object({ file: Type.String({ maxLength: 100 }) }),
        response: {
          200: {
            description: 'the schema document',
            content: {
              'application/schema+json': { schema: Type.Object({}, { additionalProperties: true }) },
            },
          },
          404: ProblemResponse,
        },
      },
    },
    async (req, reply) => {
      const name = req.params.file.replace(SUFFIX, '');
      const text = SUFFIX.test(req.params.file) ? publishedSchemaText(name) : undefined;
      if (!text)
        throw new HttpError(
          404,
          `no schema ${JSON.stringify(req.params.file)}; published: ${PUBLISHED_SCHEMA_NAMES.map((n) => `${n}.schema.json`).join(', ')}`,
        );
      return reply.header('content-type', 'application/schema+json; charset=utf-8').send(text);
    },
  );
};

export default schemaRoutes;
