// Builds the ops dashboard into apps/api/dist/dashboard (served at / by
// src/plugins/dashboard.ts): one ESM bundle (TypeScript, Chart.js) and one
// stylesheet, both named by content hash, and index.html naming them.
// Offline and fast (esbuild); typechecking is `tsc -p dashboard/tsconfig.json`.
//
//   node dashboard/build.mjs [--outdir DIR]
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
export const DEFAULT_OUT_DIR = join(here, '..', 'dist', 'dashboard');

export async function buildDashboard({ outDir = DEFAULT_OUT_DIR, minify = true } = {}) {
  rmSync(outDir, { recursive: true, force: true });
  const assets = join(outDir, 'assets');
  mkdirSync(assets, { recursive: true });
  const result = await build({
    entryPoints: { app: join(here, 'src', 'main.ts'), styles: join(here, 'src', 'styles.css') },
    outdir: assets,
    entryNames: '[name]-[hash]',
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['chrome110', 'firefox115', 'safari16'],
    minify,
    sourcemap: 'linked',
    legalComments: 'linked',
    metafile: true,
    logLevel: 'warning',
    absWorkingDir: here,
  });
  const outputs = Object.keys(result.metafile.outputs).map((p) => join(here, p));
  const pick = (ext) => {
    const file = outputs.find((p) => p.endsWith(ext) && !p.endsWith('.map'));
    if (!file) throw new Error(`dashboard build: no ${ext} output`);
    return `/assets/${basename(file)}`;
  };
  const html = readFileSync(join(here, 'index.html'), 'utf8')
    .replace('%APP_JS%', pick('.js'))
    .replace('%STYLES_CSS%', pick('.css'));
  writeFileSync(join(outDir, 'index.html'), html);
  return { outDir, files: outputs.map((p) => relative(outDir, p)).concat('index.html') };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const i = process.argv.indexOf('--outdir');
  const { outDir, files } = await buildDashboard(i > 0 ? { outDir: process.argv[i + 1] } : {});
  process.stdout.write(`dashboard: ${files.length} files in ${relative(process.cwd(), outDir) || '.'}\n`);
}
