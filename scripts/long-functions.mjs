// Lists functions longer than a limit (default 80 lines) in production
// TypeScript: apps/*/src, apps/api/dashboard/src and packages/*/src, tests and
// generated code left out. A function may stay long when the first line of
// its body (or the comment right above it) says why, starting "Long:"; those
// are listed apart.
//
//   node scripts/long-functions.mjs [--max 80]
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import ts from 'typescript';

const root = resolve(import.meta.dirname, '..');
const i = process.argv.indexOf('--max');
const max = i > 0 ? Number(process.argv[i + 1]) : 80;

function files(dir) {
  let out = [];
  let names;
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const f of names) {
    const p = join(dir, f);
    if (['node_modules', 'generated', 'dist', 'test'].includes(f)) continue;
    if (statSync(p).isDirectory()) out = out.concat(files(p));
    else if (/\.ts$/.test(f) && !/\.(test|d)\.ts$/.test(f)) out.push(p);
  }
  return out;
}

const dirs = ['apps', 'packages'].flatMap((d) => readdirSync(join(root, d)).map((w) => join(root, d, w)));
const sources = dirs.flatMap((w) => [...files(join(w, 'src')), ...files(join(w, 'dashboard', 'src'))]);

function nameOf(node) {
  if (node.name) return node.name.getText();
  const p = node.parent;
  if (p && ts.isVariableDeclaration(p)) return p.name.getText();
  if (p && ts.isPropertyAssignment(p)) return p.name.getText();
  if (p && ts.isCallExpression(p)) return `${p.expression.getText().slice(0, 40)}(callback)`;
  return '(anonymous)';
}

const long = [];
const excused = [];
for (const file of sources) {
  const text = readFileSync(file, 'utf8');
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const visit = (node) => {
    if (ts.isFunctionLike(node) && node.body) {
      const start = sf.getLineAndCharacterOfPosition(node.getStart()).line;
      const end = sf.getLineAndCharacterOfPosition(node.end).line;
      const lines = end - start + 1;
      if (lines > max) {
        // The reason: a comment starting "Long:" just above the function or as the first thing in its body.
        const bodyStart = node.body.getStart ? node.body.getStart() + 1 : node.body.pos;
        const near = text.slice(Math.max(0, node.getFullStart()), bodyStart + 400);
        const where = `${relative(root, file)}:${start + 1}`;
        const row = { where, name: nameOf(node), lines };
        (/\/\/\s*Long:|\*\s*Long:/.test(near) ? excused : long).push(row);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
}
const show = (rows) =>
  rows.sort((a, b) => b.lines - a.lines).map((r) => `${String(r.lines).padStart(5)}  ${r.name}  ${r.where}`);
console.log(`functions over ${max} lines without a reason: ${long.length}`);
for (const l of show(long)) console.log(l);
console.log(`\nover ${max} lines with a reason ("Long:"): ${excused.length}`);
for (const l of show(excused)) console.log(l);
process.exitCode = long.length ? 1 : 0;
