/**
 * A layer whose bytes fail to inflate or parse is read on to its digest, which decides
 * between "damaged on the way" (integrity, exit 7) and "malformed content" (exit 8).
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { DigestMismatchError, MalformedArchiveError, SizeMismatchError } from '../../src/errors.js';
import { flattenLayers, type FlattenLayer } from '../../src/flatten/flatten.js';
import { checkedLayer, type CheckedLayer } from '../../src/streams/checked-layer.js';
import { decompressor } from '../../src/streams/decompress.js';
import { verifyDigestStream } from '../../src/streams/digest-verifier.js';
import { buildTar } from '../helpers/tar-fixture.js';

const sha256 = (bytes: Buffer): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** Bytes that do not compress, so that the gzip blob is long and arrives in many chunks. */
function noise(length: number): Buffer {
  const out: Buffer[] = [];
  let seed = Buffer.from('seed');
  for (let n = 0; n < length; n += 32) out.push((seed = createHash('sha256').update(seed).digest()));
  return Buffer.concat(out).subarray(0, length);
}

const tar = buildTar([
  { name: 'noise', type: 'file', content: noise(300_000) },
  { name: 'z', type: 'file', content: 'end\n' },
]);
const gz = gzipSync(tar);

function flipped(bytes: Buffer, offset: number): Buffer {
  const copy = Buffer.from(bytes);
  copy[offset] = (copy[offset] ?? 0) ^ 0xff;
  return copy;
}

/** The stored bytes in 16 KiB chunks, as a network body would come. */
function body(bytes: Buffer): Readable {
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += 16 * 1024) chunks.push(bytes.subarray(i, i + 16 * 1024));
  return Readable.from(chunks, { objectMode: false });
}

function open(stored: Buffer, digest: string, kind: 'gzip' | 'none', size = stored.length, signal = new AbortController().signal): CheckedLayer {
  return checkedLayer({
    raw: body(stored),
    stored: [verifyDigestStream({ digest, size, what: 'layer 1 (sha256:x)' })],
    verifies: true,
    inflate: decompressor(kind),
    signal,
  });
}

async function drain(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe('checkedLayer', () => {
  it('passes an intact layer through', async () => {
    expect((await drain(open(gz, sha256(gz), 'gzip').tar)).equals(tar)).toBe(true);
  });

  // A damaged gzip header: the inflater fails on the first chunk, long before the digest check.
  it('reports a gzip layer damaged in transit as a digest mismatch, with the inflate error as its cause', async () => {
    const error = await drain(open(flipped(gz, 0), sha256(gz), 'gzip').tar).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DigestMismatchError);
    expect((error as Error).message).toMatch(
      /^layer 1 \(sha256:x\) does not match its digest: corrupted in transit or in the registry's storage \(expected sha256:/,
    );
    expect((error as Error).cause).toBeInstanceOf(MalformedArchiveError);
  });

  it('reports a blob that matches its digest and does not inflate as malformed content', async () => {
    const broken = flipped(gz, 0);
    const error = await drain(open(broken, sha256(broken), 'gzip').tar).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MalformedArchiveError);
  });

  it('reports a damaged blob that is also short as a size mismatch, with the inflate error as its cause', async () => {
    const short = flipped(gz, 0).subarray(0, gz.length - 100);
    const error = await drain(open(short, sha256(gz), 'gzip', gz.length).tar).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SizeMismatchError);
    expect((error as Error).cause).toBeInstanceOf(MalformedArchiveError);
  });

  it('explains a failure the consumer found (a tar header damaged in an uncompressed layer) by reading the rest', async () => {
    const damaged = flipped(tar, 100);
    const layer = open(damaged, sha256(tar), 'none');
    const iterator = layer.tar[Symbol.asyncIterator]();
    await iterator.next();
    const parseError = new MalformedArchiveError('tar header of entry 0 has a bad checksum');
    const reported = await layer.explain(parseError);
    expect(reported).toBeInstanceOf(DigestMismatchError);
    expect((reported as Error).cause).toBe(parseError);
    // asked again, the same answer
    expect(await layer.explain(new Error('again'))).toBe(reported);
  });

  it('leaves an abort as it is', async () => {
    const layer = open(gz, sha256(gz), 'gzip');
    const abort = new DOMException('stop', 'AbortError');
    expect(await layer.explain(abort)).toBe(abort);
  });

  it('through the flattener: a damaged uncompressed layer fails with the digest mismatch, not the bad checksum', async () => {
    const damaged = flipped(tar, 100);
    let current: CheckedLayer | undefined;
    const layers: FlattenLayer[] = [
      {
        index: 0,
        name: 'sha256:x',
        open: (signal) => {
          current = open(damaged, sha256(tar), 'none', tar.length, signal);
          return current.tar;
        },
        explainFailure: (error) => current?.explain(error) ?? Promise.resolve(error),
      },
    ];
    const error = await (async () => {
      for await (const _chunk of flattenLayers(layers)) void _chunk;
    })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DigestMismatchError);
    expect(((error as Error).cause as Error).message).toMatch(/checksum/);
  });
});
