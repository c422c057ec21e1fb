import { parseArgs } from 'node:util';
import { builtinCatalog, CSRT_ENV, CSRT_SOURCE, checkDatasets } from '@mpo/trainer';
import { CliError, ExitCode } from '../exit-codes.js';
import { register } from '../registry.js';

const usage = `mpo data list [--json] [--check]

Lists every builtin model, dataset and benchmark file the repository ships: id, kind, rows (data) or
size, languages, licence and the path it resolves to (datasets/README.md gives origins and sha256s).
--json prints one JSON array; --check also verifies every shipped file against its sha256 in
datasets/manifest.json (the testbeds in models/: against their testbed.json) and fails (exit 1) naming the files that are missing or differ. CSRT is not shipped (no licence upstream): see the note at the end.`;

const size = (b: number | null) =>
  b === null
    ? 'missing'
    : b >= 1 << 20
      ? `${(b / (1 << 20)).toFixed(1)} MiB`
      : `${(b / 1024).toFixed(1)} KiB`;

register({
  name: 'data',
  summary: 'list the builtin datasets and models: id, rows/size, languages, licence, path',
  usage,
  async run(argv) {
    const [sub, ...rest] = argv;
    if (sub !== 'list')
      throw new CliError(`unknown subcommand '${sub ?? ''}'\n\nusage: ${usage}`, ExitCode.usage);
    const { values } = parseArgs({
      args: rest,
      options: { json: { type: 'boolean', default: false }, check: { type: 'boolean', default: false } },
    });
    if (values.check) {
      const problems = checkDatasets();
      if (problems.length)
        throw new CliError(
          `datasets do not match their manifest:\n  ${problems.join('\n  ')}`,
          ExitCode.failure,
        );
    }
    const entries = builtinCatalog();
    if (values.json) {
      process.stdout.write(`${JSON.stringify(entries, null, 2)}\n`);
      return ExitCode.ok;
    }
    const rows = entries.map((e) => [
      e.id,
      e.kind,
      e.rows === null ? size(e.bytes) : `${e.rows} rows, ${size(e.bytes)}`,
      e.languages.join(' ') || '–',
      e.licence,
      e.path,
    ]);
    const header = ['id', 'kind', 'rows/size', 'languages', 'licence', 'path'];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (r: string[]) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd();
    process.stdout.write(`${[header, ...rows].map(line).join('\n')}\n`);
    const csrt = process.env[CSRT_ENV];
    process.stdout.write(
      `\nCSRT (mpo eval --benchmarks csrt) is not shipped: no licence upstream. Get ${CSRT_SOURCE} and pass --csrt PATH or set ${CSRT_ENV}${csrt ? ` (now ${csrt})` : ''}.\n`,
    );
    return ExitCode.ok;
  },
});
