#!/usr/bin/env node
// Soak test for issue #4 ("never lose, never hang, never leak"): pulls one image N times
// through the fault-injecting proxy, each pull with random faults (body cuts, resets,
// 5xx, stalls, 200-instead-of-206, expired tokens, now and then a fault that never lifts),
// and checks every outcome: a pull either writes exactly the bytes of an undisturbed pull,
// or fails with a clear OciRootfsError and leaves no file. Not part of `npm test`.
//
//   npm run build && node bench/soak.mjs [--pulls 200] [--seed soak] [--verbose]
//
// Needs the distribution registry binary (as the e2e tests do). The test helpers are
// TypeScript; they are transpiled (types stripped, nothing else) into
// node_modules/.cache/oci-rootfs-soak so that their package imports resolve.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    pulls: { type: 'string', default: '200' },
    seed: { type: 'string', default: 'soak' },
    verbose: { type: 'boolean', default: false },
    'hang-after': { type: 'string', default: '60' },
  },
});
const PULLS = Number(args.pulls);
const HANG_MS = Number(args['hang-after']) * 1000;

if (!existsSync(join(ROOT, 'dist/index.js'))) {
  console.error('soak: dist/ is missing; run `npm run build` first');
  process.exit(2);
}

/** mulberry32, seeded from a string: the same seed gives the same faults. */
function rng(seed) {
  let state = [...String(seed)].reduce((h, c) => Math.imul(h ^ c.charCodeAt(0), 2654435761) >>> 0, 0x9e3779b9);
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)), pick: (list) => list[Math.floor(next() * list.length)] };
}

async function loadHelpers() {
  const ts = (await import('typescript')).default;
  const out = join(ROOT, 'node_modules/.cache/oci-rootfs-soak');
  await mkdir(out, { recursive: true });
  for (const name of ['fault-proxy', 'registry-server', 'push', 'tar-fixture']) {
    const source = await readFile(join(ROOT, 'test/helpers', `${name}.ts`), 'utf8');
    const { outputText } = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: false },
    });
    await writeFile(join(out, `${name}.js`), outputText);
  }
  const load = (name) => import(pathToFileURL(join(out, `${name}.js`)).href);
  return {
    proxy: await load('fault-proxy'),
    registry: await load('registry-server'),
    push: await load('push'),
    tar: await load('tar-fixture'),
  };
}

const helpers = await loadHelpers();
const { pullRootfs } = await import(pathToFileURL(join(ROOT, 'dist/index.js')).href);
const { writeAtomically } = await import(pathToFileURL(join(ROOT, 'dist/streams/output-file.js')).href);
const { OciRootfsError } = await import(pathToFileURL(join(ROOT, 'dist/errors.js')).href);

const registry = await helpers.registry.startRegistry();
const configDir = await mkdtemp(join(tmpdir(), 'oci-rootfs-soak-config-'));
const workDir = await mkdtemp(join(tmpdir(), 'oci-rootfs-soak-out-'));
const repo = 'soak/image';

// Random contents do not compress, so the blobs are as large as their files and cuts land
// mid-body; the top layer is an uncompressed tar.
const layer = (name, size) =>
  helpers.tar.buildTar([
    { name: `${name}/`, type: 'dir' },
    { name: `${name}/data.bin`, type: 'file', content: randomBytes(size) },
    { name: `${name}/small.txt`, type: 'file', content: `${name}\n`.repeat(100) },
  ]);
const image = await helpers.push.pushImage(registry.host, repo, 'v1', {
  layers: [
    { tar: layer('base', 400_000), compression: 'gzip' },
    { tar: layer('middle', 200_000), compression: 'gzip' },
    { tar: layer('top', 20_000), compression: 'none' },
  ],
});
const blobBytes = image.layers.reduce((sum, l) => sum + l.size, 0) + image.configBytes.length;

async function pullToFile(host, file, options) {
  const tar = pullRootfs(`${host}/${repo}:v1`, { plainHttp: true, dockerConfigDir: configDir, ...options });
  return writeAtomically(tar, file, options.signal === undefined ? {} : { signal: options.signal });
}

// The reference bytes: straight from the registry, no proxy.
await pullToFile(registry.host, join(workDir, 'expected.tar'), {});
const expected = await readFile(join(workDir, 'expected.tar'));
await rm(join(workDir, 'expected.tar'));

const proxy = await helpers.proxy.startFaultProxy({ upstream: registry.host, bearer: { expiresIn: 300 } });
const { BLOBS, MANIFESTS, TOKEN } = helpers.proxy;
const random = rng(args.seed);
const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const blobRe = (l) => new RegExp(`/blobs/${escape(l.digest)}$`);

/** 1–3 random faults for one pull; about one pull in twelve also gets one that never lifts. */
function faultsForOnePull() {
  const rules = [];
  const describe = [];
  const count = random.int(1, 3);
  for (let i = 0; i < count; i++) {
    const target = random.pick(image.layers);
    const size = target.size;
    const kind = random.pick(['cut', 'cut', 'cut', 'reset-body', 'reset', 'status', 'status', 'stall', 'range-200', 'unauthorized']);
    const path = blobRe(target);
    switch (kind) {
      case 'cut':
        rules.push({ path, fault: { type: 'cut', afterBytes: random.int(1, size - 1) }, times: random.int(1, 3) });
        break;
      case 'reset-body':
        rules.push({ path, fault: { type: 'reset', afterBytes: random.int(1, size - 1) } });
        break;
      case 'reset':
        rules.push({ path: random.pick([MANIFESTS, TOKEN, BLOBS]), fault: { type: 'reset' }, times: random.int(1, 2) });
        break;
      case 'status':
        rules.push({
          path: random.pick([MANIFESTS, TOKEN, BLOBS]),
          fault: { type: 'status', status: random.pick([500, 502, 503, 504]) },
          times: random.int(1, 3),
        });
        break;
      case 'stall':
        rules.push({ path, fault: { type: 'stall', afterBytes: random.int(0, size - 1) } });
        break;
      case 'range-200':
        rules.push({ path, fault: { type: 'cut', afterBytes: random.int(1, size - 1) } }, { path, fault: { type: 'ignore-range' } });
        break;
      case 'unauthorized':
        rules.push({ path, fault: { type: 'cut', afterBytes: random.int(1, size - 1) } }, { path, fault: { type: 'unauthorized' } });
        break;
    }
    describe.push(kind);
  }
  if (random.next() < 1 / 12) {
    const path = random.pick([MANIFESTS, BLOBS]);
    rules.unshift({ path, fault: random.pick([{ type: 'status', status: 503 }, { type: 'reset' }]), times: Infinity });
    describe.push('persistent');
  }
  return { rules, describe };
}

const stats = {
  attempted: 0,
  faultsInjected: 0,
  correct: 0,
  failedCleanly: 0,
  wrong: 0,
  failedUncleanly: 0,
  hung: 0,
  bytesRedownloaded: 0,
  resumes: 0,
  retries: 0,
  errors: new Map(),
};
const started = performance.now();

for (let i = 0; i < PULLS; i++) {
  proxy.clearRules();
  proxy.reset();
  const { rules, describe } = faultsForOnePull();
  proxy.add(...rules);
  const file = join(workDir, `pull-${i}.tar`);
  const controller = new AbortController();
  let resumes = 0;
  let retries = 0;
  const outcome = await Promise.race([
    pullToFile(proxy.host, file, {
      signal: controller.signal,
      retries: 5,
      retryBaseDelayMs: 2,
      retryMaxDelayMs: 20,
      timeoutMs: 250,
      onEvent: (event) => {
        if (event.type === 'resume') resumes++;
        if (event.type === 'retry') retries++;
      },
    }).then(
      () => ({ ok: true }),
      (error) => ({ ok: false, error }),
    ),
    new Promise((done) => setTimeout(() => done({ hung: true }), HANG_MS).unref()),
  ]);
  stats.attempted++;
  stats.faultsInjected += proxy.faultsInjected;
  stats.resumes += resumes;
  stats.retries += retries;
  let verdict;
  if (outcome.hung) {
    controller.abort();
    stats.hung++;
    verdict = 'HUNG';
  } else if (outcome.ok) {
    const bytes = await readFile(file);
    await rm(file);
    if (bytes.equals(expected)) {
      stats.correct++;
      stats.bytesRedownloaded += Math.max(0, proxy.bytesServed(BLOBS) - blobBytes);
      verdict = 'ok';
    } else {
      stats.wrong++;
      verdict = 'WRONG BYTES';
    }
  } else {
    const { error } = outcome;
    const leftovers = (await readdir(workDir)).length;
    const clear = error instanceof OciRootfsError && typeof error.code === 'string' && error.message.length > 0 && leftovers === 0;
    if (clear) {
      stats.failedCleanly++;
      const key = `${error.code} (exit ${error.exitCode})`;
      stats.errors.set(key, (stats.errors.get(key) ?? 0) + 1);
      verdict = `failed: ${error.code}: ${error.message}`;
    } else {
      stats.failedUncleanly++;
      verdict = `FAILED UNCLEANLY (${leftovers} file(s) left): ${error?.stack ?? error}`;
    }
  }
  if (args.verbose || !(verdict === 'ok' || verdict.startsWith('failed:'))) {
    console.log(`pull ${i + 1}: [${describe.join(', ')}] resumes ${resumes}, retries ${retries}: ${verdict}`);
  }
}

// Every socket the pulls opened must be closed by now.
let leakedSockets = 0;
try {
  await proxy.waitForNoSockets(5000);
} catch {
  leakedSockets = proxy.openSockets();
}
await proxy.close();
await registry.stop();
await rm(configDir, { recursive: true, force: true });
await rm(workDir, { recursive: true, force: true });

const seconds = (performance.now() - started) / 1000;
console.log(`
soak: ${stats.attempted} pulls of a ${image.layers.length}-layer image (${blobBytes} blob bytes) in ${seconds.toFixed(1)} s, seed "${args.seed}"
  pulls attempted            ${stats.attempted}
  faults injected            ${stats.faultsInjected} (requests answered with a fault)
  pulls correct              ${stats.correct} (byte-identical to an undisturbed pull)
  pulls failed cleanly       ${stats.failedCleanly} (OciRootfsError with a code, no output file)${[...stats.errors].map(([k, n]) => `\n    ${k}: ${n}`).join('')}
  pulls wrong                ${stats.wrong}
  pulls failed uncleanly     ${stats.failedUncleanly}
  pulls hung (> ${HANG_MS / 1000} s)        ${stats.hung}
  resumes / retries          ${stats.resumes} / ${stats.retries}
  bytes re-downloaded        ${stats.bytesRedownloaded} (blob bytes served beyond one copy, successful pulls)
  sockets left open          ${leakedSockets}`);
process.exitCode = stats.wrong + stats.failedUncleanly + stats.hung + leakedSockets === 0 ? 0 : 1;
