// Serves cached bench images from a throwaway registry until interrupted, for interleaved
// before/after pulls and profiles of the CLI:
//   node bench/serve.mjs many-100000-g3 million-1000000-g3
//   → prints `127.0.0.1:PORT/bench/<kind>:v1` per image; Ctrl-C (SIGINT/SIGTERM) stops it.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pushImage, startRegistry } from './lib/registry.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const temp = mkdtempSync(join(tmpdir(), 'oci-rootfs-serve-'));
const registry = await startRegistry(temp);
const stop = async () => {
  await registry.stop().catch(() => {});
  rmSync(temp, { recursive: true, force: true });
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
for (const key of process.argv.slice(2)) {
  const meta = JSON.parse(readFileSync(join(process.env.BENCH_CACHE_DIR ?? join(here, '.cache'), 'images', key, 'meta.json'), 'utf8'));
  const repo = `bench/${meta.kind}`;
  await pushImage(registry.url, repo, 'v1', meta);
  console.log(`${registry.host}/${repo}:v1`);
}
setInterval(() => {}, 1 << 30);
