// JSON bodies: Fastify's own parser (prototype-poisoning checks kept) behind a
// nesting check. A body nested 100,000 arrays deep parses, but every recursive
// walk over it afterwards (schema validation, logging) overflows the stack and
// ends in a 500; it is refused here with a 400 before it is parsed. The body's
// size in bytes is kept on the request: POST /runs bounds what a request may
// expand into relative to it.
import { ProblemsError } from '@mpo/queue';
import fp from 'fastify-plugin';

declare module 'fastify' {
  interface FastifyRequest {
    /** Bytes of the JSON body as received (0 without one). */
    bodyBytes: number;
  }
}

/** Deepest nesting of arrays and objects a body may have (a run spec needs 5). */
export const MAX_JSON_DEPTH = 32;

/** The nesting depth of a JSON text, stopping as soon as it exceeds `limit` (strings skipped). */
export function jsonDepthExceeds(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 91 /* [ */ || c === 123 /* { */) {
      if (++depth > limit) return true;
    } else if (c === 93 /* ] */ || c === 125 /* } */) depth--;
  }
  return false;
}

export default fp(
  async (app) => {
    app.decorateRequest('bodyBytes', 0);
    const parse = app.getDefaultJsonParser('error', 'error');
    app.removeContentTypeParser('application/json');
    app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
      const text = body as string;
      req.bodyBytes = Buffer.byteLength(text);
      if (jsonDepthExceeds(text, MAX_JSON_DEPTH)) {
        done(
          new ProblemsError(
            [{ path: '(body)', reason: `nested deeper than ${MAX_JSON_DEPTH} levels of arrays and objects` }],
            'request body',
          ),
          undefined,
        );
        return;
      }
      parse(req, text, done);
    });
  },
  { name: 'json-body' },
);
