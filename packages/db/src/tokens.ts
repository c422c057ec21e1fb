import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { RUN_TERMINAL_STATUSES, TRIAL_ACTIVE_STATUSES } from '@mpo/queue/statuses';
import type pg from 'pg';
import type { PrismaClient } from './generated/prisma/client.js';

/** sha256 hex of a bearer token; only this is stored. */
export const hashToken = (secret: string) => createHash('sha256').update(secret, 'utf8').digest('hex');

/** Constant-time comparison of two hex digests of equal length. */
export function digestsEqual(a: string, b: string): boolean {
  const ba = Buffer.from(a, 'hex');
  const bb = Buffer.from(b, 'hex');
  return ba.length === bb.length && timingSafeEqual(ba, bb);
}

export interface TokenIdentity {
  id: string;
  name: string;
  isAdmin: boolean;
  /** The token's own limits, where the lookup read them (bearer requests do). */
  quotas?: TokenQuotas;
}

/** An admin's per-token limits; null = the deployment's default. */
export interface TokenQuotas {
  maxActiveTrials: number | null;
  maxRankSteps: number | null;
  rateLimitPerMinute: number | null;
}

/** What a token has in flight: trials not finished (TRIAL_ACTIVE_STATUSES) and their rank-steps. */
export interface TokenUsage {
  activeTrials: number;
  rankSteps: number;
}

const quotasOf = (row: {
  maxActiveTrials: number | null;
  maxRankSteps: bigint | string | number | null;
  rateLimitPerMinute: number | null;
}): TokenQuotas => ({
  maxActiveTrials: row.maxActiveTrials,
  maxRankSteps: row.maxRankSteps === null ? null : Number(row.maxRankSteps),
  rateLimitPerMinute: row.rateLimitPerMinute,
});

export class TokenRepository {
  /** `pool`, when given, serves `verify` (every API request) without Prisma's per-query overhead. */
  constructor(
    private readonly prisma: PrismaClient,
    private readonly pool?: pg.Pool,
  ) {}

  /** Issues a new token; the secret is returned once and never stored. */
  async issue(
    name: string,
    opts: { isAdmin?: boolean; quotas?: Partial<TokenQuotas> } = {},
  ): Promise<{ secret: string; identity: TokenIdentity & { quotas: TokenQuotas } }> {
    const secret = `mpo_${randomBytes(24).toString('base64url')}`;
    const { maxRankSteps, ...rest } = opts.quotas ?? {};
    const row = await this.prisma.apiToken.create({
      data: {
        name,
        tokenHash: hashToken(secret),
        isAdmin: opts.isAdmin ?? false,
        ...rest,
        ...(maxRankSteps != null ? { maxRankSteps: BigInt(maxRankSteps) } : {}),
      },
    });
    return {
      secret,
      identity: { id: row.id, name: row.name, isAdmin: row.isAdmin, quotas: quotasOf(row) },
    };
  }

  /**
   * Stores a known secret (the admin token from the environment) idempotently,
   * so runs it creates have an owner row like any other token's. A revoked
   * token stays revoked (`revokedAt` says when): restarting with it must not
   * bring it back.
   */
  async ensure(
    name: string,
    secret: string,
    opts: { isAdmin?: boolean } = {},
  ): Promise<TokenIdentity & { revokedAt: Date | null }> {
    const tokenHash = hashToken(secret);
    const row = await this.prisma.apiToken.upsert({
      where: { tokenHash },
      create: { name, tokenHash, isAdmin: opts.isAdmin ?? false },
      update: {},
    });
    return { id: row.id, name: row.name, isAdmin: row.isAdmin, revokedAt: row.revokedAt };
  }

  /** The identity of an active (not revoked) token by id, or null: sessions re-check their token on every request. */
  async active(id: string): Promise<TokenIdentity | null> {
    const row = await this.prisma.apiToken.findUnique({ where: { id } });
    if (!row || row.revokedAt) return null;
    return { id: row.id, name: row.name, isAdmin: row.isAdmin };
  }

  /**
   * Resolves a presented secret. The lookup is by digest (an index probe, whose
   * timing reveals nothing about the secret), then the digests are compared in
   * constant time.
   */
  async verify(secret: string): Promise<TokenIdentity | null> {
    const digest = hashToken(secret);
    const row = this.pool
      ? (
          await this.pool.query<{
            id: string;
            name: string;
            isAdmin: boolean;
            tokenHash: string;
            revokedAt: Date | null;
            maxActiveTrials: number | null;
            maxRankSteps: string | null;
            rateLimitPerMinute: number | null;
          }>(
            'SELECT "id"::text AS "id", "name", "isAdmin", "tokenHash", "revokedAt", "maxActiveTrials", "maxRankSteps", "rateLimitPerMinute" FROM "ApiToken" WHERE "tokenHash" = $1',
            [digest],
          )
        ).rows[0]
      : await this.prisma.apiToken.findUnique({ where: { tokenHash: digest } });
    if (!row || row.revokedAt || !digestsEqual(row.tokenHash, digest)) return null;
    return { id: row.id, name: row.name, isAdmin: row.isAdmin, quotas: quotasOf(row) };
  }

  /** A token's quotas (null fields: the default), or null when there is no such token. */
  async quotas(id: string): Promise<TokenQuotas | null> {
    const row = await this.prisma.apiToken.findUnique({ where: { id } });
    return row ? quotasOf(row) : null;
  }

  /** Sets the given quotas (undefined: unchanged, null: back to the default); throws P2025 for an unknown id. */
  async setQuotas(
    id: string,
    quotas: Partial<TokenQuotas>,
  ): Promise<TokenIdentity & { quotas: TokenQuotas; revokedAt: Date | null }> {
    const { maxRankSteps, ...rest } = quotas;
    const row = await this.prisma.apiToken.update({
      where: { id },
      data: {
        ...rest,
        ...(maxRankSteps !== undefined
          ? { maxRankSteps: maxRankSteps === null ? null : BigInt(maxRankSteps) }
          : {}),
      },
    });
    return {
      id: row.id,
      name: row.name,
      isAdmin: row.isAdmin,
      quotas: quotasOf(row),
      revokedAt: row.revokedAt,
    };
  }

  /**
   * What a token has in flight: its unfinished trials, and their rank-steps
   * (ranks per trial, from the run's spec, × the trial's total steps; a trial
   * without a step count counts one step per rank).
   */
  /**
   * A token's unfinished trials and their rank-steps. Trials a run has not created yet (created lazily,
   * a window ahead of the agents) count as queued, with the rank-steps the run planned for them, unless
   * the run was cancelled (they will be created CANCELLED).
   */
  async usage(id: string): Promise<TokenUsage> {
    const [row] = await this.prisma.$queryRaw<{ trials: bigint | null; rankSteps: bigint | null }[]>`
      WITH created AS (
        SELECT count(*)::bigint AS "trials",
               sum(coalesce((r."spec"->'resources'->>'ranksPerTrial')::bigint, 1)
                   * coalesce(t."totalSteps", 1))::bigint AS "rankSteps"
        FROM "Trial" t JOIN "Run" r ON r."id" = t."runId"
        WHERE r."ownerTokenId" = ${id}::uuid
          AND t."status"::text = ANY(${[...TRIAL_ACTIVE_STATUSES]}::text[])
      ), uncreated AS (
        SELECT sum(r."trialCount" - c."n")::bigint AS "trials",
               sum(greatest(0, r."rankSteps" - c."rankSteps"))::bigint AS "rankSteps"
        FROM "Run" r CROSS JOIN LATERAL (
          SELECT count(*) AS "n",
                 coalesce(sum(coalesce((r."spec"->'resources'->>'ranksPerTrial')::bigint, 1)
                              * coalesce(t."totalSteps", 1)), 0) AS "rankSteps"
          FROM "Trial" t WHERE t."runId" = r."id") c
        WHERE r."ownerTokenId" = ${id}::uuid AND r."cancelRequestedAt" IS NULL
          AND NOT (r."status"::text = ANY(${[...RUN_TERMINAL_STATUSES]}::text[])) AND r."trialCount" > c."n"
      )
      SELECT coalesce(created."trials", 0) + coalesce(uncreated."trials", 0) AS "trials",
             coalesce(created."rankSteps", 0) + coalesce(uncreated."rankSteps", 0) AS "rankSteps"
      FROM created, uncreated`;
    return { activeTrials: Number(row?.trials ?? 0), rankSteps: Number(row?.rankSteps ?? 0) };
  }

  async revoke(id: string): Promise<void> {
    await this.prisma.apiToken.update({ where: { id }, data: { revokedAt: new Date() } });
  }
}
