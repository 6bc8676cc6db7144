import { createHash, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { availableParallelism } from 'node:os';
import { createParallelGzip, defaultConcurrency } from '../../src/streams/parallel-gzip.js';

async function compress(input: Buffer, options: Parameters<typeof createParallelGzip>[0], chunk = 7919): Promise<Buffer> {
  const parts: Buffer[] = [];
  const chunks = function* () {
    for (let i = 0; i < input.length; i += chunk) yield input.subarray(i, i + chunk);
  };
  await pipeline(Readable.from(chunks()), createParallelGzip(options), async function* (source) {
    for await (const part of source) parts.push(part as Buffer);
  });
  return Buffer.concat(parts);
}

/** Text-like input that compresses, with incompressible stretches. */
function sample(size: number): Buffer {
  const words = ['usr', 'lib', 'bin', 'share', 'doc', 'locale', 'x86_64', 'linux', 'gnu', 'so'];
  const out = Buffer.alloc(size);
  let offset = 0;
  let i = 0;
  while (offset < size) {
    if (i % 50 === 0) offset += randomBytes(Math.min(4096, size - offset)).copy(out, offset);
    else offset += out.write(`${words[i % words.length]}/${words[(i * 7) % words.length]} ${i}\n`, offset);
    i++;
  }
  return out;
}

describe('parallel gzip', () => {
  it('gives a multi-member gzip that node:zlib and GNU gzip read back byte for byte', async () => {
    const input = sample(5 * 1024 * 1024 + 12345);
    const gz = await compress(input, { blockSize: 1024 * 1024, concurrency: 2 });
    expect(gunzipSync(gz).equals(input)).toBe(true);
    const gnu = spawnSync('gzip', ['-dc'], { input: gz, maxBuffer: 64 * 1024 * 1024 });
    expect(gnu.status).toBe(0);
    expect(createHash('sha256').update(gnu.stdout).digest('hex')).toBe(createHash('sha256').update(input).digest('hex'));
    // Six blocks, six members: each starts with the gzip magic and carries mtime 0 and OS 3.
    let members = 0;
    for (let at = gz.indexOf(Buffer.from([0x1f, 0x8b, 8])); at >= 0; at = gz.indexOf(Buffer.from([0x1f, 0x8b, 8]), at + 1)) {
      if (gz.readUInt32LE(at + 4) === 0 && gz[at + 9] === 3) members++;
    }
    expect(members).toBeGreaterThanOrEqual(6);
  });

  it('gives the same bytes whatever the chunking and the concurrency', async () => {
    const input = sample(3 * 1024 * 1024 + 1);
    const a = await compress(input, { blockSize: 256 * 1024, concurrency: 1 }, 1000);
    const b = await compress(input, { blockSize: 256 * 1024, concurrency: 4 }, 65536);
    expect(a.equals(b)).toBe(true);
  });

  it('writes a valid empty gzip file for an empty input', async () => {
    const gz = await compress(Buffer.alloc(0), {});
    expect(gz.length).toBeGreaterThan(0);
    expect(gunzipSync(gz).length).toBe(0);
  });

  it('honours the level', async () => {
    const input = sample(2 * 1024 * 1024);
    const fast = await compress(input, { level: 1 });
    const best = await compress(input, { level: 9 });
    expect(best.length).toBeLessThan(fast.length);
    expect(gunzipSync(best).equals(input)).toBe(true);
  });
});

describe('parallel gzip concurrency', () => {
  it('keeps one member per core in flight, no more than libuv has pool threads, plus one queued', () => {
    const cores = availableParallelism();
    expect(defaultConcurrency({})).toBe(Math.min(cores, 4) + 1);
    expect(defaultConcurrency({ UV_THREADPOOL_SIZE: '1' })).toBe(2);
    expect(defaultConcurrency({ UV_THREADPOOL_SIZE: '128' })).toBe(cores + 1);
    expect(defaultConcurrency({ UV_THREADPOOL_SIZE: 'many' })).toBe(Math.min(cores, 4) + 1);
  });
});
