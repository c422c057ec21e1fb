// log.ts: the agent's logger.
import { describe, expect, it } from 'vitest';
import { createLogger } from '../src/log.js';

describe('worker logs', () => {
  it('redact judge keys and credentials', () => {
    const lines: string[] = [];
    const log = createLogger('info', {}, { write: (l: string) => void lines.push(l) } as never);
    log.info({ judge: { apiKey: 'sk-judge' }, env: { DATABASE_URL: 'postgresql://u:pw@db/x' } }, 'config');
    expect(lines.join('')).not.toMatch(/sk-judge|pw@db/);
  });
});
