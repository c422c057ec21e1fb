// Types of own-servers.mjs for the TypeScript tests that use it.
export function freePort(): Promise<number>;
export function postgresBin(): string | null;
export interface OwnPostgres {
  url: string;
  port: number;
  dir: string;
  start(): void;
  stop(mode?: 'smart' | 'fast' | 'immediate'): void;
  running(): boolean;
  destroy(): void;
}
export function ownPostgres(opts?: { tag?: string }): Promise<OwnPostgres>;
export interface OwnRedis {
  url: string;
  port: number;
  pause(ms: number): Promise<unknown>;
  stop(): Promise<void>;
}
export function ownRedis(opts?: { appendOnly?: boolean; dir?: string }): Promise<OwnRedis>;
