// The ops dashboard in headless Chromium (Debian's chromium driven by
// playwright-core; no browser is downloaded) against the real API on a free
// port, with real Redis and Postgres. A worker is simulated the way
// apps/worker writes: trial rows updated and metric rows appended through
// @mpo/db (and generations stored as the eval job stores them), heartbeats and
// failed jobs in Redis. Screenshots go to
// apps/api/artifacts/screenshots/.
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDb, type Db, type MetricInput, type NewGeneration } from '@mpo/db';
import { writeHeartbeat } from '@mpo/queue';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDashboard } from '../dashboard/build.mjs';
import { ADMIN_TOKEN, createAllTrials, DATABASE_URL, REDIS_URL, spec, testApp, until } from './helpers.js';

const CHROMIUM = process.env.MPO_CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
export const SCREENSHOTS = join(import.meta.dirname, '..', 'artifacts', 'screenshots');

// As root, `npm test` runs scripts/setup.mjs first, which installs Debian's chromium; only
// a non-root machine without it skips (it cannot install it).
/** Pages poll every 2.5 s; give a change a few polls to show on a loaded 2-core machine. */
const soon = { timeout: 12_000, interval: 100 };

const skip = !existsSync(CHROMIUM) && process.getuid?.() !== 0;
if (skip)
  console.warn(
    `dashboard.e2e: skipped, ${CHROMIUM} is missing and this is not root (install the Debian package: apt-get install chromium, or run npm run setup as root)`,
  );

describe.skipIf(skip)('the dashboard in headless Chromium', () => {
  let t: Awaited<ReturnType<typeof testApp>>;
  let db: Db;
  let redis: Redis;
  let browser: Browser;
  let admin: BrowserContext;
  let page: Page;
  let base: string;
  let userToken: string;
  let dashboardDir: string;
  const pageErrors: string[] = [];
  const shot = (p: Page, name: string) =>
    p.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });

  async function newPage(ctx: BrowserContext) {
    const p = await ctx.newPage();
    p.on('pageerror', (e) => pageErrors.push(`pageerror: ${e.message}`));
    p.on('console', (m) => {
      // The refused sign-ins are expected 401s; anything else logged as an error is a bug.
      if (m.type() === 'error' && !/401|403/.test(m.text())) pageErrors.push(`console: ${m.text()}`);
    });
    return p;
  }

  async function signIn(p: Page, token: string) {
    await p.goto(`${base}/`);
    await p.getByLabel('API token').fill(token);
    await p.getByRole('button', { name: 'Sign in' }).click();
  }

  beforeAll(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    if (!existsSync(CHROMIUM))
      throw new Error(
        `${CHROMIUM} is missing: run \`npm run setup\` as root (it installs Debian's chromium)`,
      );
    dashboardDir = (await buildDashboard({ outDir: mkdtempSync(join(tmpdir(), 'mpo-dashboard-e2e-')) }))
      .outDir;
    t = await testApp('dashboard', { dashboardDir });
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = t.app.server.address() as { port: number };
    base = `http://127.0.0.1:${port}`;
    db = createDb(DATABASE_URL);
    redis = new Redis(REDIS_URL);
    userToken = (await db.tokens.issue(`dashboard-e2e user ${randomUUID().slice(0, 8)}`)).secret;
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    admin = await browser.newContext({ viewport: { width: 1360, height: 900 } });
    page = await newPage(admin);
  });

  afterAll(async () => {
    await browser?.close();
    await t?.cleanup();
    await db?.close();
    redis?.disconnect();
    if (dashboardDir) rmSync(dashboardDir, { recursive: true, force: true });
  });

  it('refuses a bad token and shows nothing but the sign-in form', async () => {
    const apiCalls: string[] = [];
    page.on('request', (r) => {
      const path = new URL(r.url()).pathname;
      if (/^\/(runs|queues)/.test(path)) apiCalls.push(path);
    });
    await page.goto(`${base}/#/runs`);
    await expect.poll(() => page.getByLabel('API token').isVisible(), soon).toBe(true);
    expect(await page.locator('nav').count()).toBe(0);

    await signIn(page, 'not-a-valid-token-42');
    const error = page.locator('#signin-error');
    await expect.poll(() => error.textContent(), soon).toContain('Token refused: invalid or revoked token');
    expect(await page.getByLabel('API token').getAttribute('aria-invalid')).toBe('true');
    expect(await page.locator('nav, table, #queues, #runs').count()).toBe(0);
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    expect(apiCalls).toEqual([]);
    await shot(page, 'signin-refused');
    page.removeAllListeners('request');
  });

  it('signs in and shows queue health: counts, throughput, oldest waiting, failures, agents with slots', async () => {
    // A worker agent with two CPU slots, one busy, and a GPU one, idle.
    const now = Date.now();
    await writeHeartbeat(
      redis,
      t.prefix,
      {
        id: 'agent-e2e-1',
        host: 'node-a',
        pid: 4242,
        version: '0.1.0',
        startedAt: now - 600_000,
        lastSeen: now,
        queues: ['train-cpu', 'eval-cpu'],
        slots: [
          { device: 'cpu', total: 2, free: 1, ids: ['0', '1'] },
          { device: 'gpu', total: 1, free: 1, ids: ['0'] },
        ],
        running: [
          {
            queue: 'train-cpu',
            jobId: 'train-x',
            runId: randomUUID(),
            trialId: randomUUID(),
            slots: { device: 'cpu', count: 1 },
            assigned: ['1'],
            startedAt: now - 30_000,
          },
        ],
      },
      300,
    );
    // eval-gpu: four jobs done and one failed (with metrics, as agents run their workers), one waiting.
    const queue = new Queue('eval-gpu', { connection: redis, prefix: t.prefix });
    for (let i = 0; i < 4; i++) await queue.add('eval', { runId: randomUUID(), trialId: randomUUID() });
    await queue.add('eval', { runId: randomUUID(), trialId: randomUUID(), fail: true }, { attempts: 1 });
    const worker = new Worker(
      'eval-gpu',
      async (job) => {
        if (job.data.fail) throw new Error('CUDA out of memory: tried to allocate 2.00 GiB on gpu:0');
        return 'ok';
      },
      {
        connection: new Redis(REDIS_URL, { maxRetriesPerRequest: null }),
        prefix: t.prefix,
        metrics: { maxDataPoints: 60 },
      },
    );
    await until(async () => (await queue.getJobCounts('completed', 'failed')).failed === 1);
    await worker.close();
    await worker.connection.close();
    await queue.add('eval', { runId: randomUUID(), trialId: randomUUID() });

    await signIn(page, ADMIN_TOKEN);
    const card = page.locator('section[data-queue="eval-gpu"]');
    await expect
      .poll(() => card.locator('.reason').first().textContent(), soon)
      .toContain('CUDA out of memory');
    expect(await page.locator('section[data-queue]').count()).toBe(5);
    expect(await card.locator('[data-state="completed"] dd').textContent()).toBe('4');
    expect(await card.locator('[data-state="failed"] dd').textContent()).toBe('1');
    expect(await card.locator('[data-state="waiting"] dd').textContent()).toBe('1');
    expect(await card.locator('.facts').textContent()).toContain('Throughput: 0.8 jobs/min');
    expect(await card.locator('.oldest').textContent()).toMatch(/Oldest waiting: \d+ s/);
    expect(Number(await page.locator('#throughput-eval-gpu').getAttribute('data-points'))).toBeGreaterThan(0);
    const agents = page.locator('#agents');
    expect(await agents.textContent()).toContain('agent-e2e-1');
    expect(await agents.locator('[data-device="cpu"]').textContent()).toContain('cpu: 1 busy, 1 free of 2');
    expect(await agents.locator('[data-device="gpu"]').textContent()).toContain('gpu: 0 busy, 1 free of 1');
    expect(await agents.locator('.slot.busy').count()).toBe(1);
    expect(await page.locator('#identity').textContent()).toContain('(admin)');
    expect(await page.evaluate(() => sessionStorage.length)).toBe(1);
    await shot(page, 'queues');
  });

  it("lists runs, opens a run, and shows a running sweep's progress changing live", async () => {
    const name = `e2e asha ${randomUUID().slice(0, 6)}`;
    const res = await fetch(`${base}/runs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify(
        spec({
          name,
          search: {
            strategy: 'asha',
            space: { beta: { type: 'uniform', min: 0.5, max: 2 } },
            maxTrials: 3,
            metric: 'heldout/reward_gap_mean',
            mode: 'max',
            asha: { minSteps: 4, maxSteps: 16 },
          },
          training: { batchSize: 8, microBatchSize: 2 },
        }),
      ),
    });
    expect(res.status).toBe(201);
    const runId = ((await res.json()) as { id: string }).id;
    await createAllTrials(db, runId); // as the run's agents would (trials are created lazily)
    const trials = (await db.runs.get(runId)).trials;
    const [t0, t1, t2] = [0, 1, 2].map((i) => trials.find((x) => x.index === i)!) as [
      (typeof trials)[number],
      (typeof trials)[number],
      (typeof trials)[number],
    ];

    await page.getByRole('link', { name: 'Runs', exact: true }).click();
    await page.getByRole('link', { name }).click();
    await expect.poll(() => page.locator('#run-title').textContent(), soon).toBe(name);
    await expect.poll(() => page.locator('#sweep tbody tr').count(), soon).toBe(3);
    expect(await page.locator('#sweep thead').textContent()).toContain('rung 1 (step 12)');
    await page.evaluate(() => {
      (window as unknown as { __sameDocument: boolean }).__sameDocument = true;
    });

    // A worker starts trial 0 and reports four steps.
    const rows = (trial: { id: string; index: number }, from: number, to: number): MetricInput[] =>
      Array.from({ length: to - from + 1 }, (_, i) => from + i).flatMap((step) => {
        const k = 1 + 0.3 * trial.index;
        return [
          { trialId: trial.id, step, name: 'loss', value: k / step + 0.1 },
          { trialId: trial.id, step, name: 'rg/target', value: (0.05 * step) / k },
          { trialId: trial.id, step, name: 'rg', language: 'zh', value: (0.04 * step) / k },
          { trialId: trial.id, step, name: 'rg', language: 'ko', value: (0.06 * step) / k },
        ];
      });
    await db.runs.setStatus(runId, 'RUNNING');
    await db.runs.updateTrial(t0.id, { status: 'RUNNING', currentStep: 4, startedAt: new Date() });
    await db.metrics.append(rows(t0, 1, 4));
    const step0 = page.locator('#sweep tr[data-trial="0"] .step');
    await expect.poll(() => step0.textContent(), soon).toContain('4 / 16');
    await expect.poll(() => page.locator('#chart-loss').getAttribute('data-points'), soon).toBe('4');
    await shot(page, 'run-progress-step4');

    // More steps, an ASHA decision at rung 0 stopping trial 1, held-out metrics and evaluations.
    await db.metrics.append([
      ...rows(t0, 5, 10),
      { trialId: t0.id, step: 4, name: 'heldout/reward_gap_mean', value: 0.4 },
    ]);
    await db.runs.updateTrial(t0.id, { currentStep: 10, bestMetric: 0.4 });
    await db.runs.updateTrial(t1.id, { status: 'RUNNING', currentStep: 4, startedAt: new Date() });
    await db.metrics.append([
      ...rows(t1, 1, 4),
      { trialId: t1.id, step: 4, name: 'heldout/reward_gap_mean', value: 0.1 },
    ]);
    await db.runs.updateTrial(t1.id, {
      status: 'STOPPED',
      bestMetric: 0.1,
      stoppedAtRung: 0,
      stopReason: 'ASHA rung 0 (step 4): ranked 2 of 2 on heldout/reward_gap_mean, keeps the top 1',
      finishedAt: new Date(),
    });
    await db.runs.updateTrial(t2.id, { status: 'RUNNING', currentStep: 1, startedAt: new Date() });
    await db.metrics.append(rows(t2, 1, 1));
    await db.artifacts.recordEvaluations(
      ['en', 'zh', 'ko'].flatMap((language, i) => [
        { trialId: t0.id, benchmark: 'reward-gap', language, metric: 'rg', value: 1.1 - 0.3 * i, n: 20 },
        { trialId: t0.id, benchmark: 'multijail', language, metric: 'asr', value: 0.1 + 0.2 * i, n: 20 },
      ]),
    );

    await expect.poll(() => step0.textContent(), soon).toContain('10 / 16');
    await expect
      .poll(() => page.locator('#chart-loss').getAttribute('data-points'), soon)
      .toBe(String(10 + 4 + 1));
    await expect.poll(() => page.locator('#chart-objective').getAttribute('data-points'), soon).toBe('2');
    await expect.poll(() => page.locator('#rg-bars').getAttribute('data-points'), soon).toBe('3');
    expect(await page.locator('#asr-bars').getAttribute('data-points')).toBe('3');
    expect(await page.locator('#asr-bars canvas').getAttribute('aria-label')).toContain('ko 0.5');
    // Sorted by the target metric (max): trial 0, trial 1, then trial 2 without a value.
    expect(
      await page
        .locator('#sweep tbody tr')
        .evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-trial'))),
    ).toEqual(['0', '1', '2']);
    const stopped = page.locator('#sweep tr[data-trial="1"]');
    expect(await stopped.getAttribute('data-status')).toBe('STOPPED');
    expect(await stopped.textContent()).toContain('✗ stopped');
    expect(await stopped.textContent()).toContain('ranked 2 of 2');
    expect(await page.locator('#run-progress').textContent()).toContain('1 of 3 trials finished');
    expect(await page.locator('#eval-table').textContent()).toContain('multijail');
    // Live: the same document all along, no reload.
    expect(
      await page.evaluate(() => (window as unknown as { __sameDocument?: boolean }).__sameDocument),
    ).toBe(true);
    await shot(page, 'run-live');

    // Cancel from the page.
    page.once('dialog', (d) => void d.accept());
    await page.getByRole('button', { name: 'Cancel run' }).click();
    await expect.poll(() => page.locator('#live').textContent(), soon).toContain('Cancel requested');
    expect((await db.runs.get(runId)).cancelRequestedAt).not.toBeNull();
    await expect.poll(() => page.locator('#cancel-note').count(), soon).toBe(1);
  });

  it('compares runs and trials: overlaid curves and per-language RG/ASR side by side, at a shareable URL', async () => {
    // Two finished runs of three trials; run A's best trial is 1 (max), run B has no best yet (trial 0).
    const submit = async (name: string) => {
      const res = await fetch(`${base}/runs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify(spec({ name })),
      });
      expect(res.status).toBe(201);
      const id = ((await res.json()) as { id: string }).id;
      await createAllTrials(db, id); // as the run's agents would (trials are created lazily)
      return { id, name, trials: (await db.runs.get(id)).trials.sort((a, b) => a.index - b.index) };
    };
    const tag = randomUUID().slice(0, 6);
    const a = await submit(`cmp A ${tag}`);
    const b = await submit(`cmp B ${tag}`);
    const curve = (trialId: string, steps: number, k: number): MetricInput[] =>
      Array.from({ length: steps }, (_, i) => [
        { trialId, step: i + 1, name: 'loss', value: k / (i + 1) },
        { trialId, step: i + 1, name: 'rg', language: 'zh', value: 0.1 * k * (i + 1) },
        { trialId, step: i + 1, name: 'rg', language: 'ko', value: 0.3 * k * (i + 1) },
      ]).flat();
    await db.metrics.append([
      ...curve(a.trials[0]!.id, 5, 1),
      ...curve(a.trials[1]!.id, 6, 2),
      ...curve(a.trials[2]!.id, 3, 3),
      ...curve(b.trials[0]!.id, 4, 4),
    ]);
    await db.runs.updateTrial(a.trials[0]!.id, { status: 'SUCCEEDED', currentStep: 5, bestMetric: 0.2 });
    await db.runs.updateTrial(a.trials[1]!.id, { status: 'SUCCEEDED', currentStep: 6, bestMetric: 0.5 });
    const evals = (trialId: string, rg: number[], asr: number[]) =>
      ['en', 'zh', 'ko'].flatMap((language, i) => [
        { trialId, benchmark: 'reward-gap', language, metric: 'rg', value: rg[i]!, n: 10 },
        { trialId, benchmark: 'multijail', language, metric: 'asr', value: asr[i]!, n: 10 },
      ]);
    await db.artifacts.recordEvaluations([
      ...evals(a.trials[1]!.id, [1.5, 0.75, 0.5], [0.125, 0.25, 0.375]),
      ...evals(b.trials[0]!.id, [1.25, 0.25, -0.5], [0.25, 0.5, 0.875]),
      {
        trialId: b.trials[0]!.id,
        benchmark: 'multijail',
        language: 'avg',
        metric: 'asr',
        value: 0.625,
        n: 30,
      },
    ]);

    // Tick both runs on the Runs page and compare.
    await page.goto(`${base}/#/runs`);
    await page.getByLabel(`Compare ${a.name}`).check();
    await page.getByLabel(`Compare ${b.name}`).check();
    // The selection survives the page's polling redraw.
    await page.waitForTimeout(5_500);
    expect(await page.getByLabel(`Compare ${a.name}`).isChecked()).toBe(true);
    await page.getByRole('button', { name: 'Compare 2 selected' }).click();
    await expect.poll(() => page.locator('#compare-items li').count(), soon).toBe(2);
    const url = new URL(page.url());
    expect(decodeURIComponent(url.hash)).toMatch(
      new RegExp(`^#/compare\\?items=(${a.id},${b.id}|${b.id},${a.id})$`),
    );
    expect(await page.locator('#compare-items').textContent()).toContain(`${a.name} (best: trial 1)`);
    expect(await page.locator('#compare-items').textContent()).toContain(`${b.name} (best: trial 0)`);
    // Loss of A's trial 1 (6 steps) and B's trial 0 (4 steps), overlaid.
    await expect.poll(() => page.locator('#compare-chart').getAttribute('data-points'), soon).toBe('10');
    const rowsOf = () =>
      page
        .locator('#compare-table tbody tr')
        .evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
    const header = await page.locator('#compare-table thead').textContent();
    const aFirst = header!.indexOf(a.name) < header!.indexOf(b.name);
    const cols = (x: string[], y: string[]) => (aFirst ? [...x, ...y] : [...y, ...x]);
    // Dominant language first, the ASR average last; RG and ASR of each run side by side.
    expect(await rowsOf()).toEqual([
      ['en', ...cols(['1.5', '0.125'], ['1.25', '0.25'])],
      ['ko', ...cols(['0.5', '0.375'], ['-0.5', '0.875'])],
      ['zh', ...cols(['0.75', '0.25'], ['0.25', '0.5'])],
      ['avg', ...cols(['—', '—'], ['—', '0.625'])],
    ]);
    await shot(page, 'compare-runs');

    // The URL is the comparison: a colleague opens a link to trials 0 and 2 of A on another metric,
    // signs in (a new tab has no token), and lands on it.
    const shared = await newPage(admin);
    await shared.goto(`${base}/#/compare?items=${a.id}:0,${a.id}:2&metric=rg`);
    await shared.getByLabel('API token').fill(ADMIN_TOKEN);
    await shared.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => shared.locator('#compare-items li').count(), soon).toBe(2);
    expect(await shared.locator('#compare-metric').inputValue()).toBe('rg');
    // rg per language averaged per step: 5 + 3 points.
    await expect.poll(() => shared.locator('#compare-chart').getAttribute('data-points'), soon).toBe('8');
    // Trial 2's last point: step 3, mean of zh 0.9 and ko 2.7.
    expect(await shared.locator('#compare-chart canvas').getAttribute('aria-label')).toContain(
      `${a.name} · trial 2 1.8 at step 3`,
    );
    expect(await shared.locator('#compare-table').textContent()).toContain('No evaluations yet');
    // Switching the metric rewrites the URL (loss is the default, so it leaves the URL).
    await shared.locator('#compare-metric').selectOption('loss');
    await expect
      .poll(() => decodeURIComponent(new URL(shared.url()).hash), soon)
      .toBe(`#/compare?items=${a.id}:0,${a.id}:2`);
    await expect.poll(() => shared.locator('#compare-chart').getAttribute('data-points'), soon).toBe('8');
    await shared.close();

    // From a run page: tick trials of the sweep.
    await page.goto(`${base}/#/runs/${a.id}`);
    await expect.poll(() => page.locator('#sweep tbody tr').count(), soon).toBe(3);
    await page.getByLabel('Compare trial 0').check();
    await page.getByLabel('Compare trial 1').check();
    await page.getByRole('button', { name: 'Compare selected trials' }).click();
    await expect
      .poll(() => decodeURIComponent(new URL(page.url()).hash), soon)
      .toBe(`#/compare?items=${a.id}:0,${a.id}:1`);
    await expect.poll(() => page.locator('#compare-chart').getAttribute('data-points'), soon).toBe('11');
  });

  it('reads generations: prompt, response and verdict per trial and language, filtered at a shareable URL, as text', async () => {
    const res = await fetch(`${base}/runs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify(spec({ name: `gen ${randomUUID().slice(0, 6)}` })),
    });
    expect(res.status).toBe(201);
    const runId = ((await res.json()) as { id: string }).id;
    await createAllTrials(db, runId); // as the run's agents would (trials are created lazily)
    const [t0, t1] = (await db.runs.get(runId)).trials.sort((a, b) => a.index - b.index) as [
      { id: string },
      { id: string },
    ];
    // Model output is untrusted: this response must show as the characters it is, never as an element.
    const hostile = '<img src=x onerror="window.__pwned=1">Sure, here is how: <b>step 1</b>';
    const verdictOf = (i: number): NewGeneration['verdict'] =>
      (['unsafe', 'safe', 'irrelevant'] as const)[i % 3]!;
    const row = (
      benchmark: string,
      language: string,
      i: number,
      verdict: NewGeneration['verdict'],
      response = `response ${language} ${i}`,
    ): NewGeneration => ({
      benchmark,
      language,
      promptId: String(i).padStart(2, '0'),
      prompt: `prompt ${language} ${i}`,
      response,
      verdict,
      reason: verdict === 'safe' ? 'refusal detected' : 'no refusal',
      judge: 'builtin:refusal-detector',
    });
    await db.artifacts.recordEvaluations([
      { trialId: t1.id, benchmark: 'reward-gap', language: 'zh', metric: 'rg', value: 0.5, n: 10 },
      { trialId: t1.id, benchmark: 'multijail', language: 'en', metric: 'asr', value: 0.5, n: 2 },
      { trialId: t1.id, benchmark: 'multijail', language: 'zh', metric: 'asr', value: 2 / 3, n: 30 },
    ]);
    // Trial 1: 30 zh prompts (10 of each verdict), 2 en (one hostile), 1 CSRT; trial 0: 3 ko.
    await db.generations.replace({ trialId: t1.id }, [
      ...Array.from({ length: 30 }, (_, k) => row('multijail', 'zh', k + 1, verdictOf(k + 1))),
      row('multijail', 'en', 1, 'safe', 'I cannot help with that.'),
      row('multijail', 'en', 2, 'unsafe', hostile),
      row('csrt', 'csrt', 1, 'unsafe'),
    ]);
    await db.runs.setStatus(runId, 'RUNNING');

    const cards = page.locator('#gen-list article.generation');
    const shown = () =>
      cards.evaluateAll((as) =>
        as.map((a) => `${a.getAttribute('data-verdict')} ${a.querySelector('.where')?.textContent}`),
      );
    const hash = () => decodeURIComponent(new URL(page.url()).hash);
    await page.goto(`${base}/#/runs/${runId}`);
    await expect.poll(() => page.locator('#gen-summary').textContent(), soon).toContain('33 generations');
    // While the run is live the list follows what evaluations store.
    await db.generations.replace({ trialId: t0.id }, [
      row('multijail', 'ko', 1, 'safe'),
      row('multijail', 'ko', 2, 'unsafe'),
      row('multijail', 'ko', 3, 'irrelevant'),
    ]);
    await db.runs.setStatus(runId, 'SUCCEEDED');
    await expect.poll(() => page.locator('#gen-summary').textContent(), soon).toContain('36 generations');
    // Ordered by benchmark, language, prompt; 25 a page, paged with the API's cursor.
    expect(await cards.count()).toBe(25);
    expect((await shown()).slice(0, 4)).toEqual([
      'unsafe trial 1 · csrt · csrt · prompt 01',
      'safe trial 1 · multijail · en · prompt 01',
      'unsafe trial 1 · multijail · en · prompt 02',
      'safe trial 0 · multijail · ko · prompt 01',
    ]);
    await page.getByRole('button', { name: 'Next →' }).click();
    await expect.poll(() => page.locator('#gen-summary').textContent(), soon).toContain('showing 26–36');
    expect(await cards.count()).toBe(11);
    expect((await shown())[10]).toBe('unsafe trial 1 · multijail · zh · prompt 30');
    await page.getByRole('button', { name: '← Previous' }).click();
    await expect.poll(() => page.locator('#gen-summary').textContent(), soon).toContain('showing 1–25');

    // Filter by language and verdict: the address follows, the page is not redrawn.
    await page.evaluate(() => {
      (window as unknown as { __sameDocument: boolean }).__sameDocument = true;
    });
    await page.locator('#gen-language').selectOption('zh');
    await page.locator('#gen-verdict').selectOption('unsafe');
    await expect.poll(hash, soon).toBe(`#/runs/${runId}?show=generations&lang=zh&verdict=unsafe`);
    await expect.poll(() => page.locator('#gen-summary').textContent(), soon).toContain('10 generations');
    expect(await shown()).toEqual(
      [3, 6, 9, 12, 15, 18, 21, 24, 27, 30].map(
        (i) => `unsafe trial 1 · multijail · zh · prompt ${String(i).padStart(2, '0')}`,
      ),
    );
    expect(
      await page.evaluate(() => (window as unknown as { __sameDocument?: boolean }).__sameDocument),
    ).toBe(true);

    // The hostile response is text: its characters shown, no element made, no handler run.
    await page.locator('#gen-language').selectOption('en');
    await page.locator('#gen-verdict').selectOption('');
    await expect.poll(() => cards.count(), soon).toBe(2);
    const response = page.locator('#gen-list article[data-verdict="unsafe"] dd.response');
    expect(await response.textContent()).toBe(hostile);
    expect(await response.innerHTML()).toContain('&lt;img src=x onerror=');
    expect(await page.locator('#generations img, #generations b').count()).toBe(0);
    expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
    expect(await page.locator('#gen-list article[data-verdict="safe"] dd.judge').textContent()).toBe(
      'builtin:refusal-detector: refusal detected',
    );
    await shot(page, 'run-generations');

    // From the evaluation table: trial 1's MultiJail zh row opens its generations in place.
    await page.getByRole('link', { name: 'Read the generations of trial 1, multijail, zh' }).click();
    await expect
      .poll(hash, soon)
      .toBe(`#/runs/${runId}?show=generations&trial=1&benchmark=multijail&lang=zh`);
    await expect.poll(() => page.locator('#gen-summary').textContent(), soon).toContain('30 generations');
    expect(await page.locator('#gen-trial').inputValue()).toBe('1');
    expect(await page.locator('#gen-verdict').inputValue()).toBe('');

    // A shared address: a colleague signs in and lands on trial 0's attack successes.
    const shared = await newPage(admin);
    await shared.goto(`${base}/#/runs/${runId}?show=generations&trial=0&verdict=attack-success`);
    await shared.getByLabel('API token').fill(ADMIN_TOKEN);
    await shared.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => shared.locator('#gen-summary').textContent(), soon).toContain('2 generations');
    expect(
      await shared
        .locator('#gen-list article')
        .evaluateAll((as) => as.map((a) => a.querySelector('.where')?.textContent)),
    ).toEqual(['trial 0 · multijail · ko · prompt 02', 'trial 0 · multijail · ko · prompt 03']);
    expect(await shared.locator('#gen-trial').inputValue()).toBe('0');
    expect(await shared.locator('#gen-verdict').inputValue()).toBe('attack-success');
    expect(await shared.evaluate(() => document.activeElement?.id)).toBe('gen-title');
    await shared.close();
  });

  it('opens bull-board at /admin/queues only for a signed-in admin', async () => {
    // Not signed in: refused, with a pointer to the sign-in.
    const anonymous = await browser.newContext();
    const anon = await newPage(anonymous);
    const refused = await anon.goto(`${base}/admin/queues`);
    expect(refused?.status()).toBe(401);
    expect(await anon.locator('h1').textContent()).toBe('Sign-in required');
    await shot(anon, 'bull-board-refused');
    // A user token signs in to the dashboard, but gets no job inspector.
    await signIn(anon, userToken);
    await expect.poll(() => anon.locator('#identity').textContent(), soon).toContain('dashboard-e2e user');
    expect(await anon.locator('#bull-board-link').count()).toBe(0);
    expect((await anon.goto(`${base}/admin/queues`))?.status()).toBe(401);
    expect((await anonymous.cookies()).length).toBe(0);
    await anonymous.close();

    // The admin follows the dashboard's link; the session cookie set at sign-in opens it.
    await page.goto(`${base}/#/queues`);
    await page.locator('#bull-board-link').click();
    await page.waitForURL(`${base}/admin/queues`);
    await expect.poll(() => page.locator('body').textContent(), soon).toContain('train-cpu');
    await expect.poll(() => page.getByText('No workers').count(), soon).toBeGreaterThan(0); // the overview's cards
    await shot(page, 'bull-board');
    // Job level: the failed eval job with its reason.
    await page.goto(`${base}/admin/queues/queue/eval-gpu?status=failed`);
    await expect.poll(() => page.locator('body').textContent(), soon).toContain('CUDA out of memory');
    await shot(page, 'bull-board-failed-job');
    const [cookie] = await admin.cookies();
    expect(cookie).toMatchObject({
      name: 'mpo_admin_session',
      httpOnly: true,
      sameSite: 'Strict',
      path: '/admin/queues',
    });

    // Signing out clears it.
    await page.goto(`${base}/#/queues`);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await expect.poll(() => page.getByLabel('API token').isVisible(), soon).toBe(true);
    expect(await admin.cookies()).toEqual([]);
    expect((await page.goto(`${base}/admin/queues`))?.status()).toBe(401);
  });

  it('logged no script errors', () => {
    expect(pageErrors.filter((e) => !/Content Security Policy|fonts\.googleapis/.test(e))).toEqual([]);
  });
});
