/**
 * Counts the bytes that pass through, for `progress` events and the `done` totals
 * (DESIGN.md §6), without touching them.
 */
import { Transform, type TransformCallback } from 'node:stream';

export interface ByteMeterOptions {
  /**
   * Called with the running total at most once per `intervalMs`, and once more with the
   * final total when the stream ends, so a listener always sees the last count.
   */
  onProgress?: (bytes: number) => void;
  /** Minimum time between two `onProgress` calls; 250 ms when absent. */
  intervalMs?: number;
}

/** A PassThrough that knows how many bytes went through it. */
export class ByteMeter extends Transform {
  #bytes = 0;
  #lastReport = Number.NEGATIVE_INFINITY;
  #lastReportedBytes = -1;
  readonly #onProgress: ((bytes: number) => void) | undefined;
  readonly #intervalMs: number;

  constructor(options: ByteMeterOptions = {}) {
    super();
    this.#onProgress = options.onProgress;
    this.#intervalMs = options.intervalMs ?? 250;
  }

  /** Bytes passed through so far. */
  get bytes(): number {
    return this.#bytes;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#bytes += chunk.length;
    if (this.#onProgress !== undefined) {
      // performance.now() is monotonic: a wall-clock jump cannot stall or flood reports.
      const now = performance.now();
      if (now - this.#lastReport >= this.#intervalMs) {
        this.#lastReport = now;
        const error = this.#report();
        if (error !== undefined) return callback(error);
      }
    }
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    callback(this.#report());
  }

  /** A throwing listener fails the stream instead of escaping from someone's write(). */
  #report(): Error | undefined {
    if (this.#onProgress === undefined || this.#bytes === this.#lastReportedBytes) return undefined;
    this.#lastReportedBytes = this.#bytes;
    try {
      this.#onProgress(this.#bytes);
      return undefined;
    } catch (error) {
      return error instanceof Error ? error : new Error(String(error));
    }
  }
}

/**
 * Shorthand for `new ByteMeter(options)`, to read like the other stream factories: a
 * pass-through that counts the bytes and reports them, throttled.
 *
 * @example
 * ```ts
 * const meter = createByteMeter({ onProgress: (bytes) => console.log(`${bytes} bytes`) });
 * await pipeline(source, meter, sink);
 * ```
 */
export function createByteMeter(options: ByteMeterOptions = {}): ByteMeter {
  return new ByteMeter(options);
}
