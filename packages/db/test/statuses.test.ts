// The status lists live once, in @mpo/queue/statuses (the API schemas, the CLI
// and the dashboard use them); the Postgres enums behind the Run and Trial
// tables must hold exactly the same values in the same order.
import { RUN_STATUSES, TRIAL_STATUSES } from '@mpo/queue/statuses';
import { describe, expect, it } from 'vitest';
import { RunStatus, TrialStatus } from '../src/generated/prisma/enums.js';
import { DATABASE_URL, query } from './helpers.js';

const enumValues = async (name: string) =>
  (await query<{ v: string }>(DATABASE_URL, `SELECT unnest(enum_range(NULL::"${name}"))::text AS v`)).map(
    (r) => r.v,
  );

describe('status lists', () => {
  it('are the values of the Prisma enums', () => {
    expect(Object.values(RunStatus)).toEqual([...RUN_STATUSES]);
    expect(Object.values(TrialStatus)).toEqual([...TRIAL_STATUSES]);
  });

  it('are the values of the Postgres enums the migrations created', async () => {
    expect(await enumValues('RunStatus')).toEqual([...RUN_STATUSES]);
    expect(await enumValues('TrialStatus')).toEqual([...TRIAL_STATUSES]);
  });
});
