import { type TLiteral, Type } from '@sinclair/typebox';

export const ErrorSchema = Type.Object(
  {
    statusCode: Type.Integer(),
    error: Type.String(),
    message: Type.String(),
    problems: Type.Optional(
      Type.Array(Type.Object({ path: Type.String(), reason: Type.String() }), {
        description: 'every problem found, with its path in the request',
      }),
    ),
  },
  { title: 'Error' },
);

/** Dates leave as ISO strings (fast-json-stringify formats Date objects for format date-time). */
export const DateTime = Type.Unsafe<Date | string>(Type.String({ format: 'date-time' }));
export const NullableDateTime = Type.Union([DateTime, Type.Null()]);
export const Uuid = Type.String({ format: 'uuid' });

/** Largest value of a Postgres integer column (steps are int4): larger query values would make Postgres fail. */
export const MAX_INT4 = 2 ** 31 - 1;
/** Deepest page a list may be read at (offsets are skipped rows: large ones are slow and overflow int4). */
export const MAX_OFFSET = 1_000_000;
/** Query strings never carry NUL (Postgres text cannot hold it: the query would fail with a 500). */
export const NO_NUL = '^[^\\u0000]*$';

/** The error responses most routes share, for the OpenAPI document. */
export const errorResponses = {
  400: ErrorSchema,
  401: ErrorSchema,
  404: ErrorSchema,
  503: ErrorSchema,
};

/** A union of string literals, typed as their union. */
export const literals = <const T extends readonly string[]>(values: T) =>
  Type.Union(values.map((v) => Type.Literal(v)) as TLiteral<T[number]>[]);
