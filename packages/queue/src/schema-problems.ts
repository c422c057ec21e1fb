// TypeBox's error iterator, reshaped into our Problem list: one problem per
// path, union errors resolved to the variant the value was evidently aiming
// at (its "type" field), and messages phrased for people writing specs.
import type { TSchema } from '@sinclair/typebox';
import { type ValueError, ValueErrorType } from '@sinclair/typebox/errors';
import { Value } from '@sinclair/typebox/value';
import { type Problem, pointerToPath } from './problems.js';

export function schemaProblems(schema: TSchema, value: unknown): Problem[] {
  const out = new Map<string, string>();
  collect(Value.Errors(schema, value), out);
  return [...out].map(([path, reason]) => ({ path, reason }));
}

function collect(errors: Iterable<ValueError>, out: Map<string, string>): void {
  for (const e of errors) {
    const path = pointerToPath(e.path);
    // A child's error explains more than its parent's: keep the first per path,
    // and let a required-property error stand alone.
    if (out.has(path)) continue;
    if (e.type === ValueErrorType.Union) {
      const variant = pickVariant(e.schema, e.value);
      const inner = variant >= 0 ? e.errors[variant] : undefined;
      if (inner) {
        collect(inner, out);
        continue;
      }
    }
    out.set(path, reasonFor(e));
  }
}

/**
 * The union variant the value was evidently aiming at: the one whose `type` literal matches the value's `type`
 * field, else the only object variant when the value is an object (`lossScaling: {...}` against
 * `true | {...}`); -1 when no variant stands out.
 */
function pickVariant(schema: TSchema, value: unknown): number {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return -1;
  const variants = (schema.anyOf ?? []) as TSchema[];
  const type = (value as { type?: unknown }).type;
  if (type !== undefined) return variants.findIndex((v) => v.properties?.type?.const === type);
  const objects = variants.flatMap((v, i) => (v.type === 'object' ? [i] : []));
  return objects.length === 1 ? objects[0]! : -1;
}

function reasonFor(e: ValueError): string {
  const s = e.schema;
  switch (e.type) {
    case ValueErrorType.ObjectRequiredProperty:
      return 'required';
    case ValueErrorType.ObjectAdditionalProperties:
      return 'unknown field';
    case ValueErrorType.Union:
      return `must be ${s.description ?? 'one of the documented forms'}, got ${show(e.value)}`;
    case ValueErrorType.String:
      return `must be a string, got ${show(e.value)}`;
    case ValueErrorType.StringPattern:
      return `must be ${s.description ?? `a string matching ${s.pattern}`}, got ${show(e.value)}`;
    case ValueErrorType.StringMinLength:
      return s.minLength === 1 ? 'must not be empty' : `must have at least ${s.minLength} characters`;
    case ValueErrorType.StringMaxLength:
      return `must have at most ${s.maxLength} characters`;
    case ValueErrorType.Number:
      return `must be a number, got ${show(e.value)}`;
    case ValueErrorType.Integer:
      return `must be an integer, got ${show(e.value)}`;
    case ValueErrorType.NumberMinimum:
    case ValueErrorType.IntegerMinimum:
      return `must be ≥ ${s.minimum}, got ${show(e.value)}`;
    case ValueErrorType.NumberMaximum:
    case ValueErrorType.IntegerMaximum:
      return `must be ≤ ${s.maximum}, got ${show(e.value)}`;
    case ValueErrorType.NumberExclusiveMinimum:
    case ValueErrorType.IntegerExclusiveMinimum:
      return `must be > ${s.exclusiveMinimum}, got ${show(e.value)}`;
    case ValueErrorType.NumberExclusiveMaximum:
    case ValueErrorType.IntegerExclusiveMaximum:
      return `must be < ${s.exclusiveMaximum}, got ${show(e.value)}`;
    case ValueErrorType.Boolean:
      return `must be true or false, got ${show(e.value)}`;
    case ValueErrorType.Literal:
      return `must be ${show(s.const)}, got ${show(e.value)}`;
    case ValueErrorType.Array:
      return `must be an array, got ${show(e.value)}`;
    case ValueErrorType.ArrayMinItems:
      return s.minItems === 1 ? 'must not be empty' : `must have at least ${s.minItems} items`;
    case ValueErrorType.ArrayMaxItems:
      return `must have at most ${s.maxItems} items`;
    case ValueErrorType.ArrayUniqueItems:
      return 'must not repeat items';
    case ValueErrorType.Object:
      return `must be an object, got ${show(e.value)}`;
    case ValueErrorType.ObjectMaxProperties:
      return `must have at most ${s.maxProperties} entries`;
    default:
      return e.message;
  }
}

export function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
