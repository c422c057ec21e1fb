import { renameSync, writeFileSync } from 'node:fs';

/**
 * Writes `path` whole: the data goes to a temporary sibling, which is then
 * renamed over `path` (atomic on one file system). A reader, or a process that
 * dies half-way, never sees a partial file; concurrent writers (trials of one
 * sweep, agents taking over a lock) each rename a complete file of their own,
 * so `tag` must differ between them (the process id by default; a lock passes
 * its owner's token, as agents on different hosts may share a pid).
 */
export function writeFileWhole(
  path: string,
  data: string | Uint8Array,
  tag: string = String(process.pid),
): void {
  const tmp = `${path}.${tag}.tmp`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}
