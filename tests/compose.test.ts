import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

// Docker does not run on our machines, so the compose file is checked by parsing it.
const root = resolve(import.meta.dirname, '..');
const compose = parse(readFileSync(resolve(root, 'docker-compose.yml'), 'utf8'), { merge: true });

describe('docker-compose.yml', () => {
  it('declares redis, postgres, api and worker with healthchecks', () => {
    for (const s of ['redis', 'postgres', 'api', 'worker']) {
      expect(compose.services[s], s).toBeDefined();
      expect(compose.services[s].healthcheck?.test, `${s} healthcheck`).toBeDefined();
    }
  });

  it('runs Redis 7 with noeviction and AOF, as BullMQ requires', () => {
    const redis = compose.services.redis;
    expect(redis.image).toMatch(/^redis:7/);
    const args: string[] = redis.command;
    expect(args[args.indexOf('--maxmemory-policy') + 1]).toBe('noeviction');
    expect(args[args.indexOf('--appendonly') + 1]).toBe('yes');
  });

  it('runs Postgres 15 or newer', () => {
    const major = Number(/^postgres:(\d+)/.exec(compose.services.postgres.image)?.[1]);
    expect(major).toBeGreaterThanOrEqual(15);
  });

  it('runs the default worker on the CPU image and reserves GPUs only for the gpu-profile worker', () => {
    // Issue 15: the CPU image (Debian's CPU libtorch) cannot use a GPU, so the default worker asks for none.
    const cpu = compose.services.worker;
    expect(cpu.build.dockerfile).toBe('infra/Dockerfile');
    expect(cpu.deploy?.resources?.reservations?.devices).toBeUndefined();
    expect(cpu.environment.MPO_DEVICES).toMatch(/^\$\{MPO_DEVICES:-cpu\}$/);
    expect(cpu.profiles).toBeUndefined();
    const gpu = compose.services['worker-gpu'];
    expect(gpu.profiles).toEqual(['gpu']);
    expect(gpu.build.dockerfile).toBe('infra/Dockerfile.gpu');
    const devices = gpu.deploy.resources.reservations.devices;
    expect(devices.some((d: { capabilities: string[] }) => d.capabilities.includes('gpu'))).toBe(true);
    expect(gpu.command).toEqual(cpu.command);
  });

  it('wires every app to Redis and Postgres', () => {
    for (const s of ['api', 'worker', 'worker-gpu']) {
      const env = compose.services[s].environment;
      expect(env.DATABASE_URL, s).toMatch(/^postgresql:\/\/.*@postgres:5432\//);
      expect(env.REDIS_URL, s).toMatch(/^redis:\/\/:\$\{REDIS_PASSWORD:\?[^}]+\}@redis:6379$/);
      expect(compose.services[s].depends_on.redis.condition).toBe('service_healthy');
      expect(compose.services[s].depends_on.postgres.condition).toBe('service_healthy');
    }
    expect(compose.services.api.environment.MPO_ADMIN_TOKEN).toBeDefined();
  });

  it('documents every environment variable it reads', () => {
    const text = readFileSync(resolve(root, 'docker-compose.yml'), 'utf8');
    const header = text.split('\nname:')[0]!;
    const used = new Set([...text.matchAll(/\$\{([A-Z_]+)/g)].map((m) => m[1]!));
    for (const v of used) expect(header, `${v} documented in the header`).toContain(v);
  });

  it('has safe deployment defaults: API on 0.0.0.0, a worker grace above its checkpoint grace, no default passwords', () => {
    const text = readFileSync(resolve(root, 'docker-compose.yml'), 'utf8');
    // main.ts listens on 127.0.0.1 unless HOST says otherwise: unreachable through the published port.
    expect(compose.services.api.environment.HOST).toBe('0.0.0.0');
    // Docker SIGKILLs after stop_grace_period (default 10 s); the agent's checkpoint grace
    // (MPO_STOP_GRACE_MS, apps/worker/src/config.ts: 120 s) must fit inside it.
    const grace = Number(/^(\d+)s$/.exec(compose.services.worker.stop_grace_period)?.[1]);
    const checkpointGraceMs = Number(compose.services.worker.environment.MPO_STOP_GRACE_MS);
    expect(checkpointGraceMs).toBeGreaterThan(0);
    expect(grace * 1000).toBeGreaterThan(checkpointGraceMs);
    // Passwords come from the environment, with no fallback ("${X:-default}").
    expect(text).not.toMatch(/\$\{[A-Z_]*(PASSWORD|TOKEN)[A-Z_]*:-/);
    expect(compose.services.postgres.environment.POSTGRES_PASSWORD).toMatch(/^\$\{POSTGRES_PASSWORD:\?/);
    const redis: string[] = compose.services.redis.command;
    expect(redis[redis.indexOf('--requirepass') + 1]).toMatch(/^\$\{REDIS_PASSWORD:\?/);
    // The healthcheck authenticates too (redis-cli takes the password from REDISCLI_AUTH).
    expect(compose.services.redis.environment.REDISCLI_AUTH).toMatch(/^\$\{REDIS_PASSWORD:\?/);
  });
});

describe('the image', () => {
  const dockerfile = readFileSync(resolve(root, 'infra/Dockerfile'), 'utf8');
  const ignore = readFileSync(resolve(root, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim());

  it('runs as a non-root user', () => {
    const users = [...dockerfile.matchAll(/^USER\s+(\S+)/gm)].map((m) => m[1]);
    expect(users.length).toBeGreaterThan(0);
    expect(['root', '0']).not.toContain(users.at(-1));
  });

  it('leaves secrets, local runs and artifacts out of the build context', () => {
    for (const entry of ['.env', '.env.*', 'runs', 'artifacts']) expect(ignore, entry).toContain(entry);
  });
});
