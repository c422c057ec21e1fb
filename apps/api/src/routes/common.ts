import { type TLiteral, Type } from '@sinclair/typebox';

/** An RFC 9457 problem document (application/problem+json); `problems` is our extension member. */
export const ErrorSchema = Type.Object(
  {
    type: Type.String({
      description: 'URI naming the kind of problem: about:blank (see status) or urn:mpo:problem:*',
    }),
    title: Type.String({ description: 'short summary of the kind of problem' }),
    status: Type.Integer({ description: 'the HTTP status code' }),
    detail: Type.String({ description: 'what went wrong with this request' }),
    instance: Type.Optional(Type.String()),
    problems: Type.Optional(
      Type.Array(
        Type.Object({
          path: Type.String(),
          reason: Type.String(),
          line: Type.Optional(Type.Integer({ description: 'YAML bodies: 1-based line of the field' })),
          column: Type.Optional(Type.Integer()),
        }),
        {
          description: 'every problem found, with its path in the request',
        },
      ),
    ),
  },
  { title: 'Problem' },
);

/** Dates leave as ISO strings (fast-json-stringify formats Date objects for format date-time). */
export const DateTime = Type.Unsafe<Date | string>(Type.String({ format: 'date-time' }));
export const NullableDateTime = Type.Union([DateTime, Type.Null()]);
export const Uuid = Type.String({ format: 'uuid' });

/** A problem response, declared as application/problem+json (the media type errors.ts sends it as). */
export const ProblemResponse = {
  description: 'an RFC 9457 problem document',
  content: { 'application/problem+json': { schema: ErrorSchema } },
};
/** Largest value of a Postgres integer column (steps are int4): larger query values would make Postgres fail. */
export const MAX_INT4 = 2 ** 31 - 1;
/** Deepest page a list may be read at (offsets are skipped rows: large ones are slow and overflow int4). */
export const MAX_OFFSET = 1_000_000;
/** Query strings never carry NUL (Postgres text cannot hold it: the query would fail with a 500). */
export const NO_NUL = '^[^\\u0000]*$';

/** The error responses most routes share, for the OpenAPI document. */
export const errorResponses = {
  400: ProblemResponse,
  401: ProblemResponse,
  404: ProblemResponse,
  // Over the token's rate or trial quotas (plugins/quotas.ts), with Retry-After.
  429: ProblemResponse,
  503: ProblemResponse,
};

/** A union of string literals, typed as their union. */
export const literals = <const T extends readonly string[]>(values: T) =>
  Type.Union(values.map((v) => Type.Literal(v)) as TLiteral<T[number]>[]);
