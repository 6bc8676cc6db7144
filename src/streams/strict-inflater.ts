/**
 * The shared shape of our layer decompressors that wrap a node:zlib stream (gunzip, and
 * zstd where node:zlib has it): one Duplex in front of the zlib Transform, so that every
 * failure leaves as a {@link MalformedArchiveError}, backpressure passes through, and the
 * end of the input is checked the same way for both formats.
 *
 * What node:zlib does after the last gzip member or zstd frame depends on chunk
 * boundaries: it stops consuming input there and may end quietly, dropping the rest. So
 * the bytes it did not consume (`bytesWritten` counts what it did) are handed to
 * {@link StrictInflater.checkTrailer}, which decides per format: gzip tolerates zero
 * padding, zstd nothing.
 */
import { Duplex, type Transform } from 'node:stream';
import type { MalformedArchiveError } from '../errors.js';

/** A node:zlib stream: a Transform that counts the input it consumed. */
export type ZlibTransform = Transform & { readonly bytesWritten: number };

/** Compressed bytes buffered while zlib is busy, handed to it at once on its next turn. */
const INPUT_BATCH = 1024 * 1024;

export abstract class StrictInflater<Inner extends ZlibTransform = ZlibTransform> extends Duplex {
  /** The inner stream has ended: its output is complete. */
  private innerEnded = false;
  /** The first failure of the inner stream, already mapped. */
  protected innerError: MalformedArchiveError | undefined;
  /** Where `_writev` gathers chunks; zlib has let go of it whenever `_writev` is called. */
  private batch: Buffer = Buffer.alloc(0);
  /** Input bytes handed to zlib so far. */
  private fed = 0;
  /** The last member or frame has ended: what follows goes to checkTrailer() only. */
  private inTrailer = false;

  protected constructor(protected readonly inner: Inner) {
    // Input chunks that arrive while zlib works are handed over together (`_writev`): each
    // handover is a thread-pool round trip, and a 64 KiB socket chunk is a short one.
    super({ writableHighWaterMark: INPUT_BATCH });
    // zlib pushes its output before it hands the pool the next piece of work; passed on
    // synchronously, everything downstream (hashes, tar parsing, writes) would run while the
    // pool sits idle. One tick later, it runs while the pool inflates the next piece.
    inner.on('data', (chunk: Buffer) => process.nextTick(() => this.forward(chunk)));
    inner.on('end', () =>
      process.nextTick(() => {
        this.innerEnded = true;
        this.push(null);
      }),
    );
    inner.on('error', (error: Error) => {
      this.innerError ??= this.malformed(error);
      this.destroy(this.innerError);
    });
  }

  private forward(chunk: Buffer): void {
    if (this.destroyed) return;
    if (!this.push(chunk)) this.inner.pause();
  }

  /** The inner stream's error (or a truncation) as the error this stream fails with. */
  protected abstract malformed(error: Error): MalformedArchiveError;

  /** Bytes after the last member or frame: null when the format tolerates them. */
  protected abstract checkTrailer(bytes: Buffer, offset: number): MalformedArchiveError | null;

  override _read(): void {
    this.inner.resume();
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    const only = chunks.length === 1 ? chunks[0] : undefined;
    if (only !== undefined) {
      this._write(only.chunk, 'binary', callback);
      return;
    }
    // Gathered into one buffer that is used again: zlib is done with its input when the
    // write calls back, and fresh buffers would be garbage that V8 frees only at its
    // external-memory threshold (64 MiB), straight on top of peak RSS.
    let length = 0;
    for (const { chunk } of chunks) length += chunk.length;
    if (this.batch.length < length) this.batch = Buffer.allocUnsafe(Math.max(length, INPUT_BATCH));
    let at = 0;
    for (const { chunk } of chunks) at += chunk.copy(this.batch, at);
    this._write(this.batch.subarray(0, length), 'binary', callback);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.inTrailer) {
      callback(this.checkTrailer(chunk, this.fed));
      this.fed += chunk.length;
      return;
    }
    this.fed += chunk.length;
    this.inner.write(chunk, (error) => {
      if (error !== undefined && error !== null) {
        callback(this.innerError ?? this.malformed(error));
        return;
      }
      // zlib stops consuming input only where the last member or frame ended.
      const unconsumed = Math.min(chunk.length, this.fed - this.inner.bytesWritten);
      if (unconsumed === 0) {
        callback();
        return;
      }
      this.inTrailer = true;
      const problem = this.checkTrailer(chunk.subarray(chunk.length - unconsumed), this.fed - unconsumed);
      if (problem === null) this.inner.end();
      callback(problem);
    });
  }

  /** The input ended: succeed once the inner stream has flushed every byte, or fail as it did. */
  override _final(callback: (error?: Error | null) => void): void {
    if (this.innerError !== undefined) {
      callback(this.innerError);
      return;
    }
    if (this.innerEnded) {
      callback();
      return;
    }
    const onEnd = (): void => {
      this.inner.off('error', onError);
      callback();
    };
    const onError = (error: Error): void => {
      this.inner.off('end', onEnd);
      callback(this.innerError ?? this.malformed(error));
    };
    this.inner.once('end', onEnd);
    this.inner.once('error', onError);
    // In the trailer zlib was ended already (see `_write`).
    if (!this.inTrailer) this.inner.end();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.inner.destroy();
    callback(error);
  }
}
