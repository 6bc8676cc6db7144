// Runs one in-process stage on a cached bench image, for profiling:
//   node --cpu-prof --cpu-prof-dir=bench/.cache/prof bench/profile-stage.mjs STAGE IMAGE_KEY
//   node bench/profile-summary.mjs bench/.cache/prof/*.cpuprofile
// STAGE: parse | flatten | write | gunzip | strictgunzip. IMAGE_KEY: a dir in bench/.cache/images.
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { decompressor, encodeHeader, flattenLayers, readTar } from '../dist/index.js';

const [stage, key, repeatArg] = process.argv.slice(2);
const here = dirname(fileURLToPath(import.meta.url));
const meta = JSON.parse(readFileSync(join(process.env.BENCH_CACHE_DIR ?? join(here, '.cache'), 'images', key, 'meta.json'), 'utf8'));
const gz = meta.layers.map((l) => readFileSync(l.file));
const tars = gz.map((b) => zlib.gunzipSync(b));
const CHUNK = 64 * 1024;
async function* chunksOf(buf) {
  for (let i = 0; i < buf.length; i += CHUNK) yield buf.subarray(i, Math.min(i + CHUNK, buf.length));
}
const sink = () => new Writable({ write: (_c, _e, cb) => cb() });
const repeat = Number(repeatArg ?? 1);
const t0 = performance.now();
let entries = 0;
for (let r = 0; r < repeat; r++) {
  if (stage === 'parse' || stage === 'write') {
    const headers = [];
    for (const buf of tars) {
      for await (const e of readTar(chunksOf(buf))) {
        headers.push(e.header);
        if (e.header.type === 'file' && e.header.size > 0) for await (const _ of e.body());
      }
    }
    entries += headers.length;
    if (stage === 'write') for (const h of headers) encodeHeader(h);
  } else if (stage === 'flatten') {
    const layers = tars.map((buf, index) => ({ index, name: `layer ${index}`, open: () => chunksOf(buf) }));
    for await (const _ of flattenLayers(layers, { onLayerDone: (s) => (entries += s.entriesWritten) }));
  } else if (stage === 'gunzip' || stage === 'strictgunzip') {
    for (const buf of gz) await pipeline(Readable.from(chunksOf(buf)), stage === 'gunzip' ? zlib.createGunzip() : decompressor('gzip'), sink());
  } else throw new Error(`unknown stage ${stage}`);
}
const s = (performance.now() - t0) / 1000;
console.log(`${stage} ${key}: ${s.toFixed(2)} s, ${entries} entries, ${Math.round(entries / s)} entries/s, ${(meta.tarBytes * repeat / 1e6 / s).toFixed(1)} MB/s`);
