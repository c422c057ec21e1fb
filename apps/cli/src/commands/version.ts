import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { JSON_FLAG } from '../flags.js';
import { register } from '../registry.js';

/** The CLI's version (its package.json), for `mpo version` and `mpo --version`. */
export function cliVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  return pkg.version;
}

register({
  name: 'version',
  summary: 'print the mpo version (also: mpo --version)',
  usage: 'mpo version [--json]',
  async run(args) {
    const { values } = parseArgs({ args, options: JSON_FLAG });
    const version = cliVersion();
    process.stdout.write(
      values.json ? `${JSON.stringify({ version, node: process.version })}\n` : `${version}\n`,
    );
    return 0;
  },
});
