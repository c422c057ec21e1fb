// Durable checkpoints (issue 16, item 5): manifest, fsync-then-rename, a torn
// newest checkpoint skipped on resume, files over 2 GiB hashed by streaming.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  latestCheckpoint,
  MANIFEST_FILE,
  manifestOf,
  parseTrainConfig,
  runTraining,
  verifyDir,
  writeDurableDir,
} from '../src/index.js';
import { byteEncoders, tinyMpoConfig, tmp } from './helpers.js';

const sha256sum = (path: string) => execFileSync('sha256sum', [path], { encoding: 'utf8' }).split(' ')[0];

describe('writeDurableDir', () => {
  it('renames a complete folder with a manifest into place and keeps the newest `keep`', async () => {
    const root = tmp('durable');
    mkdirSync(join(root, 'step-00000001.tmp-999')); // a stray temporary from a crashed writer
    for (const step of [1, 2, 3]) {
      const { dir, manifest } = await writeDurableDir(
        root,
        `step-0000000${step}`,
        async (t) => {
          writeFileSync(join(t, 'a.bin'), Buffer.alloc(1000 * step, step));
          writeFileSync(join(t, 'b.json'), JSON.stringify({ step }));
        },
        { keep: 2, older: /^step-\d{8}$/ },
      );
      expect(manifest.files['a.bin']).toEqual({ bytes: 1000 * step, sha256: sha256sum(join(dir, 'a.bin')) });
      expect(manifest.files['b.json']!.sha256).toBe(sha256sum(join(dir, 'b.json')));
      expect(JSON.parse(readFileSync(join(dir, MANIFEST_FILE), 'utf8'))).toEqual(manifest);
    }
    expect(readdirSync(root).sort()).toEqual(['step-00000002', 'step-00000003']);
    expect(verifyDir(join(root, 'step-00000003'))).toMatchObject({ ok: true });
    writeFileSync(join(root, 'step-00000003', 'b.json'), '{"step":4}');
    expect(verifyDir(join(root, 'step-00000003'))).toEqual({
      ok: false,
      reason: 'b.json does not match its sha256',
    });
  });

  // Reads 4 GiB (ours and sha256sum's): about 40 s on the shared CI machine, so it runs with the slow suites.
  it.runIf(process.env.MPO_SLOW_TESTS === '1')(
    'hashes a file over 2 GiB by streaming (readFileSync refuses it)',
    () => {
      const dir = tmp('big');
      const big = join(dir, 'optimizer.bin');
      writeFileSync(big, '');
      truncateSync(big, 2 ** 31 + 7); // sparse: no disk used
      expect(() => readFileSync(big)).toThrow(/2 GiB|File size|ERR_FS_FILE_TOO_LARGE/);
      const m = manifestOf(dir);
      expect(m.files['optimizer.bin']).toEqual({ bytes: 2 ** 31 + 7, sha256: sha256sum(big) });
    },
  );
});

describe('resume from a torn checkpoint', () => {
  const config = (out: string) => parseTrainConfig(tinyMpoConfig(out));

  it('falls back to the previous checkpoint when a file of the newest is truncated, and ends bit-identical', async () => {
    const straight = await runTraining(config(tmp('straight')), { encoders: byteEncoders });

    // An interrupted run: asked to stop after step 3, it finishes its step and checkpoints at it.
    const out2 = tmp('torn2');
    let steps = 0;
    const stopped = await runTraining(config(out2), {
      encoders: byteEncoders,
      hooks: { onStep: () => void steps++, shouldStop: () => steps >= 3 },
    });
    expect(stopped.stopped).toBe(true);
    const newest = latestCheckpoint(out2)!;
    expect(newest.state.step).toBe(stopped.step);
    expect(readdirSync(join(out2, 'checkpoints')).sort()).toEqual([
      'step-00000002',
      `step-0000000${stopped.step}`,
    ]);
    const weights = join(newest.dir, 'model.safetensors');
    truncateSync(weights, Math.floor(statSync(weights).size / 2));

    const torn: string[] = [];
    const fallback = latestCheckpoint(out2, (dir, reason) => torn.push(`${dir}: ${reason}`));
    expect(fallback?.state.step).toBe(2);
    expect(torn).toEqual([
      expect.stringMatching(/step-00000004: model\.safetensors has \d+ bytes, the manifest says \d+/),
    ]);

    const events: Array<Record<string, unknown>> = [];
    const resumed = await runTraining(config(out2), {
      encoders: byteEncoders,
      log: (e) => void events.push(e),
    });
    expect(resumed.resumedFrom).toBe(2);
    expect(events.some((e) => e.type === 'checkpoint-torn')).toBe(true);
    expect(resumed.model.weightsHash()).toBe(straight.model.weightsHash());
  });
});
