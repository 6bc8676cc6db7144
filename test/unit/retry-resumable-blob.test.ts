/**
 * The resumable blob stream alone, over scripted responses: what it asks for after a
 * break, what it passes on, and what it refuses.
 */
import { randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { AbortError, DigestMismatchError, NetworkError } from '../../src/errors.js';
import { openResumableBlob, type BlobPart, type ResumableRetry } from '../../src/streams/resumable-blob.js';

const blob = randomBytes(100_000);

/** A body of `bytes` that fails with ECONNRESET after them (or ends, when `fail` is false). */
function body(bytes: Buffer, fail = true): Readable {
  return Readable.from(
    (async function* () {
      for (let at = 0; at < bytes.length; at += 4096) yield bytes.subarray(at, at + 4096);
      if (fail) throw Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
    })(),
  );
}

interface Script {
  /** Per request: where the body starts (offset or 0) and where it breaks (or undefined: whole). */
  answers: Array<(offset: number) => BlobPart | Error>;
}

function scripted(script: Script): { open: (offset: number) => Promise<BlobPart>; offsets: number[] } {
  const offsets: number[] = [];
  let n = 0;
  return {
    offsets,
    open: async (offset) => {
      offsets.push(offset);
      const answer = script.answers[n++] ?? ((from: number) => ({ body: body(blob.subarray(from), false), start: from }));
      const result = answer(offset);
      if (result instanceof Error) throw result;
      return result;
    },
  };
}

const retryTimes = (retries: number): ResumableRetry & { pauses: unknown[] } => {
  let failures = 0;
  const pauses: unknown[] = [];
  return {
    pauses,
    pause: async (error) => {
      pauses.push(error);
      if (++failures > retries) throw error;
    },
    progress: () => (failures = 0),
  };
};

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe('openResumableBlob', () => {
  it('asks for the rest from the byte a body broke at, and passes every byte on once', async () => {
    const { open, offsets } = scripted({
      answers: [
        () => ({ body: body(blob.subarray(0, 30_000)), start: 0 }),
        (from) => ({ body: body(blob.subarray(from, 70_000)), start: from }),
      ],
    });
    const resumes: number[] = [];
    const stream = await openResumableBlob({ open, retry: retryTimes(3), onResume: (o) => resumes.push(o) });
    expect((await readAll(stream)).equals(blob)).toBe(true);
    expect(offsets).toEqual([0, 30_000, 70_000]);
    expect(resumes).toEqual([30_000, 70_000]);
  });

  it('takes a body that ends cleanly as the end of the blob (its size is the verifier\'s to judge)', async () => {
    const { open, offsets } = scripted({ answers: [() => ({ body: body(blob.subarray(0, 12_345), false), start: 0 })] });
    const stream = await openResumableBlob({ open, retry: retryTimes(1) });
    expect((await readAll(stream)).equals(blob.subarray(0, 12_345))).toBe(true);
    expect(offsets).toEqual([0]);
  });

  it('drops the bytes it already had from a server that answers the Range from byte 0', async () => {
    const { open } = scripted({
      answers: [() => ({ body: body(blob.subarray(0, 40_000)), start: 0 }), () => ({ body: body(blob, false), start: 0 })],
    });
    const stream = await openResumableBlob({ open, retry: retryTimes(1) });
    expect((await readAll(stream)).equals(blob)).toBe(true);
  });

  it('fails with DigestMismatchError, without retrying, when the restart differs from what was passed on', async () => {
    const other = Buffer.from(blob);
    other[10] = (other[10] ?? 0) ^ 1;
    const { open, offsets } = scripted({
      answers: [() => ({ body: body(blob.subarray(0, 40_000)), start: 0 }), () => ({ body: body(other, false), start: 0 })],
    });
    const retry = retryTimes(5);
    const stream = await openResumableBlob({ open, retry, what: 'layer 0' });
    const error = await readAll(stream).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(DigestMismatchError);
    expect((error as Error).message).toMatch(/^layer 0: the server restarted the body from byte 0 with different bytes/);
    expect(offsets).toEqual([0, 40_000]);
    expect(retry.pauses).toHaveLength(1);
  });

  it('gives up with the error the retry policy throws', async () => {
    const { open } = scripted({ answers: Array.from({ length: 10 }, () => () => new NetworkError('connection refused')) });
    await expect(openResumableBlob({ open, retry: retryTimes(2) })).rejects.toThrow('connection refused');
  });

  it('reads no further ahead than the consumer wants (backpressure reaches the body)', async () => {
    let produced = 0;
    const source = new Readable({
      highWaterMark: 1024,
      read() {
        produced += 1024;
        this.push(Buffer.alloc(1024));
      },
    });
    const stream = await openResumableBlob({
      open: async () => ({ body: source, start: 0 }),
      retry: retryTimes(0),
      highWaterMark: 4096,
    });
    stream.once('readable', () => undefined);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(produced).toBeLessThan(64 * 1024);
    stream.destroy();
  });

  it('destroys the body in flight when destroyed, and when the signal aborts', async () => {
    const inflight = new PassThrough();
    inflight.write(Buffer.alloc(10));
    const controller = new AbortController();
    const stream = await openResumableBlob({
      open: async () => ({ body: inflight, start: 0 }),
      retry: retryTimes(0),
      signal: controller.signal,
    });
    const failed = readAll(stream).catch((caught: unknown) => caught);
    controller.abort();
    expect(await failed).toBeInstanceOf(AbortError);
    expect(inflight.destroyed).toBe(true);
  });

  it('keeps the hash of what it passed on, for the digest check downstream', async () => {
    const { open } = scripted({ answers: [(from) => ({ body: body(blob.subarray(from, 30_000)), start: from })] });
    const stream = await openResumableBlob({ open, retry: retryTimes(3) });
    expect((await readAll(stream)).equals(blob)).toBe(true);
    const { createHash } = await import('node:crypto');
    expect(stream.hashAlgorithm).toBe('sha256');
    expect(stream.digestSoFar()).toBe(createHash('sha256').update(blob).digest('hex'));
  });

  it('rejects (and emits no error event) when its signal aborts before the first response', async () => {
    const controller = new AbortController();
    const open = (_offset: number, signal: AbortSignal): Promise<BlobPart> =>
      new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
    const opening = openResumableBlob({ open, retry: retryTimes(3), signal: controller.signal });
    controller.abort();
    await expect(opening).rejects.toBeInstanceOf(AbortError);
  });
});

