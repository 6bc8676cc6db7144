import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { DigestMismatchError, ManifestError, SizeMismatchError } from '../../src/errors.js';
import { DigestVerifier } from '../../src/streams/digest-verifier.js';

const sha256 = (bytes: Buffer): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

async function run(source: Iterable<Buffer> | AsyncIterable<Buffer>, verifier: DigestVerifier): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from(source), verifier, async (stream: AsyncIterable<Buffer>) => {
    for await (const chunk of stream) out.push(chunk);
  });
  return Buffer.concat(out);
}

describe('DigestVerifier', () => {
  const bytes = randomBytes(100_000);
  const chunks = [bytes.subarray(0, 1), bytes.subarray(1, 50_000), bytes.subarray(50_000)];

  it('passes matching bytes through unchanged and reports count and digest', async () => {
    const verifier = new DigestVerifier({ digest: sha256(bytes), size: bytes.length });
    expect((await run(chunks, verifier)).equals(bytes)).toBe(true);
    expect(verifier.bytes).toBe(bytes.length);
    expect(verifier.actualDigest).toBe(sha256(bytes));
  });

  it('verifies without a size', async () => {
    await run(chunks, new DigestVerifier({ digest: sha256(bytes) }));
  });

  it('verifies sha512 digests', async () => {
    const digest = `sha512:${createHash('sha512').update(bytes).digest('hex')}`;
    await run(chunks, new DigestVerifier({ digest }));
  });

  it('fails with DigestMismatchError at EOF when one byte differs', async () => {
    const tampered = Buffer.from(bytes);
    tampered[500] = (tampered[500] ?? 0) ^ 1;
    const error = await run([tampered], new DigestVerifier({ digest: sha256(bytes), size: bytes.length, what: 'layer 0' })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DigestMismatchError);
    expect(error).toMatchObject({ expected: sha256(bytes), actual: sha256(tampered), bytes: bytes.length, what: 'layer 0' });
  });

  it('fails with SizeMismatchError when the stream is short', async () => {
    const error = await run([bytes.subarray(0, 10)], new DigestVerifier({ digest: sha256(bytes), size: bytes.length })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SizeMismatchError);
    expect(error).toMatchObject({ expected: bytes.length, actual: 10 });
  });

  it('fails as soon as the stream has more bytes than the size, without waiting for EOF', async () => {
    let produced = 0;
    async function* endless(): AsyncGenerator<Buffer> {
      for (;;) {
        produced += 1000;
        yield Buffer.alloc(1000);
      }
    }
    const error = await run(endless(), new DigestVerifier({ digest: sha256(bytes), size: 2500 })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SizeMismatchError);
    expect((error as SizeMismatchError).actual).toBe(3000);
    expect(produced).toBeLessThan(100_000);
  });

  it('refuses a digest it cannot verify', () => {
    expect(() => new DigestVerifier({ digest: `md5:${'a'.repeat(32)}` })).toThrow(ManifestError);
  });
});

describe('DigestVerifier with an upstream hash', () => {
  const bytes = randomBytes(50_000);

  it('takes the upstream digest at EOF instead of hashing again, and still fails on a mismatch', async () => {
    const good = { hashAlgorithm: 'sha256', digestSoFar: () => sha256(bytes).slice('sha256:'.length) };
    await expect(run([bytes], new DigestVerifier({ digest: sha256(bytes), size: bytes.length, upstream: good }))).resolves.toHaveLength(bytes.length);
    const bad = { hashAlgorithm: 'sha256', digestSoFar: () => '0'.repeat(64) };
    const error = await run([bytes], new DigestVerifier({ digest: sha256(bytes), upstream: bad })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DigestMismatchError);
  });

  it('still checks the size itself', async () => {
    const upstream = { hashAlgorithm: 'sha256', digestSoFar: () => sha256(bytes).slice('sha256:'.length) };
    const error = await run([bytes.subarray(0, 10)], new DigestVerifier({ digest: sha256(bytes), size: bytes.length, upstream })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SizeMismatchError);
  });

  it('hashes itself when the upstream hash is another algorithm', async () => {
    const digest = `sha512:${createHash('sha512').update(bytes).digest('hex')}`;
    const upstream = { hashAlgorithm: 'sha256', digestSoFar: () => 'x' };
    await expect(run([bytes], new DigestVerifier({ digest, upstream }))).resolves.toHaveLength(bytes.length);
  });
});
