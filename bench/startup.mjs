#!/usr/bin/env node
// Start-up cost of the CLI (issue 10): `--version`, `--help`, `pull --help` and `exists`
// against a local registry, each beside a bare `node -e 0`, run interleaved (one of each per
// round, so a load spike hits them all) and reported as medians of wall and CPU time with the
// load average. Targets: `--version` ≤ 1.5× `node -e 0`; `exists` mostly network, not imports.
//   node bench/startup.mjs            # dist must be built; STARTUP_RUNS=N rounds (default 20)
import { mkdtempSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureImage } from './lib/images.mjs';
import { pushImage, startRegistry } from './lib/registry.mjs';
import { fmt, median, table } from './lib/util.mjs';

const here = dirname(fileURLToPath(import.meta.url));
// STARTUP_CLI: another build to compare with (e.g. a checkout of main).
const cli = process.env.STARTUP_CLI ?? join(here, '..', 'dist', 'cli', 'main.js');
const rounds = Number(process.env.STARTUP_RUNS ?? 20);
const TARGET = 1.5;

/** Runs argv once; wall seconds from here, CPU seconds of the child from getrusage via /usr/bin/time. */
function once(argv, env) {
  const started = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', '%U %S', ...argv], { encoding: 'utf8', env: { ...process.env, ...env } });
  const wall = (performance.now() - started) / 1000;
  const times = r.stderr.trim().split('\n').pop().split(' ').map(Number);
  return { wall, cpu: times[0] + times[1], code: r.status };
}

const temp = mkdtempSync(join(tmpdir(), 'oci-rootfs-startup-'));
let registry;
try {
  const image = await ensureImage(join(here, '.cache'), 'single', 1, () => {});
  registry = await startRegistry(temp);
  await pushImage(registry.url, 'bench/startup', 'v1', image);
  const noConfig = join(temp, 'docker-config');
  const ref = `${registry.host}/bench/startup:v1`;
  const cases = [
    ['node -e 0', [process.execPath, '-e', '0']],
    ['oci-rootfs --version', [process.execPath, cli, '--version']],
    ['oci-rootfs --help', [process.execPath, cli, '--help']],
    ['oci-rootfs pull --help', [process.execPath, cli, 'pull', '--help']],
    ['oci-rootfs exists (local registry)', [process.execPath, cli, 'exists', '--plain-http', ref]],
  ];
  const results = cases.map(() => []);
  const loadBefore = loadavg()[0];
  for (let round = 0; round < rounds + 1; round++) {
    cases.forEach(([, argv], i) => {
      const r = once(argv, { DOCKER_CONFIG: noConfig });
      if (r.code !== 0) throw new Error(`${argv.join(' ')} exited ${r.code}`);
      if (round > 0) results[i].push(r); // round 0 warms the page cache
    });
  }
  const loadAfter = loadavg()[0];
  const base = { wall: median(results[0].map((r) => r.wall)), cpu: median(results[0].map((r) => r.cpu)) };
  const rows = cases.map(([label], i) => {
    const wall = median(results[i].map((r) => r.wall));
    const cpu = median(results[i].map((r) => r.cpu));
    return [label, fmt(wall * 1000, 0), fmt(cpu * 1000, 0), fmt(wall / base.wall, 2), fmt(cpu / base.cpu, 2)];
  });
  process.stdout.write(
    `${table([['command (median of ' + rounds + ' interleaved rounds)', 'wall ms', 'CPU ms', '× node -e 0 wall', '× node -e 0 CPU'], ...rows])}\n`,
  );
  const version = median(results[1].map((r) => r.wall)) / base.wall;
  process.stdout.write(
    `--version / node -e 0 (wall): ${fmt(version, 2)} (target ≤ ${TARGET}): ${version <= TARGET ? 'ok' : 'MISS'}; load average ${loadBefore.toFixed(1)} before, ${loadAfter.toFixed(1)} after\n`,
  );
} finally {
  if (registry) await registry.stop().catch(() => {});
  rmSync(temp, { recursive: true, force: true });
}
