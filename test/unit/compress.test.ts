import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { EngineUnavailableError, UsageError } from '../../src/errors.js';
import {
  compressionEngines,
  createCompressor,
  formatFromPath,
  gzipHeaderNormaliser,
  resolveGzipEngine,
  type CompressorEngine,
} from '../../src/streams/compress.js';
import { nativeDisabled } from '../../src/native-addon.js';
import { loadNativeDeflate } from '../../src/streams/native-deflate.js';

/**
 * Every engine, or all but `native` when this run turns the addon off (.ci/run runs this
 * file a second time with OCI_ROOTFS_NATIVE=0 to test the fallback).
 */
const ENGINES: CompressorEngine[] = nativeDisabled() ? ['zlib', 'pako'] : ['native', 'zlib', 'pako'];

/** Runs `body` with OCI_ROOTFS_NATIVE set to `value` (or unset), then restores it. */
function withNativeEnv<T>(value: string | undefined, body: () => T): T {
  const saved = process.env['OCI_ROOTFS_NATIVE'];
  if (value === undefined) delete process.env['OCI_ROOTFS_NATIVE'];
  else process.env['OCI_ROOTFS_NATIVE'] = value;
  try {
    return body();
  } finally {
    if (saved === undefined) delete process.env['OCI_ROOTFS_NATIVE'];
    else process.env['OCI_ROOTFS_NATIVE'] = saved;
  }
}

/** Something tar-like: compressible runs, incompressible noise, odd chunk sizes. */
function sampleInput(): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < 40; i++) {
    parts.push(Buffer.alloc(512 * (i % 7) + 3, `file-${i}\n`));
    parts.push(randomBytes(1000 + i * 37));
  }
  return Buffer.concat(parts);
}

/** Feeds `input` in uneven chunks (as a tar writer would) and collects the output. */
async function compress(input: Buffer, format: 'tar' | 'gzip', engine?: CompressorEngine, level?: number) {
  const chunks: Buffer[] = [];
  const sizes = [1, 511, 4096, 70_000, 13];
  const pieces: Buffer[] = [];
  for (let offset = 0, i = 0; offset < input.length; i++) {
    const size = sizes[i % sizes.length] ?? 1;
    pieces.push(input.subarray(offset, offset + size));
    offset += size;
  }
  const options = { ...(engine === undefined ? {} : { engine }), ...(level === undefined ? {} : { level }) };
  await pipeline(
    Readable.from(pieces),
    createCompressor(format, options),
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(chunk);
        callback();
      },
    }),
  );
  return Buffer.concat(chunks);
}

describe('createCompressor', () => {
  const input = sampleInput();

  it('passes a tar through unchanged', async () => {
    expect((await compress(input, 'tar')).equals(input)).toBe(true);
  });

  for (const engine of ENGINES) {
    describe(`gzip with the ${engine} engine`, () => {
      it('round-trips the input', async () => {
        expect(gunzipSync(await compress(input, 'gzip', engine)).equals(input)).toBe(true);
      });

      it('gives identical bytes for the same input twice', async () => {
        const first = await compress(input, 'gzip', engine);
        const second = await compress(input, 'gzip', engine);
        expect(first.equals(second)).toBe(true);
      });

      it('writes a header with mtime 0 and the Unix OS byte', async () => {
        const header = (await compress(input, 'gzip', engine)).subarray(0, 10);
        expect([...header.subarray(0, 4)]).toEqual([0x1f, 0x8b, 8, 0]);
        expect(header.readUInt32LE(4)).toBe(0);
        expect(header[9]).toBe(3);
      });

      it('honours the level', async () => {
        const stored = await compress(input, 'gzip', engine, 0);
        const best = await compress(input, 'gzip', engine, 9);
        expect(gunzipSync(stored).equals(input)).toBe(true);
        expect(gunzipSync(best).equals(input)).toBe(true);
        expect(stored.length).toBeGreaterThan(input.length);
        expect(best.length).toBeLessThan(input.length);
      });

      it('compresses an empty input to a valid empty gzip', async () => {
        expect(gunzipSync(await compress(Buffer.alloc(0), 'gzip', engine)).length).toBe(0);
      });
    });
  }

  it('gives zlib and pako output that both decompress to the input, with the same header', async () => {
    const [viaZlib, viaPako] = await Promise.all([compress(input, 'gzip', 'zlib'), compress(input, 'gzip', 'pako')]);
    expect(gunzipSync(viaZlib).equals(input)).toBe(true);
    expect(gunzipSync(viaPako).equals(input)).toBe(true);
    expect(viaZlib.subarray(0, 10).equals(viaPako.subarray(0, 10))).toBe(true);
  });

  it('stops deflating while nobody reads (pako backpressure)', async () => {
    const compressor = createCompressor('gzip', { engine: 'pako', level: 0 });
    const block = randomBytes(64 * 1024);
    let processed = 0;
    // Level 0 output is as large as its input, so an unread compressor fills up at once.
    for (let i = 0; i < 32; i++) compressor.write(block, () => processed++);
    await setTimeout(50);
    expect(processed).toBeLessThanOrEqual(2);
    expect(compressor.readableLength).toBeLessThan(4 * block.length);
    // Reading releases the rest.
    compressor.end();
    let out = 0;
    for await (const chunk of compressor) out += (chunk as Buffer).length;
    expect(processed).toBe(32);
    expect(out).toBeGreaterThan(32 * block.length);
  });

  for (const engine of ENGINES.filter((e) => e !== 'pako')) {
    it(`stops deflating while nobody reads (${engine} backpressure, a few members in flight)`, async () => {
      const compressor = createCompressor('gzip', { engine, level: 0 });
      const block = randomBytes(1024 * 1024);
      let processed = 0;
      for (let i = 0; i < 32; i++) compressor.write(block, () => processed++);
      await setTimeout(200);
      // Members are 1 MiB: a few are accepted (one per core in flight, one queued, one pushed), then it waits.
      expect(processed).toBeLessThanOrEqual(10);
      expect(compressor.readableLength).toBeLessThan(10 * block.length);
      compressor.end();
      let out = 0;
      for await (const chunk of compressor) out += (chunk as Buffer).length;
      expect(processed).toBe(32);
      expect(out).toBeGreaterThan(32 * block.length);
    });
  }

  it('deflates with the default engine when none is asked for: the same bytes as asking for it', async () => {
    const big = Buffer.concat([input, input, input, input, input, input, input, input]);
    const viaDefault = await compress(big, 'gzip');
    const viaNamed = await compress(big, 'gzip', resolveGzipEngine());
    expect(viaDefault.equals(viaNamed)).toBe(true);
    expect(gunzipSync(viaDefault).equals(big)).toBe(true);
  });

  it('gives the same input back from every engine', async () => {
    for (const engine of ENGINES) expect(gunzipSync(await compress(input, 'gzip', engine)).equals(input)).toBe(true);
  });

  // Not registered in the run with the addon turned off (there `native` is refused, above).
  if (ENGINES.includes('native')) {
    it('gives other gzip bytes with native than with zlib for the same input', async () => {
      const [viaNative, viaZlib] = await Promise.all([compress(input, 'gzip', 'native'), compress(input, 'gzip', 'zlib')]);
      expect(viaNative.equals(viaZlib)).toBe(false);
    });
  }

  it('refuses bad levels as usage errors', () => {
    expect(() => createCompressor('zstd', { level: 20 })).toThrow(UsageError);
    expect(() => createCompressor('gzip', { level: 10 })).toThrow(UsageError);
    expect(() => createCompressor('gzip', { level: 1.5 })).toThrow(UsageError);
  });
});

describe('the gzip engine selection', () => {
  it('is native where the addon loads and OCI_ROOTFS_NATIVE does not turn it off', () => {
    withNativeEnv(undefined, () => {
      expect(loadNativeDeflate(), 'the libdeflate addon is built by npm ci').toBeDefined();
      expect(resolveGzipEngine()).toBe('native');
      expect(compressionEngines().gzip).toMatch(/^libdeflate 1\.\d+$/);
    });
  });

  it.each(['0', 'false', 'off'])('falls back to zlib with no error when OCI_ROOTFS_NATIVE=%s', (value) => {
    withNativeEnv(value, () => {
      expect(loadNativeDeflate()).toBeUndefined();
      expect(resolveGzipEngine()).toBe('zlib');
      expect(compressionEngines().gzip).toBe(`node:zlib (OCI_ROOTFS_NATIVE=${value})`);
    });
  });

  it('gives the zlib bytes by default when the addon is turned off', async () => {
    const input = sampleInput();
    const viaDefault = await withNativeEnv('0', () => compress(input, 'gzip'));
    expect(viaDefault.equals(await compress(input, 'gzip', 'zlib'))).toBe(true);
  });

  it('refuses a pinned native engine the environment turned off, naming the way out', () => {
    withNativeEnv('0', () => {
      const error = (() => {
        try {
          createCompressor('gzip', { engine: 'native' });
        } catch (thrown) {
          return thrown;
        }
        return undefined;
      })();
      expect(error).toBeInstanceOf(EngineUnavailableError);
      expect(error).toMatchObject({ code: 'ERR_ENGINE_UNAVAILABLE', exitCode: 1 });
      expect((error as Error).message).toContain('OCI_ROOTFS_NATIVE=0');
      expect((error as Error).message).toContain('--gzip-engine zlib');
    });
  });

  it('keeps pinned zlib and pako engines whatever the environment says', () => {
    for (const value of [undefined, '0']) {
      withNativeEnv(value, () => {
        expect(resolveGzipEngine('zlib')).toBe('zlib');
        expect(resolveGzipEngine('pako')).toBe('pako');
      });
    }
  });
});

describe('gzipHeaderNormaliser', () => {
  it('zeroes mtime and sets the OS byte to 3 even when the header is split across chunks', () => {
    // What macOS node:zlib would write (OS 19), with a time set, in three pieces.
    const stream = Buffer.from([0x1f, 0x8b, 8, 0, 0x12, 0x34, 0x56, 0x78, 0, 19, 0xaa, 0xbb]);
    const normalise = gzipHeaderNormaliser();
    const pieces = [stream.subarray(0, 5), stream.subarray(5, 9), stream.subarray(9)];
    for (const piece of pieces) normalise(piece);
    expect([...stream]).toEqual([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xaa, 0xbb]);
  });

  it('leaves the body alone', () => {
    const normalise = gzipHeaderNormaliser();
    normalise(Buffer.alloc(10));
    const body = Buffer.from([19, 19, 19]);
    normalise(body);
    expect([...body]).toEqual([19, 19, 19]);
  });
});

describe('formatFromPath', () => {
  it.each([
    ['rootfs.tar', 'tar'],
    ['out/rootfs.tar.gz', 'gzip'],
    ['ROOTFS.TGZ', 'gzip'],
    ['rootfs.gz', 'gzip'],
    ['rootfs.tar.zst', 'zstd'],
    ['rootfs', undefined],
    ['rootfs.img', undefined],
  ])('reads %s as %s', (path, format) => {
    expect(formatFromPath(path)).toBe(format);
  });
});
