#!/usr/bin/env node
// Finds import cycles among the modules of src/ (static imports and re-exports, type-only
// ones included: a cycle of types is still two modules that cannot be read apart).
// Exits 1 and prints each cycle when there is one.   node scripts/check-cycles.mjs [dir]
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = resolve(process.argv[2] ?? 'src');
const files = [];
(function walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (path.endsWith('.ts') && !path.endsWith('.d.ts')) files.push(path);
  }
})(root);

const SPECIFIER = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*['"](\.[^'"]+)['"]|(?:^|\n)\s*import\s*['"](\.[^'"]+)['"]/g;
const graph = new Map();
for (const file of files) {
  const text = readFileSync(file, 'utf8');
  const edges = new Set();
  for (const match of text.matchAll(SPECIFIER)) {
    const target = resolve(dirname(file), (match[1] ?? match[2]).replace(/\.js$/, '.ts'));
    if (files.includes(target)) edges.add(target);
  }
  graph.set(file, edges);
}

const cycles = new Set();
const state = new Map(); // 1: on the stack, 2: done
const stack = [];
function visit(node) {
  state.set(node, 1);
  stack.push(node);
  for (const next of graph.get(node) ?? []) {
    if (state.get(next) === 1) {
      const cycle = stack.slice(stack.indexOf(next)).map((f) => relative(root, f));
      // One spelling per cycle, whatever module it was entered by.
      const start = cycle.indexOf([...cycle].sort()[0]);
      cycles.add([...cycle.slice(start), ...cycle.slice(0, start)].join(' -> '));
    } else if (state.get(next) === undefined) visit(next);
  }
  stack.pop();
  state.set(node, 2);
}
for (const file of files) if (state.get(file) === undefined) visit(file);

if (cycles.size === 0) {
  console.log(`no import cycles among ${files.length} modules of ${relative(process.cwd(), root) || '.'}`);
} else {
  for (const cycle of cycles) console.log(`cycle: ${cycle}`);
  process.exitCode = 1;
}
