import { readFileSync } from 'node:fs';
import { register } from '../registry.js';

register({
  name: 'version',
  summary: 'print the mpo version',
  usage: 'mpo version',
  async run() {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    process.stdout.write(`${pkg.version}\n`);
    return 0;
  },
});
