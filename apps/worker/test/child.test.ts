// child.ts: what a child process may see of the agent's environment.
import { describe, expect, it } from 'vitest';
import { startChild, withheldEnv } from '../src/child.js';

describe('child environment', () => {
  it('keeps database, queue and admin credentials from trainers, and judge keys from all but judges', async () => {
    const saved = { ...process.env };
    Object.assign(process.env, {
      DATABASE_URL: 'postgresql://u:secret@db/mpo',
      REDIS_URL: 'redis://:secret@redis:6379',
      MPO_ADMIN_TOKEN: 'admin-secret-123456',
      MPO_JUDGE_API_KEY: 'sk-judge',
      MPO_KEEP_ME: 'visible',
    });
    try {
      const envOf = async (judge: boolean) => {
        const lines: string[] = [];
        const child = startChild({
          command: [process.execPath, '-e', 'console.log(JSON.stringify(process.env))'],
          ranks: 1,
          lease: { device: 'cpu', slots: [0], ids: [0] },
          log: { debug() {} } as never,
          onStdoutLine: (l) => void lines.push(l),
          judge,
        });
        await child.exited;
        return JSON.parse(lines.join('')) as Record<string, string>;
      };
      const trainer = await envOf(false);
      for (const k of ['DATABASE_URL', 'REDIS_URL', 'MPO_ADMIN_TOKEN', 'MPO_JUDGE_API_KEY'])
        expect(trainer[k], k).toBeUndefined();
      expect(trainer.MPO_KEEP_ME).toBe('visible');
      const judge = await envOf(true);
      expect(judge.MPO_JUDGE_API_KEY).toBe('sk-judge');
      expect(judge.DATABASE_URL).toBeUndefined();
      expect(withheldEnv({ MPO_JUDGE_URL: 'x' }, { judge: false })).toHaveProperty(
        'MPO_JUDGE_URL',
        undefined,
      );
    } finally {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
    }
  });
});
