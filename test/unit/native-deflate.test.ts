/**
 * The libdeflate addon (native/oci_deflate.c) and the `native` gzip engine on it. CI builds
 * the addon (`npm ci` with cc and libdeflate-dev), so these tests require it: a missing
 * addon fails here rather than passing quietly. The fallback without it is tested by
 * running compress.test.ts and the e2e tests again with OCI_ROOTFS_NATIVE=0 (.ci/run).
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout } from 'node:timers/promises';
import { gunzipSync, inflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { createCompressor } from '../../src/streams/compress.js';
import { decompressor } from '../../src/streams/decompress.js';
import { loadNativeDeflate, nativeMember, type NativeDeflateBinding } from '../../src/streams/native-deflate.js';
import { createParallelGzip } from '../../src/streams/parallel-gzip.js';

function addon(): NativeDeflateBinding {
  const loaded = loadNativeDeflate({});
  if (loaded === undefined) throw new Error('the libdeflate addon is not built: npm ci (or node native/install.mjs) on Linux with cc and libdeflate-dev');
  return loaded;
}

/** Text-like input that compresses, with incompressible stretches. */
function sample(size: number): Buffer {
  const words = ['usr', 'lib', 'bin', 'share', 'doc', 'locale', 'x86_64', 'linux', 'gnu', 'so'];
  const out = Buffer.alloc(size);
  let offset = 0;
  for (let i = 0; offset < size; i++) {
    if (i % 50 === 0) offset += randomBytes(Math.min(4096, size - offset)).copy(out, offset);
    else offset += out.write(`${words[i % words.length]}/${words[(i * 7) % words.length]} ${i}\n`, offset);
  }
  return out;
}

function deflateOnce(binding: NativeDeflateBinding, input: Uint8Array, level: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    binding.deflate(input, level, (error, member) => (error === null ? resolve(member as Buffer) : reject(error)));
  });
}

async function gzipNative(input: Buffer, chunk = 7919, blockSize?: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  const chunks = function* (): Generator<Buffer> {
    for (let i = 0; i < input.length; i += chunk) yield input.subarray(i, i + chunk);
  };
  const gzip = blockSize === undefined ? createCompressor('gzip', { engine: 'native' }) : createParallelGzip({ blockSize, deflateMember: nativeMember(addon()) });
  await pipeline(Readable.from(chunks()), gzip, async function* (source) {
    for await (const part of source) parts.push(part as Buffer);
  });
  return Buffer.concat(parts);
}

/** The members of a gzip stream: each header (10 bytes, no optional fields), raw deflate, trailer. */
function memberCount(gz: Buffer): number {
  let count = 0;
  for (let at = 0; at < gz.length; count++) {
    expect([...gz.subarray(at, at + 4)]).toEqual([0x1f, 0x8b, 8, 0]);
    // zlib stops at the end of the deflate stream; `bytesWritten` is the input it consumed.
    const { engine } = inflateRawSync(gz.subarray(at + 10), { info: true }) as unknown as { engine: { bytesWritten: number } };
    at += 10 + engine.bytesWritten + 8;
  }
  return count;
}

describe('the libdeflate addon', () => {
  it('loads and names its libdeflate', () => {
    expect(addon().libdeflateVersion).toMatch(/^1\.\d+/);
  });

  it('deflates one block into one gzip member that zlib inflates, with mtime 0 and the Unix OS byte', async () => {
    const input = sample(300_000);
    const member = await deflateOnce(addon(), input, 6);
    expect([...member.subarray(0, 4)]).toEqual([0x1f, 0x8b, 8, 0]);
    expect(member.readUInt32LE(4)).toBe(0);
    expect(member[9]).toBe(3);
    expect(gunzipSync(member).equals(input)).toBe(true);
  });

  it('deflates an empty block into a valid empty member', async () => {
    const member = await deflateOnce(addon(), Buffer.alloc(0), 6);
    expect(gunzipSync(member).length).toBe(0);
  });

  it('refuses a non-byte input, a bad level and a missing callback synchronously', () => {
    const binding = addon();
    const call = (...args: unknown[]): unknown => (binding.deflate as (...a: unknown[]) => unknown)(...args);
    expect(() => call('text', 6, () => {})).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => call(new Uint16Array(4), 6, () => {})).toThrow(TypeError);
    expect(() => call(Buffer.alloc(1), 13, () => {})).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => call(Buffer.alloc(1), 1.5, () => {})).toThrow(RangeError);
    expect(() => call(Buffer.alloc(1), '6', () => {})).toThrow(TypeError);
    expect(() => call(Buffer.alloc(1), 6)).toThrow(TypeError);
    expect(binding.pending()).toBe(0);
  });

  it('counts its jobs until each has called back', async () => {
    const binding = addon();
    const input = sample(2_000_000);
    const jobs = [deflateOnce(binding, input, 6), deflateOnce(binding, input, 6), deflateOnce(binding, input, 6)];
    expect(binding.pending()).toBe(3);
    await Promise.all(jobs);
    expect(binding.pending()).toBe(0);
  });
});

describe('gzip with the native engine', () => {
  it('gives a multi-member gzip, one member per block, that node:zlib, our StrictGunzip, gzip -t and pigz -t accept', async () => {
    const input = sample(5 * 1024 * 1024 + 12345);
    const gz = await gzipNative(input);
    expect(gunzipSync(gz).equals(input)).toBe(true);
    expect(memberCount(gz)).toBe(6);

    const strict: Buffer[] = [];
    await pipeline(Readable.from([gz]), decompressor('gzip'), async function* (source) {
      for await (const part of source) strict.push(part as Buffer);
    });
    expect(Buffer.concat(strict).equals(input)).toBe(true);

    for (const tool of ['gzip', 'pigz']) {
      const tested = spawnSync(tool, ['-t'], { input: gz });
      expect(tested.status, `${tool} -t: ${tested.stderr.toString()}`).toBe(0);
    }
  });

  it('gives the same bytes whatever the chunking', async () => {
    const input = sample(3 * 1024 * 1024 + 1);
    const a = await gzipNative(input, 1000);
    const b = await gzipNative(input, 65536);
    expect(a.equals(b)).toBe(true);
  });

  it('gives the same bytes as deflating each block alone', async () => {
    const input = sample(600_000);
    const blockSize = 256 * 1024;
    const whole = await gzipNative(input, 4096, blockSize);
    const members: Buffer[] = [];
    for (let i = 0; i < input.length; i += blockSize) members.push(await deflateOnce(addon(), input.subarray(i, i + blockSize), 6));
    expect(whole.equals(Buffer.concat(members))).toBe(true);
  });

  it('compresses an empty input to a valid empty gzip', async () => {
    const gz = await gzipNative(Buffer.alloc(0));
    expect(gz.length).toBeGreaterThan(0);
    expect(gunzipSync(gz).length).toBe(0);
  });

  it('leaves no job pending and writes nothing more when destroyed mid-stream', async () => {
    const binding = addon();
    const gzip = createCompressor('gzip', { engine: 'native' });
    let written = 0;
    gzip.on('data', (chunk: Buffer) => (written += chunk.length));
    const errors: unknown[] = [];
    gzip.on('error', (error) => errors.push(error));
    const block = sample(1024 * 1024);
    for (let i = 0; i < 6; i++) gzip.write(block);
    await setTimeout(1);
    gzip.destroy();
    const atDestroy = written;
    for (let i = 0; i < 200 && binding.pending() > 0; i++) await setTimeout(10);
    expect(binding.pending()).toBe(0);
    await setTimeout(20);
    expect(written).toBe(atDestroy);
    expect(errors).toEqual([]);
  });

  it('fails the stream when a member cannot be deflated', async () => {
    const failing: NativeDeflateBinding = {
      deflate: (_input, _level, callback) => setImmediate(() => callback(Object.assign(new Error('out of memory for a gzip member'), { code: 'ERR_OCI_ROOTFS_DEFLATE' }))),
      pending: () => 0,
      libdeflateVersion: 'test',
    };
    const gzip = createParallelGzip({ blockSize: 1024, deflateMember: nativeMember(failing) });
    await expect(pipeline(Readable.from([Buffer.alloc(4096)]), gzip, async function* (source) {
      for await (const part of source) yield part;
    })).rejects.toThrow('gzip (libdeflate) failed: out of memory for a gzip member');
  });
});
