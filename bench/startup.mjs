#!/usr/bin/env node
// Start-up cost of the CLI alone (the same rows `npm run bench` prints; see lib/startup.mjs):
// `--version`, `--help`, `pull --help` and `exists` against a throwaway local registry, each
// beside a bare `node -e 0` and a raw HEAD of the manifest, interleaved, medians.
//   node bench/startup.mjs            # dist must be built; STARTUP_RUNS=N rounds (default 20)
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureImage } from './lib/images.mjs';
import { pushImage, startRegistry } from './lib/registry.mjs';
import { measureStartup, startupTable, STARTUP_TARGET } from './lib/startup.mjs';
import { fmt } from './lib/util.mjs';

const here = dirname(fileURLToPath(import.meta.url));
// STARTUP_CLI: another build to compare with (e.g. a checkout of main).
const cli = process.env.STARTUP_CLI ?? join(here, '..', 'dist', 'cli', 'main.js');
const rounds = Number(process.env.STARTUP_RUNS ?? 20);

const temp = mkdtempSync(join(tmpdir(), 'oci-rootfs-startup-'));
let registry;
try {
  const image = await ensureImage(process.env.BENCH_CACHE_DIR ?? join(here, '.cache'), 'single', 1, () => {});
  registry = await startRegistry(temp);
  await pushImage(registry.url, 'bench/startup', 'v1', image);
  const s = await measureStartup({ cli, host: registry.host, repo: 'bench/startup', rounds, dockerConfig: join(temp, 'docker-config') });
  process.stdout.write(`${startupTable(s)}\n`);
  process.stdout.write(
    `--version / node -e 0 (wall): ${fmt(s.versionRatio, 2)} (target ≤ ${STARTUP_TARGET}): ${s.versionRatio <= STARTUP_TARGET ? 'ok' : 'MISS'}; ` +
      `(exists − network) / node -e 0: ${fmt(s.existsBeyondNetworkRatio, 2)} (≤ ${STARTUP_TARGET}): ${s.existsBeyondNetworkRatio <= STARTUP_TARGET ? 'ok' : 'MISS'}; ` +
      `load average ${s.loadBefore.toFixed(1)} before, ${s.loadAfter.toFixed(1)} after\n`,
  );
} finally {
  if (registry) await registry.stop().catch(() => {});
  rmSync(temp, { recursive: true, force: true });
}
