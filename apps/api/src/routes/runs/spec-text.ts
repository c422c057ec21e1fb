// POST /runs bodies in YAML (application/yaml, text/yaml) as well as JSON, and
// LLaMA-Factory training YAMLs as they are (@mpo/queue runSpecFromLlamaFactory:
// a one-trial run; `?name=`, `?targetLanguages=zh,ko` and `?dominantLanguage=`
// fill what such a YAML does not say, else the paper's languages). Problems in
// a YAML body carry their line and column; fields of a LLaMA-Factory YAML that
// are ignored come back as `warnings`, those we cannot honour are a 400.
import { closeSync, openSync, readSync } from 'node:fs';
import {
  ConfigSyntaxError,
  dataFormatOfHead,
  isLlamaFactoryConfig,
  type ParsedConfig,
  type Problem,
  ProblemsError,
  parseConfigText,
  resolveUnderRoot,
  runSpecFromLlamaFactory,
  type SpecContext,
} from '@mpo/queue';
import type { FastifyInstance, FastifyRequest } from 'fastify';

export const YAML_CONTENT_TYPES = ['application/yaml', 'application/x-yaml', 'text/yaml'];

/** Parsed YAML bodies, for the positions of their problems. */
const documents = new WeakMap<object, ParsedConfig>();
/** Ignored LLaMA-Factory fields, per request. */
const warningsOf = new WeakMap<FastifyRequest, string[]>();

export function registerYamlBodies(app: FastifyInstance): void {
  app.addContentTypeParser(YAML_CONTENT_TYPES, { parseAs: 'string' }, (req, text, done) => {
    // The job-tree budget of POST /runs is relative to the request's size, whatever its syntax.
    req.bodyBytes = Buffer.byteLength(String(text));
    try {
      const doc = parseConfigText(String(text), 'request body', 'yaml');
      if (doc.value && typeof doc.value === 'object') documents.set(doc.value, doc);
      done(null, doc.value);
    } catch (err) {
      if (!(err instanceof ConfigSyntaxError)) return done(err as Error, undefined);
      const problem = { path: '', reason: err.reason, line: err.line, column: err.column };
      done(new ProblemsError([problem], 'YAML body'), undefined);
    }
  });
}

/** Problems of a YAML body with the line and column of their field. */
export function withPositions(body: unknown, problems: Problem[]): Problem[] {
  const doc = body && typeof body === 'object' ? documents.get(body) : undefined;
  if (!doc) return problems;
  return problems.map((p) => {
    const at = doc.position(p.path);
    return at ? { ...p, line: at.line, column: at.column } : p;
  });
}

function head(path: string): string | undefined {
  try {
    const fd = openSync(path, 'r');
    try {
      const buf = Buffer.alloc(64 * 1024);
      return buf.subarray(0, readSync(fd, buf, 0, buf.length, 0)).toString('utf8');
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
}

const list = (v: unknown) =>
  typeof v === 'string' && v
    ? v
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : undefined;

/**
 * preValidation of POST /runs: a LLaMA-Factory body becomes a run spec (its
 * YAML positions kept for the fields it maps from), before the spec validator.
 */
export function llamaFactoryHook(ctx: SpecContext) {
  return async (req: FastifyRequest) => {
    if (!isLlamaFactoryConfig(req.body)) return;
    const q = req.query as Record<string, unknown>;
    const targetLanguages = list(q.targetLanguages);
    const r = runSpecFromLlamaFactory(req.body, {
      ...(typeof q.name === 'string' && q.name ? { name: q.name } : {}),
      ...(targetLanguages ? { targetLanguages } : {}),
      ...(typeof q.dominantLanguage === 'string' ? { dominantLanguage: q.dominantLanguage } : {}),
      dataFormatOf: (p) => {
        try {
          const file = resolveUnderRoot(ctx.dataRoot, p);
          const text = head(file);
          return text === undefined ? undefined : dataFormatOfHead(file, text);
        } catch {
          return undefined;
        }
      },
    });
    if (r.problems.length)
      throw new ProblemsError(
        withPositions(req.body, r.problems),
        'LLaMA-Factory config (fields we cannot honour)',
      );
    warningsOf.set(req, r.ignored);
    req.body = r.config;
  };
}

/** The ignored LLaMA-Factory fields of this request (undefined for our own specs). */
export const ignoredFields = (req: FastifyRequest) => warningsOf.get(req);
