import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
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
}

export class TokenRepository {
  /** `pool`, when given, serves `verify` (every API request) without Prisma's per-query overhead. */
  constructor(
    private readonly prisma: PrismaClient,
    private readonly pool?: pg.Pool,
  ) {}

  /** Issues a new token; the secret is returned once and never stored. */
  async issue(
    name: string,
    opts: { isAdmin?: boolean } = {},
  ): Promise<{ secret: string; identity: TokenIdentity }> {
    const secret = `mpo_${randomBytes(24).toString('base64url')}`;
    const row = await this.prisma.apiToken.create({
      data: { name, tokenHash: hashToken(secret), isAdmin: opts.isAdmin ?? false },
    });
    return { secret, identity: { id: row.id, name: row.name, isAdmin: row.isAdmin } };
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
          }>(
            'SELECT "id"::text AS "id", "name", "isAdmin", "tokenHash", "revokedAt" FROM "ApiToken" WHERE "tokenHash" = $1',
            [digest],
          )
        ).rows[0]
      : await this.prisma.apiToken.findUnique({ where: { tokenHash: digest } });
    if (!row || row.revokedAt || !digestsEqual(row.tokenHash, digest)) return null;
    return { id: row.id, name: row.name, isAdmin: row.isAdmin };
  }

  async revoke(id: string): Promise<void> {
    await this.prisma.apiToken.update({ where: { id }, data: { revokedAt: new Date() } });
  }
}
