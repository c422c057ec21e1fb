// The training child writes its protocol lines (packages/queue
// trainer-protocol.ts) to a file in the trial folder rather than to a pipe,
// and the agent follows that file. Why: a line the child wrote is then on
// disk even if the agent is SIGKILLed before reading it or before its metric
// buffer reached Postgres. The agent that resumes the trial replays the
// earlier attempts' files up to the checkpoint it resumes from (the child
// re-emits everything after it), so every step reaches Postgres exactly once.
import { createReadStream, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { type ParsedLine, parseTrainerLine, type TrainerMessage, TrainerOutputParser } from '@mpo/queue';

export const PROTOCOL_DIR = 'protocol';

/** A fresh, empty protocol file for this attempt (names sort by start time). */
export function newProtocolFile(trialDir: string, agentId: string): string {
  const dir = join(trialDir, PROTOCOL_DIR);
  mkdirSync(dir, { recursive: true });
  const safeAgent = agentId.replace(/[^A-Za-z0-9_.-]/g, '_');
  const file = join(dir, `${Date.now().toString().padStart(15, '0')}-${safeAgent}-${process.pid}.jsonl`);
  writeFileSync(file, '', { flag: 'wx' });
  return file;
}

/**
 * Follows a file that another process appends to, handing each complete line
 * to `onLine`. While `gate()` is false (the metric buffer is full: Postgres is
 * away) it reads nothing more: the unread lines wait on disk, and memory stays
 * flat however long the outage; reading resumes where it stopped.
 */
export class ProtocolFollower {
  private readonly parser = new TrainerOutputParser();
  private offset = 0;
  private timer: NodeJS.Timeout | undefined;
  private reading: Promise<unknown> = Promise.resolve();
  private stopped = false;

  constructor(
    private readonly path: string,
    private readonly onLine: (p: ParsedLine) => void,
    private readonly pollMs = 50,
    private readonly gate: () => boolean = () => true,
  ) {}

  start(): void {
    const tick = () => {
      if (this.stopped) return;
      this.reading = this.readMore().finally(() => {
        if (!this.stopped) this.timer = setTimeout(tick, this.pollMs);
      });
    };
    tick();
  }

  /**
   * Reads what is left (call after the child exited), as fast as the gate
   * lets it, and stops. With `abandon` aborted (the job went to another
   * agent) it stops at once: the next attempt replays the file.
   */
  async stop(abandon?: AbortSignal): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.reading;
    for (;;) {
      if (abandon?.aborted) return;
      if (await this.readMore()) break;
      await sleep(this.pollMs);
    }
    for (const p of this.parser.end()) this.onLine(p);
  }

  /** Reads until the end of the file (true) or until the gate closes (false). */
  private async readMore(): Promise<boolean> {
    const fh = await open(this.path, 'r');
    try {
      const buf = Buffer.alloc(64 * 1024);
      for (;;) {
        if (!this.gate()) return false;
        const { bytesRead } = await fh.read(buf, 0, buf.length, this.offset);
        if (bytesRead === 0) return true;
        this.offset += bytesRead;
        for (const p of this.parser.push(buf.subarray(0, bytesRead))) this.onLine(p);
      }
    } finally {
      await fh.close();
    }
  }
}

/**
 * The step, eval and checkpoint messages earlier attempts of a trial wrote,
 * for steps ≤ `upToStep` (oldest file first; `exclude` is the current attempt's file).
 */
export async function replayProtocol(
  trialDir: string,
  upToStep: number,
  exclude?: string,
): Promise<TrainerMessage[]> {
  const dir = join(trialDir, PROTOCOL_DIR);
  if (!existsSync(dir)) return [];
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.jsonl'))
    .sort()
    .map((f) => join(dir, f))
    .filter((f) => f !== exclude);
  const out: TrainerMessage[] = [];
  for (const file of files) {
    const lines = createInterface({ input: createReadStream(file), crlfDelay: Number.POSITIVE_INFINITY });
    for await (const line of lines) {
      const p = parseTrainerLine(line);
      if (!p?.ok) continue;
      const m = p.message;
      if ((m.type === 'step' || m.type === 'eval' || m.type === 'checkpoint') && m.step <= upToStep)
        out.push(m);
    }
  }
  return out;
}
