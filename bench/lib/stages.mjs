// Each per-byte stage of a pull alone, in-process, on the cached blobs (DESIGN.md §8):
// download, sha256, gunzip, tar parse, flatten, tar write, deflate (per gzip engine: native
// libdeflate, node:zlib in parallel, node:zlib as one stream, pako).
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import * as pako from 'pako';
import { request } from 'undici';
import { createCompressor, decompressor, encodeHeader, flattenLayers, readTar } from '../../dist/index.js';

const CHUNK = 64 * 1024;

/** A buffer as an async iterable of 64 KiB slices, like a socket or zlib would hand them out. */
async function* chunksOf(buffers) {
  for (const buf of Array.isArray(buffers) ? buffers : [buffers]) {
    for (let i = 0; i < buf.length; i += CHUNK) yield buf.subarray(i, Math.min(i + CHUNK, buf.length));
  }
}

/** A Writable that counts and drops. */
function sink() {
  const w = new Writable({
    highWaterMark: 1024 * 1024,
    write(chunk, _enc, cb) {
      w.bytes += chunk.length;
      cb();
    },
    writev(chunks, cb) {
      for (const { chunk } of chunks) w.bytes += chunk.length;
      cb();
    },
  });
  w.bytes = 0;
  return w;
}

async function timed(fn) {
  const started = performance.now();
  // Process CPU time: every thread, libuv's pool (where the parallel deflate runs) included.
  const cpu = process.cpuUsage();
  const extra = await fn();
  const used = process.cpuUsage(cpu);
  return { seconds: (performance.now() - started) / 1000, cpuSeconds: (used.user + used.system) / 1e6, ...(extra ?? {}) };
}

/**
 * Runs every stage `runs` times on one image; returns rows
 * { stage, inBytes, seconds[], outBytes?, entries?, note? }.
 * `limitBytes`: the pako row deflates at most this much input (it is ~3x slower).
 */
export async function measureStages(image, { registryUrl, repo, runs, pakoLimitBytes, log }) {
  const gz = await Promise.all(image.layers.map((l) => readFile(l.file)));
  const gzBytes = gz.reduce((s, b) => s + b.length, 0);
  const tars = gz.map((b) => zlib.gunzipSync(b));
  const tarBytes = tars.reduce((s, b) => s + b.length, 0);
  const rows = [];
  const add = async (stage, inBytes, fn, note, engine) => {
    const samples = [];
    const cpuSamples = [];
    let last;
    for (let r = 0; r < runs; r++) {
      last = await timed(fn);
      samples.push(last.seconds);
      cpuSamples.push(last.cpuSeconds);
    }
    const row = { stage, engine, inBytes, ...last, note };
    row.seconds = samples;
    row.cpuSeconds = cpuSamples;
    rows.push(row);
    log?.(`    stage ${stage}: ${Math.min(...samples).toFixed(2)} s`);
  };

  await add('download (undici → /dev/null)', gzBytes, async () => {
    let bytes = 0;
    for (const layer of image.layers) {
      const res = await request(`${registryUrl}/v2/${repo}/blobs/${layer.digest}`, { maxRedirections: 0 });
      if (res.statusCode !== 200) throw new Error(`GET blob: HTTP ${res.statusCode}`);
      for await (const chunk of res.body) bytes += chunk.length;
    }
    return { outBytes: bytes };
  });

  await add('sha256 (compressed)', gzBytes, async () => {
    for (const buf of gz) {
      const h = createHash('sha256');
      for await (const c of chunksOf(buf)) h.update(c);
      h.digest();
    }
  });

  await add('sha256 (uncompressed, diffID)', tarBytes, async () => {
    for (const buf of tars) {
      const h = createHash('sha256');
      for await (const c of chunksOf(buf)) h.update(c);
      h.digest();
    }
  });

  await add('gunzip (node:zlib createGunzip)', gzBytes, async () => {
    let out = 0;
    for (const buf of gz) {
      const s = sink();
      await pipeline(Readable.from(chunksOf(buf)), zlib.createGunzip(), s);
      out += s.bytes;
    }
    return { outBytes: out };
  });

  await add('gunzip (our strict gunzip)', gzBytes, async () => {
    let out = 0;
    for (const buf of gz) {
      const s = sink();
      await pipeline(Readable.from(chunksOf(buf)), decompressor('gzip'), s);
      out += s.bytes;
    }
    return { outBytes: out };
  });

  let headers = [];
  await add('tar parse (our readTar)', tarBytes, async () => {
    headers = [];
    for (const buf of tars) {
      for await (const entry of readTar(chunksOf(buf))) {
        headers.push(entry.header);
        if (entry.header.type === 'file' && entry.header.size > 0) for await (const _ of entry.body());
      }
    }
    return { entries: headers.length };
  });

  await add('flatten (our flattenLayers, output dropped)', tarBytes, async () => {
    const layers = tars.map((buf, index) => ({ index, name: `layer ${index}`, open: () => chunksOf(buf) }));
    let out = 0;
    let written = 0;
    for await (const chunk of flattenLayers(layers, { onLayerDone: (s) => (written += s.entriesWritten) })) out += chunk.length;
    return { outBytes: out, entries: written };
  });

  await add('tar write (our encodeHeader, all headers)', tarBytes, async () => {
    let out = 0;
    for (const h of headers) out += encodeHeader(h).length;
    return { outBytes: out, entries: headers.length };
  }, 'headers only; MB/s on the tar bytes they describe');

  // The gzip engines of `pull -o x.tar.gz` (createCompressor), on the layer tars.
  for (const [engine, label] of [['native', 'libdeflate'], ['zlib', 'node:zlib']]) {
    let compressor;
    try {
      compressor = () => createCompressor('gzip', { engine, level: 6 });
      compressor().destroy();
    } catch (error) {
      rows.push({ stage: `deflate -6 (${engine}: parallel 1 MiB members)`, engine: label, inBytes: tarBytes, seconds: [], note: `n/a: ${error.message}` });
      continue;
    }
    await add(`deflate -6 (${engine}: parallel 1 MiB members)`, tarBytes, async () => {
      const s = sink();
      await pipeline(Readable.from(chunksOf(tars)), compressor(), s);
      return { outBytes: s.bytes };
    }, undefined, label);
  }

  await add('deflate -6 (node:zlib createGzip, one stream)', tarBytes, async () => {
    const s = sink();
    await pipeline(Readable.from(chunksOf(tars)), zlib.createGzip({ level: 6 }), s);
    return { outBytes: s.bytes };
  }, undefined, 'node:zlib');

  // pako: same input, capped (about 3x slower than node:zlib).
  const pakoInput = [];
  let pakoBytes = 0;
  for (const buf of tars) {
    if (pakoBytes >= pakoLimitBytes) break;
    const piece = buf.subarray(0, Math.min(buf.length, pakoLimitBytes - pakoBytes));
    pakoInput.push(piece);
    pakoBytes += piece.length;
  }
  await add('deflate -6 (pako Deflate)', pakoBytes, async () => {
    let out = 0;
    const d = new pako.Deflate({ level: 6, gzip: true, chunkSize: CHUNK });
    d.onData = (c) => (out += c.length);
    d.onEnd = () => {};
    for await (const c of chunksOf(pakoInput)) d.push(c, false);
    d.push(new Uint8Array(0), true);
    if (d.err) throw new Error(`pako: ${d.msg}`);
    return { outBytes: out };
  }, pakoBytes < tarBytes ? `first ${(pakoBytes / 1048576).toFixed(0)} MiB of the layer tars (BENCH_PAKO_MB)` : undefined, 'pako');

  return { gzBytes, tarBytes, rows };
}
