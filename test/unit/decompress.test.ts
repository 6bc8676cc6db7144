import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MalformedArchiveError } from '../../src/errors.js';
import { decompressor } from '../../src/streams/decompress.js';

async function inflate(chunks: Buffer[], kind: 'gzip' | 'none' = 'gzip'): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from(chunks), decompressor(kind), async (source: AsyncIterable<Buffer>) => {
    for await (const chunk of source) out.push(chunk);
  });
  return Buffer.concat(out);
}

/** Splits `bytes` at every position in `cuts` (sorted, deduplicated). */
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

const text = Buffer.from('hello layer '.repeat(5000));
const member1 = gzipSync(text);
const member2 = gzipSync(Buffer.from('second member'));

describe('decompressor("gzip")', () => {
  it('inflates a single member', async () => {
    expect((await inflate([member1])).equals(text)).toBe(true);
  });

  it('inflates every member of a multi-member stream, however it is chunked', async () => {
    const joined = Buffer.concat([member1, member2]);
    const expected = Buffer.concat([text, Buffer.from('second member')]);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.nat(), { maxLength: 6 }), async (cuts) => {
        expect((await inflate(split(joined, cuts))).equals(expected)).toBe(true);
      }),
      { numRuns: 40 },
    );
  });

  it('tolerates zero padding after the last member, in any chunking', async () => {
    const padded = Buffer.concat([member1, Buffer.alloc(1024)]);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.nat(), { maxLength: 4 }), async (cuts) => {
        expect((await inflate(split(padded, cuts))).equals(text)).toBe(true);
      }),
      { numRuns: 40 },
    );
  });

  it('refuses any non-zero byte after the last member, even after zero padding, in any chunking', async () => {
    const cases = [
      Buffer.concat([member1, Buffer.from('garbage')]),
      Buffer.concat([member1, Buffer.alloc(10), Buffer.from('garbage')]),
      Buffer.concat([member1, Buffer.alloc(10), member2]),
      Buffer.concat([member1, Buffer.alloc(600), Buffer.from([1])]),
    ];
    for (const bytes of cases) {
      await fc.assert(
        fc.asyncProperty(fc.array(fc.nat(), { maxLength: 4 }), async (cuts) => {
          await expect(inflate(split(bytes, cuts))).rejects.toBeInstanceOf(MalformedArchiveError);
        }),
        { numRuns: 25 },
      );
    }
  });

  it('refuses a truncated stream, wherever it is cut', async () => {
    for (const cut of [1, 5, 10, 20, Math.floor(member1.length / 2), member1.length - 1]) {
      await expect(inflate([member1.subarray(0, cut)])).rejects.toBeInstanceOf(MalformedArchiveError);
    }
    await expect(inflate([member1, member2.subarray(0, 12)])).rejects.toThrow(/truncated|corrupt/);
  });

  it('refuses an empty stream and a corrupt one', async () => {
    await expect(inflate([])).rejects.toBeInstanceOf(MalformedArchiveError);
    const corrupt = Buffer.from(member1);
    corrupt[20] = (corrupt[20] ?? 0) ^ 0xff;
    await expect(inflate([corrupt])).rejects.toBeInstanceOf(MalformedArchiveError);
  });

  it('keeps backpressure: nothing more is pulled from the source while nobody reads', async () => {
    const big = randomBytes(16 * 1024 * 1024);
    const gz = gzipSync(big, { level: 1 });
    let pulled = 0;
    const source = Readable.from(
      (function* () {
        for (let offset = 0; offset < gz.length; offset += 16384) {
          const chunk = gz.subarray(offset, offset + 16384);
          pulled += chunk.length;
          yield chunk;
        }
      })(),
    );
    const stream = decompressor('gzip');
    source.pipe(stream);
    await new Promise((resolve) => setTimeout(resolve, 200));
    // What the buffers hold (a batch of input, an output chunk), not the stream.
    expect(pulled).toBeLessThan(4 * 1024 * 1024);
    let received = 0;
    for await (const chunk of stream as AsyncIterable<Buffer>) received += chunk.length;
    expect(received).toBe(big.length);
    expect(pulled).toBe(gz.length);
  });
});

describe('decompressor("none")', () => {
  it('passes bytes through unchanged', async () => {
    const bytes = randomBytes(10000);
    expect((await inflate([bytes.subarray(0, 10), bytes.subarray(10)], 'none')).equals(bytes)).toBe(true);
  });
});
