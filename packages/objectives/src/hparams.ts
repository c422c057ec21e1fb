// Schema-driven hyperparameter checking. Every problem is reported (not just the first), so a config file with
// three mistakes is fixed in one round trip.
import type { ParamSpec, Problem, RgdSource } from './types.js';

export class HyperparameterError extends Error {
  override name = 'HyperparameterError';
  constructor(
    readonly method: string,
    readonly problems: Problem[],
  ) {
    super(
      `invalid hyperparameters for ${method}: ${problems.map((p) => `${p.path}: ${p.reason}`).join('; ')}`,
    );
  }
}

/** A number hyperparameter that must be > 0 (a scale or a strength: at 0 the method loses its meaning). */
export function positiveNumber(name: string, dflt: number, description: string): ParamSpec {
  return { name, kind: 'number', default: dflt, min: 0, minExclusive: true, description };
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function join(prefix: string, name: string): string {
  return prefix ? `${prefix}.${name}` : name;
}

function checkRgdSource(v: unknown, path: string, out: Problem[]): void {
  if (v === 'reference' || v === 'policy' || v === 'policy-detached') return;
  if (isPlainObject(v)) {
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === 'constant') {
      if (typeof v.constant !== 'number' || !Number.isFinite(v.constant)) {
        out.push({ path: `${path}.constant`, reason: 'must be a finite number' });
      }
      return;
    }
    if (keys.length === 1 && keys[0] === 'language') {
      if (typeof v.language !== 'string' || v.language.trim() === '') {
        out.push({ path: `${path}.language`, reason: 'must be a non-empty language code, e.g. "zh"' });
      }
      return;
    }
  }
  out.push({
    path,
    reason: `must be "reference", "policy", "policy-detached", {"constant": number} or {"language": code}, got ${JSON.stringify(v)}`,
  });
}

function checkValue(spec: ParamSpec, v: unknown, path: string, out: Problem[]): void {
  switch (spec.kind) {
    case 'number': {
      if (typeof v !== 'number' || !Number.isFinite(v)) {
        out.push({ path, reason: `must be a finite number, got ${JSON.stringify(v)}` });
        return;
      }
      if (spec.min !== undefined && (spec.minExclusive ? v <= spec.min : v < spec.min)) {
        out.push({ path, reason: `must be ${spec.minExclusive ? '>' : '≥'} ${spec.min}, got ${v}` });
      }
      if (spec.max !== undefined && (spec.maxExclusive ? v >= spec.max : v > spec.max)) {
        out.push({ path, reason: `must be ${spec.maxExclusive ? '<' : '≤'} ${spec.max}, got ${v}` });
      }
      return;
    }
    case 'boolean':
      if (typeof v !== 'boolean')
        out.push({ path, reason: `must be true or false, got ${JSON.stringify(v)}` });
      return;
    case 'enum':
      if (typeof v !== 'string' || !spec.values.includes(v)) {
        out.push({ path, reason: `must be one of ${spec.values.join(', ')}, got ${JSON.stringify(v)}` });
      }
      return;
    case 'rgdSource':
      checkRgdSource(v, path, out);
      return;
  }
}

/** Problems with `obj` against a schema: not an object, unknown keys, wrong types, out-of-range values. */
export function validateAgainstSchema(schema: readonly ParamSpec[], obj: unknown, prefix = ''): Problem[] {
  const out: Problem[] = [];
  if (obj === undefined) return out;
  if (!isPlainObject(obj)) {
    out.push({ path: prefix || '(root)', reason: `must be an object, got ${JSON.stringify(obj)}` });
    return out;
  }
  const known = new Set(schema.map((s) => s.name));
  for (const key of Object.keys(obj)) {
    if (!known.has(key)) {
      const names = [...known].join(', ') || '(none)';
      out.push({ path: join(prefix, key), reason: `unknown hyperparameter; expected one of: ${names}` });
    }
  }
  for (const spec of schema) {
    const v = obj[spec.name];
    if (v !== undefined) checkValue(spec, v, join(prefix, spec.name), out);
  }
  return out;
}

/** Defaults overlaid with `partial`; throws HyperparameterError listing every problem. */
export function resolveAgainstSchema<H extends object>(
  method: string,
  schema: readonly ParamSpec[],
  defaults: Readonly<H>,
  partial: unknown,
): H {
  const problems = validateAgainstSchema(schema, partial);
  if (problems.length > 0) throw new HyperparameterError(method, problems);
  const merged: Record<string, unknown> = { ...defaults };
  if (partial) {
    for (const [k, v] of Object.entries(partial as Record<string, unknown>))
      if (v !== undefined) merged[k] = v;
  }
  return merged as H;
}

export function isRgdSource(x: unknown): x is RgdSource {
  const out: Problem[] = [];
  checkRgdSource(x, '', out);
  return out.length === 0;
}
