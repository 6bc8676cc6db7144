/**
 * The shared shape of our layer decompressors that wrap a node:zlib stream (gunzip, and
 * zstd where node:zlib has it): one Duplex in front of the zlib Transform, so that every
 * failure leaves as a {@link MalformedArchiveError}, backpressure passes through, and the
 * end of the input is checked the same way for both formats. Subclasses add what their
 * format needs on the write side (gunzip: the bytes after the last member).
 */
import { Duplex, type Transform } from 'node:stream';
import type { MalformedArchiveError } from '../errors.js';

export abstract class StrictInflater<Inner extends Transform = Transform> extends Duplex {
  /** The inner stream has ended: its output is complete. */
  private innerEnded = false;
  /** The first failure of the inner stream, already mapped. */
  protected innerError: MalformedArchiveError | undefined;

  protected constructor(protected readonly inner: Inner) {
    super();
    inner.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) inner.pause();
    });
    inner.on('end', () => {
      this.innerEnded = true;
      this.push(null);
    });
    inner.on('error', (error: Error) => {
      this.innerError ??= this.malformed(error);
      this.destroy(this.innerError);
    });
  }

  /** The inner stream's error (or a truncation) as the error this stream fails with. */
  protected abstract malformed(error: Error): MalformedArchiveError;

  /**
   * Ends the inner stream at the end of the input. A subclass that already ended it
   * (gunzip, once the last member was seen) does nothing here.
   */
  protected endInner(): void {
    this.inner.end();
  }

  /** Hands `chunk` to the inner stream; its failure is this stream's write error. */
  protected feed(chunk: Buffer, callback: (error?: Error | null) => void, after?: () => Error | null): void {
    this.inner.write(chunk, (error) => {
      if (error !== undefined && error !== null) {
        callback(this.innerError ?? this.malformed(error));
        return;
      }
      callback(after?.() ?? null);
    });
  }

  override _read(): void {
    this.inner.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.feed(chunk, callback);
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
    this.endInner();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.inner.destroy();
    callback(error);
  }
}
