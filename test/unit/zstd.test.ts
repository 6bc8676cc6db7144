/**
 * zstd both ways (DESIGN.md §2, §5): frames made by the real `zstd` CLI are inflated by our
 * decompressor however they are chunked; truncation, no frame and trailing garbage are
 * MalformedArchiveError; our compressor's output is read back by `zstd -dc`, and its bytes
 * do not depend on how the input was chunked.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import fc from 'fast-check';
import { createRequire } from 'node:module';
import { describe, expect, it, vi } from 'vitest';
import { EngineUnavailableError, MalformedArchiveError, UsageError } from '../../src/errors.js';
import { createCompressor } from '../../src/streams/compress.js';
import { decompressor } from '../../src/streams/decompress.js';
import {
  createZstdCompressor,
  createZstdDecompressor,
  nodeHasZstd,
  type ZstdEngine,
} from '../../src/streams/zstd.js';

const zstdCli = (args: string[], input: Buffer): Buffer =>
  execFileSync('zstd', args, { input, maxBuffer: 512 * 1024 * 1024 });

/** Engines to test: the binding always (an optional dependency CI installs), node:zlib where this Node has it. */
const ENGINES: ZstdEngine[] = nodeHasZstd() ? ['napi', 'node'] : ['napi'];

async function inflate(chunks: Buffer[], engine?: ZstdEngine): Promise<Buffer> {
  const out: Buffer[] = [];
  const stream = engine === undefined ? decompressor('zstd') : createZstdDecompressor({ engine });
  await pipeline(Readable.from(chunks), stream, async (source: AsyncIterable<Buffer>) => {
    for await (const chunk of source) out.push(chunk);
  });
  return Buffer.concat(out);
}

async function deflate(chunks: Buffer[], level?: number, engine?: ZstdEngine): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(
    Readable.from(chunks),
    createZstdCompressor({ ...(level === undefined ? {} : { level }), ...(engine === undefined ? {} : { engine }) }),
    async (source: AsyncIterable<Buffer>) => {
      for await (const chunk of source) out.push(chunk);
    },
  );
  return Buffer.concat(out);
}

function split(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let last = 0;
  for (const point of points) {
    chunks.push(bytes.subarray(last, point));
    last = point;
  }
  chunks.push(bytes.subarray(last));
  return chunks.filter((chunk) => chunk.length > 0);
}

const text = Buffer.concat([Buffer.from('hello zstd layer '.repeat(20_000)), randomBytes(300_000)]);
const frame = zstdCli(['-q', '-c', '-3'], text);
const second = Buffer.from('a second frame');
const frame2 = zstdCli(['-q', '-c', '--no-check'], second);
/** A skippable frame (magic 0x184D2A50, little endian), 5 bytes of user data. */
const skippable = Buffer.concat([Buffer.from([0x50, 0x2a, 0x4d, 0x18, 5, 0, 0, 0]), Buffer.from('notes')]);

describe.each(ENGINES)('zstd decompressor (%s engine)', (engine) => {
  it('inflates a frame made by the zstd CLI, however it is chunked', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.nat(), { maxLength: 6 }), async (cuts) => {
        expect((await inflate(split(frame, cuts), engine)).equals(text)).toBe(true);
      }),
      { numRuns: 30 },
    );
  });

  it('inflates every frame of a multi-frame stream, skippable frames included', async () => {
    const joined = Buffer.concat([frame, skippable, frame2]);
    const expected = Buffer.concat([text, second]);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.nat(), { maxLength: 6 }), async (cuts) => {
        expect((await inflate(split(joined, cuts), engine)).equals(expected)).toBe(true);
      }),
      { numRuns: 30 },
    );
  });

  it('refuses a stream cut anywhere inside a frame', async () => {
    for (const cut of [1, 4, 10, Math.floor(frame.length / 2), frame.length - 1]) {
      await expect(inflate([frame.subarray(0, cut)], engine)).rejects.toBeInstanceOf(MalformedArchiveError);
    }
  });

  it('refuses an empty stream', async () => {
    await expect(inflate([], engine)).rejects.toBeInstanceOf(MalformedArchiveError);
  });

  it('refuses garbage after the last frame, even zeros', async () => {
    for (const tail of [Buffer.from('garbage!'), Buffer.alloc(16)]) {
      const error = await inflate([Buffer.concat([frame, tail])], engine).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(MalformedArchiveError);
    }
  });

  it('refuses a corrupted frame', async () => {
    const corrupt = Buffer.from(frame);
    corrupt[Math.floor(corrupt.length / 2)]! ^= 0xff;
    await expect(inflate([corrupt], engine)).rejects.toBeInstanceOf(MalformedArchiveError);
  });
});

describe('zstd decompressor backpressure', () => {
  it('stops inflating while the reader is full (a zip bomb does not fill memory)', async () => {
    // 256 MiB of zeros is a few KiB of zstd; read it slowly and watch the buffer.
    const bomb = zstdCli(['-q', '-c', '-19'], Buffer.alloc(256 * 1024 * 1024));
    expect(bomb.length).toBeLessThan(64 * 1024);
    const stream = createZstdDecompressor({ engine: 'napi' });
    let maxBuffered = 0;
    let total = 0;
    await pipeline(
      Readable.from([bomb]),
      stream,
      new Writable({
        highWaterMark: 16 * 1024,
        write(chunk: Buffer, _encoding, callback) {
          total += chunk.length;
          maxBuffered = Math.max(maxBuffered, stream.readableLength);
          setImmediate(callback);
        },
      }),
    );
    expect(total).toBe(256 * 1024 * 1024);
    expect(maxBuffered).toBeLessThan(4 * 1024 * 1024);
  });
});

describe.each(ENGINES)('zstd compressor (%s engine)', (engine) => {
  it('writes a frame `zstd -dc` reads back, with a content checksum', async () => {
    const compressed = await deflate([text], undefined, engine);
    expect(zstdCli(['-dc'], compressed).equals(text)).toBe(true);
    // Frame header descriptor (byte 4 after the magic): bit 2 is Content_Checksum_flag.
    expect(compressed.readUInt32LE(0)).toBe(0xfd2fb528);
    expect(compressed[4]! & 0b100).toBe(0b100);
  });

  it('gives the same bytes however the input is chunked', async () => {
    const whole = await deflate([text], 3, engine);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.nat(), { maxLength: 8 }), async (cuts) => {
        expect((await deflate(split(text, cuts), 3, engine)).equals(whole)).toBe(true);
      }),
      { numRuns: 15 },
    );
  });

  it('round-trips through our own decompressor at every level from 1 to 19', async () => {
    const sample = text.subarray(0, 200_000);
    for (const level of [1, 3, 9, 19]) {
      expect((await inflate([await deflate([sample], level, engine)], engine)).equals(sample)).toBe(true);
    }
  });

  it('writes one valid frame for an empty input', async () => {
    const compressed = await deflate([], undefined, engine);
    expect(zstdCli(['-dc'], compressed).length).toBe(0);
  });
});

describe('createCompressor("zstd")', () => {
  it('is the zstd compressor behind the output-format factory, level passed on', async () => {
    const out: Buffer[] = [];
    await pipeline(Readable.from([text]), createCompressor('zstd', { level: 5 }), async (source: AsyncIterable<Buffer>) => {
      for await (const chunk of source) out.push(chunk);
    });
    const compressed = Buffer.concat(out);
    expect(zstdCli(['-dc'], compressed).equals(text)).toBe(true);
    expect(compressed.equals(await deflate([text], 5))).toBe(true);
  });

  it('refuses a level outside 1..19 as a usage error', () => {
    for (const level of [0, 20, 2.5, -1]) {
      expect(() => createCompressor('zstd', { level })).toThrow(UsageError);
    }
  });
});

describe('zstd where no engine is installed', () => {
  it('names the fix with ERR_ENGINE_UNAVAILABLE when the zstd-napi binding cannot be loaded', async () => {
    // A fresh copy of zstd.ts (its binding cache empty), with `zstd-napi` made unloadable:
    // Module._load is where every require() goes, whatever was resolved and cached before.
    vi.resetModules();
    const fresh = await import('../../src/streams/zstd.js');
    const Module = createRequire(import.meta.url)('node:module') as { _load: (request: string, ...rest: unknown[]) => unknown };
    const load = Module._load;
    Module._load = function (this: unknown, request: string, ...rest: unknown[]) {
      if (request.startsWith('zstd-napi')) throw Object.assign(new Error(`Cannot find module '${request}'`), { code: 'MODULE_NOT_FOUND' });
      return load.call(this, request, ...rest);
    };
    try {
      for (const make of [() => fresh.createZstdDecompressor({ engine: 'napi' }), () => fresh.createZstdCompressor({ engine: 'napi' })]) {
        let error: unknown;
        try {
          make();
        } catch (thrown) {
          error = thrown;
        }
        expect(error).toBeInstanceOf(Error);
        expect(error).toMatchObject({ code: 'ERR_ENGINE_UNAVAILABLE', exitCode: 1 });
        expect((error as Error).message).toMatch(/Node\.js >= 22\.15 .*npm install zstd-napi/);
      }
      expect(fresh.zstdAvailable()).toBe(nodeHasZstd());
    } finally {
      Module._load = load;
    }
  });

  if (!nodeHasZstd()) {
    it('refuses the node:zlib engine on a Node.js without it, naming the version that has it', () => {
      expect(() => createZstdDecompressor({ engine: 'node' })).toThrow(EngineUnavailableError);
      expect(() => createZstdCompressor({ engine: 'node' })).toThrow(/use Node\.js >= 22\.15/);
    });
  }
});
