/** Thrown when a referenced row does not exist (maps to HTTP 404). */
export class NotFoundError extends Error {
  constructor(
    readonly entity: string,
    readonly id: string,
  ) {
    super(`${entity} ${id} not found`);
    this.name = 'NotFoundError';
  }
}

/** Thrown for input the database would reject, before anything is written. */
export class InvalidInputError extends Error {
  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(`${path}: ${reason}`);
    this.name = 'InvalidInputError';
  }
}

// Prisma request errors (P2xxx) that say "try again": pool timeout, transaction API error, write conflict;
// P2010 (raw query failed) carries whatever the driver said, so only its SQLSTATE decides.
const RETRYABLE_PRISMA = new Set(['P2010', 'P2024', 'P2028', 'P2034']);
// SQLSTATE classes no retry can fix: data exception, integrity constraint violation, syntax or access rule.
const PERMANENT_SQLSTATE = /^(22|23|42)/;

/**
 * Whether a failed write can never succeed by retrying it: the row is wrong or gone (a deleted trial's
 * foreign key, a missing record, a value Postgres refuses), not the connection. Anything else (an
 * unreachable server, a dropped connection, a timeout) is an outage and worth retrying. Walks the cause
 * chain, and the driver adapter's error inside Prisma's.
 */
export function isPermanentDbError(err: unknown): boolean {
  for (let e = err as Record<string, unknown> | undefined, depth = 0; e && depth < 8; depth++) {
    if (e instanceof InvalidInputError || e instanceof NotFoundError) return true;
    const code = String(e.code ?? '');
    const meta = e.meta as { driverAdapterError?: { cause?: { originalCode?: string } } } | undefined;
    const sqlstate = String(meta?.driverAdapterError?.cause?.originalCode ?? e.originalCode ?? '');
    if (PERMANENT_SQLSTATE.test(sqlstate) || PERMANENT_SQLSTATE.test(code)) return true;
    if (/^P2\d{3}$/.test(code) && !RETRYABLE_PRISMA.has(code)) return true;
    e = (e.cause as Record<string, unknown> | undefined) ?? undefined;
  }
  return false;
}
