#!/usr/bin/env node
// `npm run bench`: builds (or reuses) the bench images, serves them from a local
// distribution registry, and measures oci-rootfs end to end, stage by stage, and against
// the peer tools. See bench/README.md.
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, statSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureImage } from './lib/images.mjs';
import { pushImage, startRegistry } from './lib/registry.mjs';
import { measureStartup, startupTable, STARTUP_TARGET } from './lib/startup.mjs';
import { startThrottleProxy } from './lib/throttle-proxy.mjs';
import { measureStages } from './lib/stages.mjs';
import { children, fmt, hasTool, mbps, median, MiB, run, sh, table } from './lib/util.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const cli = join(root, 'dist', 'cli', 'main.js');

const env = (name, fallback) => {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got "${v}"`);
  return n;
};
const config = {
  bigMb: env('BENCH_BIG_MB', 1024),
  manyFiles: env('BENCH_MANY_FILES', 100_000),
  millionFiles: env('BENCH_MILLION_FILES', 1_000_000),
  singleMb: env('BENCH_SINGLE_MB', 200),
  runs: Math.round(env('BENCH_RUNS', 1)),
  // big-2x (RSS growth, its three RSS rows only) and the million image (memory) run by
  // default; `0` leaves them out (the summary then says how to run them).
  double: process.env.BENCH_DOUBLE !== '0',
  million: process.env.BENCH_MILLION !== '0',
  startup: process.env.BENCH_STARTUP !== '0',
  startupRuns: Math.round(env('BENCH_STARTUP_RUNS', 20)),
  // The link of the rows "over a link": MB/s (10^6 B/s) of the throttling proxy; 0 = no such rows.
  linkMbps: process.env.BENCH_LINK_MBPS === '0' ? 0 : env('BENCH_LINK_MBPS', 100),
  pakoMb: env('BENCH_PAKO_MB', 256),
  only: (process.env.BENCH_ONLY ?? '').split(',').filter(Boolean),
  peers: process.env.BENCH_PEERS !== '0',
  stages: process.env.BENCH_STAGES !== '0',
  unpack: process.env.BENCH_UNPACK !== '0',
  /** Which compressed and stdout runs to make besides `pull -o .tar` (e.g. `BENCH_FORMATS=none` for unpack work). */
  formats: (process.env.BENCH_FORMATS ?? 'gzip,zstd,stdout').split(','),
  tmp: process.env.BENCH_TMPDIR ?? tmpdir(),
  // Where generated images are cached (small development sizes can go elsewhere than the
  // checkout's cache of full-size images).
  cacheDir: process.env.BENCH_CACHE_DIR ?? join(here, '.cache'),
  // gzip engines of the `pull -o rootfs.tar.gz` rows; pako (pure JS, ~2.5x slower) on request.
  gzipEngines: (process.env.BENCH_GZIP_ENGINES ?? 'native,zlib').split(',').filter(Boolean),
};

const log = (msg) => process.stderr.write(`[bench] ${msg}\n`);

// ---------------------------------------------------------------------------------------------
// Cleanup: the registry and any child die, temp dirs go, whatever happens.

let tempRoot;
let registry;
let cleaning;
async function cleanup() {
  cleaning ??= (async () => {
    for (const child of children) {
      try {
        child.kill('SIGTERM');
      } catch {}
    }
    if (registry) await registry.stop().catch(() => {});
    for (const child of children) {
      try {
        child.kill('SIGKILL');
      } catch {}
    }
    if (tempRoot) rmSync(tempRoot, { recursive: true, force: true });
  })();
  return cleaning;
}
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    log(`${signal}: stopping`);
    cleanup().finally(() => process.exit(130));
  });
}

// ---------------------------------------------------------------------------------------------
// End to end with our CLI

async function ourPull(ref, out, extra = []) {
  const timeFile = join(tempRoot, 'time.txt');
  return run(process.execPath, [cli, 'pull', '--plain-http', ref, '-o', out, ...extra], { timeV: true, timeFile });
}

/** The engine names of `--version` (gzip: libdeflate … | node:zlib …), for the report. */
async function enginesInUse() {
  const r = await run(process.execPath, [cli, '--version']);
  return r.stdout.trim().split('\n').slice(1).join('; ');
}

/** Pull to stdout, timing the first chunk as the bench receives it. */
async function ourPullStdout(ref) {
  const timeFile = join(tempRoot, 'time.txt');
  let first;
  let bytes = 0;
  const r = await run(process.execPath, [cli, 'pull', '--plain-http', ref, '-o', '-'], {
    timeV: true,
    timeFile,
    onStdout: (chunk, at) => {
      first ??= at;
      bytes += chunk.length;
    },
  });
  return { ...r, firstByte: first, bytes };
}

/** `pull -o -` with stdout on /dev/null (through a shell redirect, as `gzip -dc > /dev/null`). */
async function ourPullToDevNull(ref) {
  const timeFile = join(tempRoot, 'time.txt');
  const q = (arg) => `'${arg.replaceAll("'", "'\\''")}'`;
  return run('bash', ['-c', `exec ${q(process.execPath)} ${q(cli)} pull --plain-http ${q(ref)} -o - > /dev/null`], { timeV: true, timeFile });
}

/**
 * Moves a tree out of the way, to be removed when the bench ends. On ext4 without a journal
 * (this machine's disk) creating a file scans the inodes freed in the last minute or so, one
 * by one: a tree removed between rows slowed the next unpack (and umoci) several times over.
 */
let discarded = 0;
function discard(path) {
  if (!existsSync(path)) return;
  const trash = join(tempRoot, 'trash');
  mkdirSync(trash, { recursive: true });
  renameSync(path, join(trash, String(discarded++)));
}

/** `unpack` into a fresh directory (moved away afterwards, outside the timing). */
async function ourUnpack(ref, target) {
  const timeFile = join(tempRoot, 'time.txt');
  discard(target);
  const r = await run(process.execPath, [cli, 'unpack', '--plain-http', '--progress', 'none', ref, target], { timeV: true, timeFile });
  discard(target);
  return r;
}

async function repeat(runs, fn) {
  const results = [];
  for (let i = 0; i < runs; i++) results.push(await fn(i));
  return results;
}

function summarize(results, bytes) {
  const failed = results.find((r) => r.code !== 0);
  if (failed) return { error: `exit ${failed.code}: ${failed.stderr.trim().split('\n').pop()}` };
  const seconds = median(results.map((r) => r.seconds));
  return {
    seconds,
    secondsAll: results.map((r) => r.seconds),
    mbps: mbps(bytes, seconds),
    rssMiB: median(results.map((r) => r.rssKiB / 1024)),
    cpuSeconds: median(results.map((r) => r.cpuSeconds)),
    firstByte: median(results.map((r) => r.firstByte)),
  };
}

/**
 * `plan.slim` (big-2x): only the three rows whose peak RSS the growth check compares (.tar,
 * default .tar.gz, stdout). `plan.kind === 'million'`: only the memory rows.
 */
async function measureEndToEnd(plan, ref, dir) {
  const image = plan.image;
  const res = {};
  const outTar = join(dir, 'ours.tar');
  log('  e2e: pull -o .tar');
  const tarRuns = await repeat(config.runs, async () => {
    rmSync(outTar, { force: true });
    return ourPull(ref, outTar);
  });
  const rootfsBytes = existsSync(outTar) ? statSync(outTar).size : 0;
  res.rootfsBytes = rootfsBytes;
  res.tar = summarize(tarRuns, rootfsBytes);
  if (existsSync(outTar)) {
    const listing = await sh(`tar -tf ${outTar} | wc -l`);
    res.entries = Number(listing.stdout.trim());
  }

  if (image.kind === 'million') {
    // Memory is the question here: the .tar pull's peak RSS, and the flattener's heap per path.
    log('  heap per path (bench/heap-per-path.mjs)');
    const heap = await run(process.execPath, ['--expose-gc', '--max-old-space-size=4000', join(here, 'heap-per-path.mjs'), image.dir, join(here, '..', 'dist')]);
    const m = /([0-9.]+) MiB, ([0-9]+) B per entry/.exec(heap.stdout);
    res.heapMiB = m ? Number(m[1]) : undefined;
    res.heapBytesPerPath = m ? Number(m[2]) : undefined;
    if (!m) res.heapError = `heap-per-path.mjs exited ${heap.code}: ${heap.stderr.trim().split('\n').pop()}`;
    res.gzip = res.zstd = res.stdout = { na: true, note: 'not run (million: memory only)' };
    res.gzipByEngine = {};
    return { res, outTar };
  }

  if (config.unpack && !plan.slim) {
    log('  e2e: unpack DIR');
    res.unpack = summarize(await repeat(config.runs, () => ourUnpack(ref, join(dir, 'unpacked'))), rootfsBytes);
  }

  const none = { na: true, note: 'not run (BENCH_FORMATS)' };
  res.gzip = res.zstd = res.stdout = res.stdoutNull = none;
  res.gzipByEngine = {};
  if (config.formats.includes('gzip')) {
    // One row per gzip engine; `res.gzip` is the default engine's (the ratios use it).
    for (const engine of plan.slim ? [] : config.gzipEngines) {
      log(`  e2e: pull -o .tar.gz --gzip-engine ${engine}`);
      const outGz = join(dir, `ours-${engine}.tar.gz`);
      const gzRuns = await repeat(config.runs, async () => {
        rmSync(outGz, { force: true });
        // --no-passthrough: a one-layer image would otherwise pass its blob through, and the
        // row would measure no engine at all (the pass-through has rows of its own).
        return ourPull(ref, outGz, ['--gzip-engine', engine, '--no-passthrough']);
      });
      const m = summarize(gzRuns, rootfsBytes);
      if (existsSync(outGz)) m.outBytes = statSync(outGz).size;
      rmSync(outGz, { force: true });
      res.gzipByEngine[engine] = m;
    }
    log('  e2e: pull -o .tar.gz (default engine)');
    const outGz = join(dir, 'ours.tar.gz');
    const gzRuns = await repeat(config.runs, async () => {
      rmSync(outGz, { force: true });
      return ourPull(ref, outGz, ['--progress', 'json']);
    });
    res.gzip = summarize(gzRuns, rootfsBytes);
    if (existsSync(outGz)) res.gzip.outBytes = statSync(outGz).size;
    const done = doneEvent(gzRuns[0]?.stderr);
    res.gzip.engine = done?.gzipEngine;
    res.gzip.path = done?.path;
    rmSync(outGz, { force: true });
    if (image.layers.length === 1 && !plan.slim) await measurePassthrough(image, ref, outGz, rootfsBytes, res);
  }

  if (config.formats.includes('zstd') && !plan.slim) {
    log('  e2e: pull --format zstd');
    const outZst = join(dir, 'ours.tar.zst');
    const zst = await ourPull(ref, outZst, ['--format', 'zstd']);
    if (zst.code === 0) {
      const zstRuns = [zst, ...(await repeat(config.runs - 1, async () => {
        rmSync(outZst, { force: true });
        return ourPull(ref, outZst, ['--format', 'zstd']);
      }))];
      res.zstd = summarize(zstRuns, rootfsBytes);
    } else {
      res.zstd = { na: true, note: zst.stderr.trim().split('\n').pop() };
    }
    rmSync(outZst, { force: true });
  }

  if (config.formats.includes('stdout')) {
    log('  e2e: pull -o - (stdout, time to first byte)');
    const stdoutRuns = await repeat(config.runs, () => ourPullStdout(ref));
    res.stdout = summarize(stdoutRuns, rootfsBytes);
    res.stdout.bytes = stdoutRuns[0].bytes;
    if (!plan.slim) {
      // Like for like with `gzip -dc > /dev/null`: stdout is /dev/null itself, no pipe to
      // the bench and no page cache to fill.
      log('  e2e: pull -o - > /dev/null');
      res.stdoutNull = summarize(await repeat(config.runs, () => ourPullToDevNull(ref)), rootfsBytes);
    }
  }
  return { res, outTar };
}

/** The `done` event of a `--progress json` run's stderr. */
function doneEvent(stderr = '') {
  return stderr.split('\n').map((line) => (line.startsWith('{') ? JSON.parse(line) : {})).find((e) => e.type === 'done');
}

/** The blob URL of a one-layer image's layer on `host`. */
function blobUrlOf(host, ref, image) {
  const repo = ref.slice(ref.indexOf('/') + 1).replace(/:[^:]+$/, '');
  return `http://${host}/v2/${repo}/blobs/${image.layers[0].digest}`;
}

/**
 * A single gzip layer to .tar.gz: the pass-through (the default: the blob is written as it
 * is when nothing would change), the flattened path (--no-passthrough), and the blob's own
 * download (curl to /dev/null), interleaved. Target: pass-through ≤ 1.5× the download.
 * Measured twice: on loopback (the registry itself) and over a link of BENCH_LINK_MBPS
 * (the throttling proxy), with the proxy's CPU time beside each row over the link.
 */
async function measurePassthrough(image, ref, outGz, rootfsBytes, res) {
  const registryHost = ref.slice(0, ref.indexOf('/'));
  const links = [{ key: 'loopback', host: registryHost }];
  let proxy;
  if (config.linkMbps > 0) {
    proxy = await startThrottleProxy(registryHost, config.linkMbps);
    links.push({ key: 'link', host: proxy.host, proxy });
  }
  try {
    for (const link of links) {
      log(`  e2e: single layer over ${link.key === 'link' ? `a ${config.linkMbps} MB/s link` : 'loopback'}: pass-through vs --no-passthrough vs the blob download`);
      const blobUrl = blobUrlOf(link.host, ref, image);
      const linkRef = `${link.host}${ref.slice(ref.indexOf('/'))}`;
      const timeFile = join(tempRoot, 'time.txt');
      const rows = { download: [], verified: [], passthrough: [], noPassthrough: [] };
      const proxyCpu = { download: [], verified: [], passthrough: [], noPassthrough: [] };
      const timedRow = async (name, fn) => {
        const before = link.proxy?.cpuSeconds();
        const r = await fn();
        if (link.proxy) proxyCpu[name].push(link.proxy.cpuSeconds() - before);
        rows[name].push(r);
        return r;
      };
      let passed = false;
      let fallback;
      let engine;
      for (let i = 0; i < config.runs; i++) {
        await timedRow('download', () => run('curl', ['-sf', '-o', '/dev/null', blobUrl], { timeV: true, timeFile }));
        // What any tool that checks the digest and the diffID must do at least.
        await timedRow('verified', () => run('bash', ['-o', 'pipefail', '-c', `curl -sf ${blobUrl} | tee >(sha256sum > /dev/null) | gzip -dc | sha256sum > /dev/null`]));
        rmSync(outGz, { force: true });
        const r = await timedRow('passthrough', () => ourPull(linkRef, outGz, ['--progress', 'json']));
        passed ||= /"path":"passthrough"/.test(r.stderr);
        // A pass-through that gave up says why in a `retry` event before it flattens.
        fallback ??= r.stderr.split('\n').map((line) => (line.startsWith('{') ? JSON.parse(line) : {})).find((ev) => ev.type === 'retry' && /pass-through/.test(ev.reason ?? ''))?.reason;
        rmSync(outGz, { force: true });
        // --progress json on both pulls: the same reporting cost, and the done event names the engine.
        const flat = await timedRow('noPassthrough', () => ourPull(linkRef, outGz, ['--no-passthrough', '--progress', 'json']));
        engine ??= doneEvent(flat.stderr)?.gzipEngine;
      }
      rmSync(outGz, { force: true });
      const withProxy = (m, name) => (link.proxy ? { ...m, proxyCpuSeconds: median(proxyCpu[name]) } : m);
      const out = {
        passthrough: withProxy({ ...summarize(rows.passthrough, rootfsBytes), passed, fallback }, 'passthrough'),
        noPassthrough: withProxy({ ...summarize(rows.noPassthrough, rootfsBytes), engine }, 'noPassthrough'),
        blobDownload: withProxy(summarize(rows.download, image.layers[0].size), 'download'),
        blobVerified: withProxy(summarize(rows.verified, rootfsBytes), 'verified'),
      };
      if (link.key === 'loopback') Object.assign(res, out);
      else res.link = { mbps: config.linkMbps, ...out };
    }
  } finally {
    await proxy?.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// Peers and ceilings

async function timedShell(script) {
  const timeFile = join(tempRoot, 'time.txt');
  const r = await run('bash', ['-o', 'pipefail', '-c', script], { timeV: true, timeFile });
  if (r.code !== 0) throw new Error(`failed (${r.code}): ${script}\n${r.stderr.slice(-2000)}`);
  return r;
}

async function measurePeers(image, host, repo, dir, outTar) {
  const peers = {};
  const skip = (tool) => ({ skipped: `${tool} not installed` });
  const ociDir = join(dir, 'oci');
  const bundle = join(dir, 'bundle');
  if (!hasTool('skopeo')) peers.skopeo = skip('skopeo');
  if (!hasTool('umoci')) peers.umoci = skip('umoci');
  const canPeer = hasTool('skopeo') && hasTool('umoci') && process.getuid?.() === 0;
  if (hasTool('umoci') && process.getuid?.() !== 0) peers.umoci = { skipped: 'umoci unpack needs root (no --rootless here)' };
  if (canPeer) {
    const samples = { skopeo: [], umoci: [], tarGzip: [], tarPigz: [], rss: { skopeo: [], umoci: [], tarGzip: [], tarPigz: [] } };
    for (let i = 0; i < config.runs; i++) {
      discard(ociDir);
      discard(bundle);
      log('  peer: skopeo copy');
      const s = await timedShell(`skopeo copy -q --src-tls-verify=false docker://${host}/${repo}:v1 oci:${ociDir}:v1`);
      log('  peer: umoci unpack');
      const u = await timedShell(`umoci unpack --image ${ociDir}:v1 ${bundle}`);
      log('  peer: tar | gzip -6');
      const g = await timedShell(`tar -C ${bundle}/rootfs -cf - . | gzip -6 > ${join(dir, 'peer.tar.gz')}`);
      let p;
      if (hasTool('pigz')) {
        log('  peer: tar | pigz -6 -p 2');
        p = await timedShell(`tar -C ${bundle}/rootfs -cf - . | pigz -6 -p 2 > ${join(dir, 'peer-pigz.tar.gz')}`);
      }
      samples.skopeo.push(s.seconds);
      samples.umoci.push(u.seconds);
      samples.tarGzip.push(g.seconds);
      if (p) samples.tarPigz.push(p.seconds);
      samples.rss.skopeo.push(s.rssKiB / 1024);
      samples.rss.umoci.push(u.rssKiB / 1024);
      samples.rss.tarGzip.push(g.rssKiB / 1024);
      if (p) samples.rss.tarPigz.push(p.rssKiB / 1024);
    }
    peers.skopeo = { seconds: median(samples.skopeo), rssMiB: median(samples.rss.skopeo) };
    peers.umoci = { seconds: median(samples.umoci), rssMiB: median(samples.rss.umoci) };
    peers.tarGzip = { seconds: median(samples.tarGzip), rssMiB: median(samples.rss.tarGzip) };
    peers.tarPigz = hasTool('pigz') ? { seconds: median(samples.tarPigz), rssMiB: median(samples.rss.tarPigz) } : skip('pigz');
    peers.pathGzip = { seconds: peers.skopeo.seconds + peers.umoci.seconds + peers.tarGzip.seconds };
    if (peers.tarPigz.seconds !== undefined) peers.pathPigz = { seconds: peers.skopeo.seconds + peers.umoci.seconds + peers.tarPigz.seconds };
    peers.treeCheck = await compareTrees(bundle, outTar);
  }
  discard(ociDir);
  discard(bundle);
  rmSync(join(dir, 'peer.tar.gz'), { force: true });
  rmSync(join(dir, 'peer-pigz.tar.gz'), { force: true });

  // Ceilings
  const ceilings = {};
  const files = image.layers.map((l) => l.file).join(' ');
  const gzipDcRuns = await repeat(config.runs, () => timedShell(`gzip -dc ${files} > /dev/null`));
  ceilings.gzipDc = { seconds: median(gzipDcRuns.map((r) => r.seconds)), cpuSeconds: median(gzipDcRuns.map((r) => r.cpuSeconds)), rssMiB: median(gzipDcRuns.map((r) => r.rssKiB / 1024)) };
  // Like for like with `pull -o file.tar`: the same disk (our output's directory), and the
  // fsync our atomic file output does before its rename. Writing 1 GB into the page cache
  // costs seconds of kernel time that the /dev/null ceiling never pays.
  const gzipFile = join(dir, 'ceiling-gunzip.tar');
  const fileRuns = await repeat(config.runs, async () => {
    rmSync(gzipFile, { force: true });
    const write = await timedShell(`gzip -dc ${files} > ${gzipFile}`);
    const sync = await timedShell(`sync ${gzipFile}`);
    return { seconds: write.seconds + sync.seconds, cpuSeconds: write.cpuSeconds + sync.cpuSeconds, syncSeconds: sync.seconds, rssMiB: write.rssKiB / 1024 };
  });
  rmSync(gzipFile, { force: true });
  ceilings.gzipDcFile = { seconds: median(fileRuns.map((r) => r.seconds)), cpuSeconds: median(fileRuns.map((r) => r.cpuSeconds)), syncSeconds: median(fileRuns.map((r) => r.syncSeconds)), rssMiB: median(fileRuns.map((r) => r.rssMiB)) };
  if (hasTool('pigz') && existsSync(outTar)) {
    const pigzOut = join(dir, 'ceiling-pigz.tar.gz');
    const pigzRuns = await repeat(config.runs, () => timedShell(`pigz -6 -p 2 -c ${outTar} > ${pigzOut}`));
    ceilings.pigz = {
      seconds: median(pigzRuns.map((r) => r.seconds)),
      cpuSeconds: median(pigzRuns.map((r) => r.cpuSeconds)),
      outBytes: statSync(pigzOut).size,
    };
    rmSync(pigzOut, { force: true });
  } else ceilings.pigz = skip('pigz');
  return { peers, ceilings };
}

/** Sanity check: the same set of paths in umoci's rootfs and in our tar (names only). */
async function compareTrees(bundle, outTar) {
  if (!existsSync(outTar)) return { note: 'no output tar' };
  const ours = await sh(`tar -tf ${outTar} | sed -e 's#^\\./##' -e 's#/$##' | grep -v '^\\.\\?$' | LC_ALL=C sort`);
  const theirs = await sh(`cd ${bundle}/rootfs && find . -mindepth 1 | sed 's#^\\./##' | LC_ALL=C sort`);
  const a = new Set(ours.stdout.split('\n').filter(Boolean));
  const b = new Set(theirs.stdout.split('\n').filter(Boolean));
  const onlyOurs = [...a].filter((p) => !b.has(p));
  const onlyUmoci = [...b].filter((p) => !a.has(p));
  return { ours: a.size, umoci: b.size, onlyOurs: onlyOurs.length, onlyUmoci: onlyUmoci.length, examples: [...onlyOurs.slice(0, 3).map((p) => `+${p}`), ...onlyUmoci.slice(0, 3).map((p) => `-${p}`)] };
}

// ---------------------------------------------------------------------------------------------
// Reporting

const TARGETS = {
  gzipVsPeer: 0.33,
  gzipVsPigz: 1.0,
  gzipSizeVsPigz: 1.0,
  tarVsGunzip: 1.0,
  entriesPerSecond: 30_000,
  unpackVsTar: 1.2,
  unpackVsPeer: 0.4,
  unpackEntriesPerSecond: 20_000,
  passthroughVsDownload: 1.5,
  versionVsNode: 1.5,
  existsBeyondNetworkVsNode: 1.5,
  rssMiB: 150,
  millionRssMiB: 250,
  heapBytesPerPath: 100,
  rssGrowth: 0.1,
};

function ratios(result) {
  const r = {};
  const e = result.e2e;
  if (e.gzip?.seconds && result.peers?.pathGzip?.seconds) r.gzipVsPeer = e.gzip.seconds / result.peers.pathGzip.seconds;
  const pigz = result.ceilings?.pigz;
  if (e.gzip?.seconds && pigz?.seconds) r.gzipVsPigz = e.gzip.seconds / pigz.seconds;
  r.byEngine = {};
  for (const [engine, m] of Object.entries(e.gzipByEngine ?? {})) {
    if (!m.seconds || !pigz?.seconds) continue;
    r.byEngine[engine] = {
      time: m.seconds / pigz.seconds,
      cpu: m.cpuSeconds && pigz.cpuSeconds ? m.cpuSeconds / pigz.cpuSeconds : undefined,
      size: m.outBytes && pigz.outBytes ? m.outBytes / pigz.outBytes : undefined,
    };
  }
  if (e.tar?.seconds && result.ceilings?.gzipDc?.seconds) r.tarVsGunzip = e.tar.seconds / result.ceilings.gzipDc.seconds;
  // Like for like: both to /dev/null; both to a file on the same disk, fsynced.
  if (e.stdoutNull?.seconds && result.ceilings?.gzipDc?.seconds) r.stdoutNullVsGunzip = e.stdoutNull.seconds / result.ceilings.gzipDc.seconds;
  if (e.tar?.seconds && result.ceilings?.gzipDcFile?.seconds) r.tarFileVsGunzipFile = e.tar.seconds / result.ceilings.gzipDcFile.seconds;
  if (e.tar?.seconds && e.entries) r.entriesPerSecond = e.entries / e.tar.seconds;
  if (e.unpack?.seconds && e.tar?.seconds) r.unpackVsTar = e.unpack.seconds / e.tar.seconds;
  const peerUnpack = (result.peers?.skopeo?.seconds ?? 0) + (result.peers?.umoci?.seconds ?? 0);
  if (e.unpack?.seconds && result.peers?.umoci?.seconds) r.unpackVsPeer = e.unpack.seconds / peerUnpack;
  if (e.unpack?.seconds && e.entries) r.unpackEntriesPerSecond = e.entries / e.unpack.seconds;
  return r;
}

const verdict = (value, target, lowerIsBetter = true) =>
  value === undefined ? '-' : (lowerIsBetter ? value <= target : value >= target) ? 'ok' : 'MISS';

const engineLabel = { native: 'native (libdeflate)', zlib: 'node:zlib', pako: 'pako' };

/** A load average above 3/4 of the CPUs during an image: its numbers are pessimistic. */
const busyNote = (r) => {
  const busy = Math.max(r?.loadBefore ?? 0, r?.loadAfter ?? 0);
  return busy > cpus().length * 0.75 ? `load ${busy.toFixed(1)} on ${cpus().length} CPUs: pessimistic` : '';
};

/**
 * Every target of issues 10 and 12 (and DESIGN.md §8's peer-path ratio) as one list:
 * { issue, name, engine, value, shown, target, verdict ('ok' | 'MISS' | 'not run'), note }.
 */
function targetSummary(results, startup, notRun, meta) {
  const by = Object.fromEntries(results.map((r) => [r.name, r]));
  const rows = [];
  const add = (issue, image, name, value, target, { lowerIsBetter = true, digits = 2, engine = '', missNote, unit = '', why } = {}) => {
    const r = by[image];
    const shown = value === undefined ? '-' : `${fmt(value, digits)}${unit}`;
    const v = value === undefined ? 'not run' : verdict(value, target, lowerIsBetter);
    const notes = [];
    if (value === undefined) notes.push(notRun[image] ?? why ?? 'not measured');
    else {
      if (v === 'MISS' && missNote) notes.push(missNote);
      if (v === 'MISS' && busyNote(r)) notes.push(busyNote(r));
    }
    rows.push({ issue, image, name, engine, value, shown, target: `${lowerIsBetter ? '≤' : '≥'} ${target}${unit}`, verdict: v, note: notes.join('; ') });
  };
  const big = by.big?.ratios ?? {};
  const peersWhy = (r) => (r === undefined ? undefined : r.peers?.umoci?.skipped ? `peers skipped: ${r.peers.umoci.skipped}` : config.peers ? undefined : 'not run (BENCH_PEERS=0)');
  const formatsWhy = config.formats.includes('gzip') ? undefined : 'not run (BENCH_FORMATS)';

  for (const engine of config.gzipEngines) {
    const v = big.byEngine?.[engine];
    add(10, 'big', 'big: pull → .tar.gz / pigz -6 -p 2 of the flattened tar (wall)', v?.time, TARGETS.gzipVsPigz, { engine: engineLabel[engine] ?? engine, why: formatsWhy ?? peersWhy(by.big) });
    add(10, 'big', 'big: .tar.gz size / pigz -6 -p 2 output size', v?.size, TARGETS.gzipSizeVsPigz, { engine: engineLabel[engine] ?? engine, digits: 3, why: formatsWhy ?? peersWhy(by.big) });
  }
  const likeForLike = big.tarFileVsGunzipFile;
  const dirtyCeiling =
    likeForLike === undefined
      ? 'the ceiling writes nothing to the page cache (~1.6 s of kernel time per GB here)'
      : likeForLike <= TARGETS.tarVsGunzip
        ? 'the /dev/null ceiling fills no page cache: like for like (file vs file) is ok'
        : `the ceiling fills no page cache, but like for like (file vs file) is ${fmt(likeForLike, 2)} too`;
  add(10, 'big', 'big: pull -o file.tar / gzip -dc > /dev/null', big.tarVsGunzip, TARGETS.tarVsGunzip, { missNote: dirtyCeiling, why: peersWhy(by.big) });
  add(10, 'big', 'big: pull -o - > /dev/null / gzip -dc > /dev/null', big.stdoutNullVsGunzip, TARGETS.tarVsGunzip, { why: config.formats.includes('stdout') ? peersWhy(by.big) : 'not run (BENCH_FORMATS)' });
  add(10, 'big', 'big: pull -o file.tar / (gzip -dc > file + fsync), same disk', big.tarFileVsGunzipFile, TARGETS.tarVsGunzip, { why: peersWhy(by.big) });
  const single = by.single?.ratios?.passthrough ?? {};
  const singleE = by.single?.e2e ?? {};
  const fellBack = (l) => (l?.passthrough && !l.passthrough.passed ? `the pull FELL BACK to flattening (${l.passthrough.fallback ?? 'no reason given'})` : undefined);
  add(10, 'single', 'single: .tar.gz with pass-through / blob download, loopback', single.loopback?.vsDownload, TARGETS.passthroughVsDownload, {
    engine: 'none (blob as is)',
    missNote: fellBack(singleE) ?? `the loopback download (${fmt(single.loopback?.downloadMBps, 0)} MB/s) outruns any inflate: read the link row`,
    why: formatsWhy,
  });
  add(10, 'single', `single: .tar.gz with pass-through / blob download, ${config.linkMbps > 0 ? `${config.linkMbps} MB/s` : 'throttled'} link`, single.link?.vsDownload, TARGETS.passthroughVsDownload, {
    engine: 'none (blob as is)',
    missNote: fellBack(singleE.link),
    why: config.linkMbps > 0 ? formatsWhy : 'not run (BENCH_LINK_MBPS=0)',
  });
  add(10, 'many', 'many: pull -o .tar, entries/s', by.many?.ratios?.entriesPerSecond, TARGETS.entriesPerSecond, { lowerIsBetter: false, digits: 0 });
  add(10, 'big', 'big: peak RSS MiB (max of .tar, .tar.gz, stdout)', big.peakRssMiB, TARGETS.rssMiB, { digits: 1, why: formatsWhy });
  add(10, 'big-2x', 'big → big-2x: peak RSS growth', meta.rssGrowth === undefined ? undefined : meta.rssGrowth * 100, TARGETS.rssGrowth * 100, { digits: 1, unit: ' %', why: by['big-2x'] && !by.big ? 'not run (big left out)' : undefined });
  const million = by.million?.e2e;
  const smallMillion = config.millionFiles < 1_000_000 ? `${config.millionFiles} files, not 1,000,000: the fixed parts weigh more` : undefined;
  add(10, 'million', `million: flattener heap + arrays per path, B`, million?.heapBytesPerPath, TARGETS.heapBytesPerPath, { digits: 0, missNote: smallMillion, why: million?.heapError });
  add(10, 'million', `million: peak RSS MiB, pull → .tar`, million?.tar?.rssMiB, TARGETS.millionRssMiB, { digits: 1 });
  const su = (name, value, target, missNote) => {
    const shown = value === undefined ? '-' : fmt(value, 2);
    const v = value === undefined ? 'not run' : verdict(value, target);
    const busy = startup && Math.max(startup.loadBefore, startup.loadAfter) > cpus().length * 0.75 ? `load ${Math.max(startup.loadBefore, startup.loadAfter).toFixed(1)}: pessimistic` : '';
    rows.push({ issue: 10, image: 'startup', name, engine: '', value, shown, target: `≤ ${target}`, verdict: v, note: value === undefined ? notRun.startup : v === 'MISS' ? [missNote, busy].filter(Boolean).join('; ') : '' });
  };
  su('start-up: --version / node -e 0 (wall)', startup?.versionRatio, TARGETS.versionVsNode);
  su('start-up: (exists − its network time) / node -e 0 (wall)', startup?.existsBeyondNetworkRatio, TARGETS.existsBeyondNetworkVsNode,
    startup &&
      `network ${fmt(startup.networkSeconds * 1000, 0)} of ${fmt(startup.rows[4].wall * 1000, 0)} ms; ${fmt(startup.existsOverVersionSeconds * 1000, 0)} ms more than --version (imports + work); ` +
        `answer at ${fmt(startup.rows[4].answer * 1000, 0)} ms, exit ${fmt((startup.rows[4].wall - startup.rows[4].answer) * 1000, 0)} ms later`);
  add('§8', 'big', 'big: pull → .tar.gz / peer path (skopeo + umoci + tar | gzip)', big.gzipVsPeer, TARGETS.gzipVsPeer, { why: formatsWhy ?? peersWhy(by.big) });

  add(12, 'big', 'big: unpack / pull -o .tar', big.unpackVsTar, TARGETS.unpackVsTar, { why: config.unpack ? undefined : 'not run (BENCH_UNPACK=0)' });
  add(12, 'big', 'big: unpack / (skopeo copy + umoci unpack)', big.unpackVsPeer, TARGETS.unpackVsPeer, { why: config.unpack ? peersWhy(by.big) : 'not run (BENCH_UNPACK=0)' });
  add(12, 'big', 'big: unpack peak RSS MiB', by.big?.e2e.unpack?.rssMiB, TARGETS.rssMiB, { digits: 1, why: config.unpack ? undefined : 'not run (BENCH_UNPACK=0)' });
  add(12, 'many', 'many: unpack, entries/s', by.many?.ratios?.unpackEntriesPerSecond, TARGETS.unpackEntriesPerSecond, { lowerIsBetter: false, digits: 0, why: config.unpack ? undefined : 'not run (BENCH_UNPACK=0)' });
  return rows;
}

function report(results, meta, startup, notRun) {
  const out = [];
  const mb = (b) => (b / MiB).toFixed(1);
  if (startup) {
    out.push(`\n=== start-up (load average ${startup.loadBefore.toFixed(1)} before, ${startup.loadAfter.toFixed(1)} after; measured in ${startup.seconds.toFixed(0)} s) ===`);
    out.push(startupTable(startup));
  }
  for (const r of results) {
    const img = r.image;
    out.push(`\n=== ${r.name}: ${img.layers.length} layers, ${mb(img.tarBytes)} MiB layer tars, ${mb(img.gzBytes)} MiB gzip, ${img.entries} layer entries; rootfs ${mb(r.e2e.rootfsBytes)} MiB, ${r.e2e.entries ?? '?'} entries; measured in ${r.seconds.toFixed(0)} s ===`);
    const busy = Math.max(r.loadBefore ?? 0, r.loadAfter ?? 0);
    if (busy > cpus().length * 0.75) {
      out.push(`WARNING: load average ${r.loadBefore?.toFixed(1)} before / ${r.loadAfter?.toFixed(1)} after this image on ${cpus().length} CPUs: other processes were competing, numbers are pessimistic`);
    }
    const e = r.e2e;
    const row = (label, m, engine = '', note = '') =>
      m === undefined
        ? [label, engine, '-', '', '', '', '', 'not run']
        : m.na
        ? [label, engine, 'n/a', '', '', '', '', m.note ?? '']
        : m.error
          ? [label, engine, 'error', '', '', '', '', m.error]
          : [label, engine, fmt(m.seconds, 2), fmt(m.cpuSeconds, 2), fmt(m.mbps), fmt(m.rssMiB), fmt(m.firstByte, 3), [m.outBytes ? `${mb(m.outBytes)} MiB out` : '', m.proxyCpuSeconds !== undefined ? `proxy CPU ${fmt(m.proxyCpuSeconds, 2)} s (${fmt((m.proxyCpuSeconds / m.seconds) * 100, 0)} % of a core)` : '', note].filter(Boolean).join('; ')];
    out.push(`engines: ${meta.engines}`);
    out.push(
      table([
        ['oci-rootfs end to end', 'gzip engine', 'wall s', 'CPU s', 'MB/s', 'peak RSS MiB', 'first byte s', 'note'],
        row('pull -o rootfs.tar', e.tar),
        ...Object.entries(e.gzipByEngine ?? {}).map(([engine, m]) => row(`pull -o rootfs.tar.gz --gzip-engine ${engine} --no-passthrough`, m, engineLabel[engine] ?? engine)),
        ...(r.kind === 'million' ? [] : [row('pull -o rootfs.tar.gz (default engine)', e.gzip, e.gzip.path === 'passthrough' ? 'none (blob as is)' : engineLabel[e.gzip.engine] ?? e.gzip.engine ?? (e.gzip.na ? '' : '?'), e.gzip.path === 'passthrough' ? 'passed the blob through' : '')]),
        ...(r.slim || r.kind === 'million' ? [] : [row('pull --format zstd', e.zstd)]),
        ...(r.kind === 'million' ? [] : [row('pull -o - (stdout, piped to the bench)', e.stdout)]),
        ...(r.slim || r.kind === 'million' ? [] : [row('pull -o - > /dev/null', e.stdoutNull)]),
        ...(e.unpack === undefined ? [] : [row('unpack DIR', e.unpack)]),
        ...[['loopback', e], [`link ${e.link?.mbps} MB/s`, e.link]].flatMap(([where, l]) =>
          l?.passthrough
            ? [
                row(`single layer → .tar.gz with pass-through${l.passthrough.passed ? '' : ' (FELL BACK)'}, ${where}`, l.passthrough, 'none (blob as is)', l.passthrough.passed ? '' : l.passthrough.fallback ?? ''),
                row(`single layer → .tar.gz --no-passthrough, ${where}`, l.noPassthrough, engineLabel[l.noPassthrough.engine] ?? l.noPassthrough.engine ?? ''),
                row(`ceiling: the blob download alone (curl), ${where}`, l.blobDownload),
                row(`ceiling: curl | gzip -dc | sha256sum (+ sha256 of the blob), ${where}`, l.blobVerified),
              ]
            : [],
        ),
      ]),
    );
    if (r.stages) {
      out.push('');
      out.push(
        table([
          ['stage (in-process, cached blobs)', 'engine', 'input MiB', 'seconds', 'CPU s', 'MB/s input', 'MB/s rootfs-equiv', 'note'],
          ...r.stages.rows.map((s) => {
            const sec = median(s.seconds);
            const extra = [s.entries ? `${s.entries} entries, ${Math.round(s.entries / sec)}/s` : '', s.outBytes && s.engine ? `${mb(s.outBytes)} MiB out` : '', s.note ?? ''].filter(Boolean).join('; ');
            const rootfsEquiv = s.note?.startsWith('first') ? mbps(s.inBytes, sec) : mbps(r.stages.tarBytes, sec);
            return [s.stage, s.engine ?? '', mb(s.inBytes), fmt(sec, 2), fmt(s.cpuSeconds === undefined ? undefined : median(s.cpuSeconds), 2), fmt(mbps(s.inBytes, sec)), fmt(rootfsEquiv), extra];
          }),
        ]),
      );
    }
    out.push('');
    const p = r.peers ?? {};
    const c = r.ceilings ?? {};
    if (r.peers || r.ceilings) {
    const peerRow = (label, m) => (m === undefined ? [label, '-', '-', '-', ''] : m.skipped ? [label, 'skipped', '', '', m.skipped] : [label, fmt(m.seconds, 2), fmt(mbps(r.e2e.rootfsBytes, m.seconds)), fmt(m.rssMiB), '']);
    out.push(
      table([
        ['peers and ceilings', 'wall s', 'MB/s rootfs', 'peak RSS MiB', 'note'],
        peerRow('skopeo copy → oci layout', p.skopeo),
        peerRow('umoci unpack', p.umoci),
        peerRow('tar -c | gzip -6', p.tarGzip),
        peerRow('tar -c | pigz -6 -p 2', p.tarPigz),
        peerRow('peer path, gzip (sum of the 3)', p.pathGzip),
        peerRow('peer path, pigz (sum of the 3)', p.pathPigz),
        peerRow('ceiling: gzip -dc layers > /dev/null', c.gzipDc),
        peerRow(`ceiling: gzip -dc layers > file (same disk) + fsync`, c.gzipDcFile),
        peerRow('ceiling: pigz -6 -p 2 our tar', c.pigz),
      ]),
    );
    if (c.gzipDcFile?.seconds) out.push(`gzip -dc > file: ${fmt(c.gzipDcFile.cpuSeconds, 2)} CPU s, of which the fsync ${fmt(c.gzipDcFile.syncSeconds, 2)} s wall`);
    if (c.pigz?.outBytes) out.push(`pigz -6 -p 2 of our tar: ${fmt(c.pigz.cpuSeconds, 2)} CPU s, ${mb(c.pigz.outBytes)} MiB out`);
    if (p.treeCheck) {
      const t = p.treeCheck;
      out.push(`tree check vs umoci: ${t.ours} paths ours, ${t.umoci} umoci, ${t.onlyOurs} only ours, ${t.onlyUmoci} only umoci ${t.examples?.length ? t.examples.join(' ') : ''}`);
    }
    }
    const q = ratios(r);
    r.ratios = q;
    out.push('');
    const ratioRows = [
      ['ratio', 'value', 'target', 'verdict'],
      ['our gzip time / peer path time (skopeo+umoci+tar|gzip)', fmt(q.gzipVsPeer, 2), `≤ ${TARGETS.gzipVsPeer}`, verdict(q.gzipVsPeer, TARGETS.gzipVsPeer)],
      ['our gzip time / pigz -6 -p 2 ceiling', fmt(q.gzipVsPigz, 2), `≤ ${TARGETS.gzipVsPigz}`, verdict(q.gzipVsPigz, TARGETS.gzipVsPigz)],
      ['our tar time / gzip -dc time', fmt(q.tarVsGunzip, 2), `≤ ${TARGETS.tarVsGunzip}`, verdict(q.tarVsGunzip, TARGETS.tarVsGunzip)],
      ['pull -o - > /dev/null / gzip -dc > /dev/null', fmt(q.stdoutNullVsGunzip, 2), `≤ ${TARGETS.tarVsGunzip}`, verdict(q.stdoutNullVsGunzip, TARGETS.tarVsGunzip)],
      ['pull -o file.tar / gzip -dc > file + fsync (same disk)', fmt(q.tarFileVsGunzipFile, 2), `≤ ${TARGETS.tarVsGunzip}`, verdict(q.tarFileVsGunzipFile, TARGETS.tarVsGunzip)],
    ];
    for (const [engine, v] of Object.entries(q.byEngine ?? {})) {
      ratioRows.push(
        [`pull → .tar.gz (${engine}) / pigz -6 -p 2 of our tar: wall time`, fmt(v.time, 2), `≤ ${TARGETS.gzipVsPigz}`, verdict(v.time, TARGETS.gzipVsPigz)],
        [`pull → .tar.gz (${engine}) / pigz -6 -p 2 of our tar: CPU time`, fmt(v.cpu, 2), '', ''],
        [`pull → .tar.gz (${engine}) / pigz -6 -p 2 of our tar: output size`, fmt(v.size, 3), `≤ ${TARGETS.gzipSizeVsPigz}`, verdict(v.size, TARGETS.gzipSizeVsPigz)],
      );
    }
    for (const [key, where, l] of [['loopback', 'loopback', e], ['link', `link ${e.link?.mbps} MB/s`, e.link]]) {
      if (!l?.passthrough?.seconds || !l.blobDownload?.seconds) continue;
      const v = (q.passthrough ??= {})[key] = {
        vsDownload: l.passthrough.seconds / l.blobDownload.seconds,
        vsVerified: l.blobVerified?.seconds ? l.passthrough.seconds / l.blobVerified.seconds : undefined,
        vsNoPassthrough: l.noPassthrough?.seconds ? l.passthrough.seconds / l.noPassthrough.seconds : undefined,
        noPassthroughVsDownload: l.noPassthrough?.seconds ? l.noPassthrough.seconds / l.blobDownload.seconds : undefined,
        downloadMBps: l.blobDownload.mbps,
      };
      ratioRows.push(
        [`pass-through time / blob download time, ${where} (download at ${fmt(v.downloadMBps, 0)} MB/s)`, fmt(v.vsDownload, 2), `≤ ${TARGETS.passthroughVsDownload}`, verdict(v.vsDownload, TARGETS.passthroughVsDownload)],
        [`--no-passthrough time / blob download time, ${where} (info)`, fmt(v.noPassthroughVsDownload, 2), '-', '-'],
        [`pass-through time / download+gunzip+sha256 time, ${where} (info)`, fmt(v.vsVerified, 2), '-', '-'],
        [`pass-through time / --no-passthrough time, ${where} (info)`, fmt(v.vsNoPassthrough, 2), '-', '-'],
      );
    }
    if (r.kind === 'million') {
      if (e.heapError) out.push(`heap per path failed: ${e.heapError}`);
      ratioRows.push(['peak RSS MiB, 1,000,000 files → .tar', fmt(e.tar.rssMiB), `≤ ${TARGETS.millionRssMiB}`, verdict(e.tar.rssMiB, TARGETS.millionRssMiB)]);
      ratioRows.push(['flattener heap + arrays per path, B', fmt(e.heapBytesPerPath, 0), `≤ ${TARGETS.heapBytesPerPath}`, verdict(e.heapBytesPerPath, TARGETS.heapBytesPerPath)]);
    }
    if (r.kind === 'many') ratioRows.push(['entries per second, tar output', fmt(q.entriesPerSecond, 0), `≥ ${TARGETS.entriesPerSecond}`, verdict(q.entriesPerSecond, TARGETS.entriesPerSecond, false)]);
    if (e.unpack?.seconds !== undefined) {
      ratioRows.push(['unpack time / pull -o .tar time', fmt(q.unpackVsTar, 2), `≤ ${TARGETS.unpackVsTar}`, verdict(q.unpackVsTar, TARGETS.unpackVsTar)]);
      ratioRows.push(['unpack time / (skopeo copy + umoci unpack) time', fmt(q.unpackVsPeer, 2), `≤ ${TARGETS.unpackVsPeer}`, verdict(q.unpackVsPeer, TARGETS.unpackVsPeer)]);
      if (r.kind === 'many') ratioRows.push(['entries per second, unpack', fmt(q.unpackEntriesPerSecond, 0), `≥ ${TARGETS.unpackEntriesPerSecond}`, verdict(q.unpackEntriesPerSecond, TARGETS.unpackEntriesPerSecond, false)]);
      if (r.kind === 'big') ratioRows.push(['unpack peak RSS MiB', fmt(e.unpack.rssMiB), `≤ ${TARGETS.rssMiB}`, verdict(e.unpack.rssMiB, TARGETS.rssMiB)]);
    }
    if (r.kind === 'big') {
      const rss = Math.max(e.tar.rssMiB ?? 0, e.gzip.rssMiB ?? 0, e.stdout.rssMiB ?? 0) || undefined;
      q.peakRssMiB = rss;
      ratioRows.push(['peak RSS MiB (max of tar, gzip, stdout)', fmt(rss), `≤ ${TARGETS.rssMiB}`, verdict(rss, TARGETS.rssMiB)]);
    }
    out.push(table(r.slim || r.kind === 'million' ? ratioRows.filter((row, i) => i === 0 || row[1] !== '-') : ratioRows));
  }
  const big = results.find((r) => r.name === 'big');
  const big2 = results.find((r) => r.name === 'big-2x');
  if (big && big2 && big.ratios.peakRssMiB && big2.ratios.peakRssMiB) {
    const growth = big2.ratios.peakRssMiB / big.ratios.peakRssMiB - 1;
    meta.rssGrowth = growth;
    out.push(`\npeak RSS growth big → big-2x: ${fmt(big.ratios.peakRssMiB)} → ${fmt(big2.ratios.peakRssMiB)} MiB = ${(growth * 100).toFixed(1)}% (target ≤ ${TARGETS.rssGrowth * 100}%): ${verdict(growth, TARGETS.rssGrowth)}`);
  }

  const summary = targetSummary(results, startup, notRun, meta);
  meta.summary = summary;
  out.push('\n=== targets (issues 10 and 12; §8 = DESIGN.md) ===');
  const defaults = { bigMb: 1024, manyFiles: 100_000, singleMb: 200, millionFiles: 1_000_000 };
  const small = Object.entries(defaults).filter(([k, v]) => config[k] !== v).map(([k, v]) => `${k} ${config[k]} (default ${v})`);
  if (small.length) out.push(`NOTE: not the default sizes: ${small.join(', ')}; fixed costs (Node start-up, fsync) weigh more on small images`);
  out.push(`engines: ${meta.engines}; link rows: ${config.linkMbps > 0 ? `${config.linkMbps} MB/s` : 'off'}`);
  out.push(
    table([
      ['target', 'issue', 'engine', 'measured', 'target', 'verdict', 'note'],
      ...summary.map((t) => [t.name, String(t.issue), t.engine, t.shown, t.target, t.verdict, t.note]),
    ], [0, 2, 5, 6]),
  );
  const counts = summary.reduce((c, t) => ({ ...c, [t.verdict]: (c[t.verdict] ?? 0) + 1 }), {});
  out.push(`${summary.length} targets: ${counts.ok ?? 0} ok, ${counts.MISS ?? 0} MISS, ${counts['not run'] ?? 0} not run`);
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const started = performance.now();
  if (!existsSync(cli)) throw new Error(`${cli} missing: run npm run build`);
  tempRoot = mkdtempSync(join(config.tmp, 'oci-rootfs-bench-'));
  const cacheRoot = config.cacheDir;
  await mkdir(cacheRoot, { recursive: true });
  log(`config: ${JSON.stringify(config)}; temp ${tempRoot}`);

  const plan = [
    { name: 'big', kind: 'big', param: config.bigMb },
    { name: 'many', kind: 'many', param: config.manyFiles },
    { name: 'single', kind: 'single', param: config.singleMb },
    // RSS growth: big at twice the size, only the rows whose peak RSS is compared.
    { name: 'big-2x', kind: 'big', param: config.bigMb * 2, slim: true, off: !config.double && 'BENCH_DOUBLE=0' },
    // Memory: ~1.2 GB of tar, 1,000,000 paths; the .tar pull and the heap per path only.
    { name: 'million', kind: 'million', param: config.millionFiles, off: !config.million && 'BENCH_MILLION=0' },
  ];
  const wanted = (name) => (config.only.length ? config.only.includes(name) : true);
  const selected = plan.filter((p) => wanted(p.name) && (!p.off || config.only.includes(p.name)));
  // What the summary says of a target whose image did not run.
  const notRun = Object.fromEntries(plan.filter((p) => !selected.includes(p)).map((p) => [p.name, p.off && !config.only.includes(p.name) ? `not run (${p.off})` : 'not run (BENCH_ONLY)']));
  const runStartup = config.startup && wanted('startup');
  if (!runStartup) notRun.startup = config.startup ? 'not run (BENCH_ONLY)' : 'not run (BENCH_STARTUP=0)';

  for (const p of selected) p.image = await ensureImage(cacheRoot, p.kind, p.param, log);

  registry = await startRegistry(tempRoot);
  log(`registry at ${registry.host} (pid ${registry.pid})`);
  for (const p of selected) {
    p.repo = `bench/${p.name}`;
    const seconds = await pushImage(registry.url, p.repo, 'v1', p.image);
    log(`pushed ${p.repo}:v1 in ${seconds.toFixed(1)} s`);
  }

  // Start-up first, while nothing of ours has loaded the machine yet.
  let startup;
  if (runStartup) {
    log(`start-up: ${config.startupRuns} interleaved rounds`);
    const tiny = await ensureImage(cacheRoot, 'single', 1, log);
    await pushImage(registry.url, 'bench/startup', 'v1', tiny);
    const startupStarted = performance.now();
    startup = await measureStartup({ cli, host: registry.host, repo: 'bench/startup', rounds: config.startupRuns, dockerConfig: join(tempRoot, 'no-docker-config') });
    startup.seconds = (performance.now() - startupStarted) / 1000;
  }

  const results = [];
  for (const p of selected) {
    log(`measuring ${p.name}`);
    const dir = join(tempRoot, p.name);
    await mkdir(dir, { recursive: true });
    const ref = `${registry.host}/${p.repo}:v1`;
    // Other work on the machine skews every number: record the load, warn in the report.
    const loadBefore = loadavg()[0];
    const imageStarted = performance.now();
    const { res, outTar } = await measureEndToEnd(p, ref, dir);
    const result = { name: p.name, kind: p.kind, param: p.param, slim: p.slim, image: p.image, e2e: res, loadBefore };
    // The memory-only images (million, big-2x) skip the stages and the peers: minutes of
    // work (umoci on a million files) for rows no target reads.
    const memoryOnly = p.slim || p.kind === 'million';
    if (config.stages && !memoryOnly) {
      log('  stages');
      result.stages = await measureStages(p.image, {
        registryUrl: registry.url,
        repo: p.repo,
        runs: config.runs,
        pakoLimitBytes: config.pakoMb * MiB,
        log,
      });
    }
    if (config.peers && !memoryOnly) Object.assign(result, await measurePeers(p.image, registry.host, p.repo, dir, outTar));
    await rm(dir, { recursive: true, force: true });
    result.loadAfter = loadavg()[0];
    result.seconds = (performance.now() - imageStarted) / 1000;
    log(`  ${p.name} measured in ${result.seconds.toFixed(0)} s`);
    results.push(result);
  }

  const meta = {
    date: new Date().toISOString(),
    node: process.version,
    engines: await enginesInUse(),
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    memGiB: totalmem() / 2 ** 30,
    config,
  };
  const text = report(results, meta, startup, notRun);
  meta.totalSeconds = (performance.now() - started) / 1000;
  process.stdout.write(`${text}\n\ntotal bench time ${meta.totalSeconds.toFixed(0)} s\n`);

  const resultsDir = join(here, 'results');
  await mkdir(resultsDir, { recursive: true });
  const file = join(resultsDir, `${meta.date.replace(/[:.]/g, '-')}.json`);
  const json = results.map(({ image, ...r }) => ({
    ...r,
    image: { key: image.key, layers: image.layers.map(({ file: _f, ...l }) => l), tarBytes: image.tarBytes, gzBytes: image.gzBytes, entries: image.entries },
  }));
  const { summary, ...metaRest } = meta;
  await writeFile(file, JSON.stringify({ meta: metaRest, targets: TARGETS, summary, startup, notRun, results: json }, null, 2));
  log(`results written to ${file}`);
}

try {
  await main();
} catch (error) {
  process.stderr.write(`[bench] failed: ${error?.stack ?? error}\n`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
