// Heap per distinct path while flattening (DESIGN.md §1: "one small record per distinct path").
// node --expose-gc bench/heap-per-path.mjs many-100000-g3 [distDir]
// Measures heapUsed + arrayBuffers + the flattener's growable arrays (its per-path state lives
// in typed arrays outside the JS heap, in resizable buffers that arrayBuffers does not count) after a forced GC at the end of every layer (the
// flattener's state is then at its largest for that layer), minus the same before the
// flatten started with the layer tars already in memory. Both parts are printed.
import { readFileSync } from 'node:fs';
import { basename, join, dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as zlib from 'node:zlib';

const [key, distArg] = process.argv.slice(2);
const here = dirname(fileURLToPath(import.meta.url));
const dist = resolve(distArg ?? join(here, '..', 'dist'));
const { flattenLayers } = await import(pathToFileURL(join(dist, 'index.js')).href);
// The per-path arrays sit in resizable ArrayBuffers, which memoryUsage().arrayBuffers does not
// count: their bytes are added (older builds have no such module, and count in arrayBuffers).
const growable = await import(pathToFileURL(join(dist, 'flatten', 'growable-array.js')).href).catch(() => undefined);
const growableBytes = () => growable?.growableBytes() ?? 0;
if (typeof gc !== 'function') throw new Error('run with node --expose-gc');
// KEY: a cache key under bench/.cache/images (or BENCH_CACHE_DIR/images), or an image directory.
const imageDir = key.includes('/') ? resolve(key) : join(process.env.BENCH_CACHE_DIR ?? join(here, '.cache'), 'images', key);
const meta = JSON.parse(readFileSync(join(imageDir, 'meta.json'), 'utf8'));
// The cache may have moved since meta.json was written (another checkout's): files beside it.
const tars = meta.layers.map((l) => zlib.gunzipSync(readFileSync(join(imageDir, basename(l.file)))));
const CHUNK = 64 * 1024;
async function* chunksOf(buf) {
  for (let i = 0; i < buf.length; i += CHUNK) yield buf.subarray(i, Math.min(i + CHUNK, buf.length));
}
// Several collections: the buffers gunzipSync left behind are freed only after a few.
for (let i = 0; i < 4; i++) {
  gc();
  await new Promise((resolve) => setTimeout(resolve, 20));
}
const settle = async () => {
  // Freed ArrayBuffer backing stores leave memoryUsage().arrayBuffers only after the sweeper
  // ran: collect, wait, collect again.
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 30));
  }
};
await settle();
const start = process.memoryUsage();
const before = start.heapUsed + start.arrayBuffers + growableBytes();
let entries = 0;
let peak = 0;
let doneLayer;
const layers = tars.map((buf, index) => ({ index, name: `layer ${index}`, open: () => chunksOf(buf) }));
// Measured in the loop, where the flattener waits for us with all its state alive (the first
// chunk after a layer's end).
for await (const _ of flattenLayers(layers, {
  onLayerDone: (s) => {
    entries += s.entriesWritten + s.entriesSkipped;
    doneLayer = s.index;
  },
})) {
  if (doneLayer === undefined) continue;
  const index = doneLayer;
  doneLayer = undefined;
  await settle();
  const m = process.memoryUsage();
  const arrays = growableBytes();
  peak = Math.max(peak, m.heapUsed + m.arrayBuffers + arrays - before);
  if (process.env.VERBOSE) {
    const mib = (n) => (n / 1048576).toFixed(1);
    console.error(`after layer ${index}: JS heap +${mib(m.heapUsed - start.heapUsed)} MiB, arrayBuffers +${mib(m.arrayBuffers - start.arrayBuffers)} MiB, growable arrays ${mib(arrays)} MiB`);
  }
}
console.log(`${key}: ${entries} entries, heap + arrayBuffers after GC at layer ends (peak): ${(peak / 1048576).toFixed(1)} MiB, ${Math.round(peak / entries)} B per entry`);
