// On-disk cache of judgements: one JSON object per line in <dir>/judgements.jsonl, keyed by
// sha256(protocol, model, prompt, response). Appending keeps writes cheap and a crash loses at most the line
// being written; a torn or foreign line is skipped on load.
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Judgement } from '../judge.js';

export function judgementKey(protocol: string, model: string, prompt: string, response: string): string {
  return createHash('sha256')
    .update(JSON.stringify([protocol, model, prompt, response]))
    .digest('hex');
}

interface Line extends Judgement {
  key: string;
}

export class JudgementCache {
  readonly path: string;
  private readonly map = new Map<string, Judgement>();

  constructor(dir: string) {
    mkdirSync(dir, { recursive: true });
    this.path = join(dir, 'judgements.jsonl');
    if (!existsSync(this.path)) return;
    for (const raw of readFileSync(this.path, 'utf8').split('\n')) {
      if (!raw.trim()) continue;
      try {
        const l = JSON.parse(raw) as Line;
        if (typeof l.key === 'string' && ['safe', 'unsafe', 'irrelevant'].includes(l.label)) {
          this.map.set(l.key, {
            label: l.label,
            refusal: Boolean(l.refusal),
            ...(l.reason ? { reason: l.reason } : {}),
          });
        }
      } catch {
        // A line cut short by a crash: the judgement is simply asked for again.
      }
    }
  }

  get size(): number {
    return this.map.size;
  }

  get(key: string): Judgement | undefined {
    return this.map.get(key);
  }

  set(key: string, j: Judgement): void {
    this.map.set(key, j);
    // Synchronous append: one short line, and no interleaving between concurrent judgements of this process.
    appendFileSync(this.path, `${JSON.stringify({ key, ...j })}\n`);
  }
}
