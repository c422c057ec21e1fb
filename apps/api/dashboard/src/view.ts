// What every page gets, and the polling loop pages refresh with.
import type { Api, Identity } from './api.js';
import { ApiError } from './api.js';

export interface ViewContext {
  api: Api;
  identity: Identity;
  /** The page's container (emptied before the view renders). */
  main: HTMLElement;
  /** The live status line under the header (polite; errors are assertive). */
  status(text: string, kind?: 'info' | 'error'): void;
  /** The page title (document.title and the focused heading). */
  title(text: string): void;
}

export type Dispose = () => void;
export type View = (ctx: ViewContext) => Dispose;

export const POLL_MS = 2_500;

/**
 * Runs `fn` now and then every `everyMs` after each run ends (never two at
 * once), until disposed. A failure is reported and retried at the next tick;
 * a 401 is not retried (the app signs out). `fn` returning 'stop' ends it.
 */
export function poll(fn: () => Promise<unknown>, everyMs: number, ctx: ViewContext): Dispose {
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const tick = async () => {
    if (stopped) return;
    try {
      if ((await fn()) === 'stop') {
        stopped = true;
        return;
      }
      if (!stopped) ctx.status(`Live: updated ${new Date().toLocaleTimeString()}`);
    } catch (err) {
      if (stopped) return;
      if (err instanceof ApiError && err.status === 401) return;
      ctx.status(`Update failed (${(err as Error).message}); retrying`, 'error');
    }
    if (!stopped) timer = setTimeout(tick, everyMs);
  };
  void tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
