/**
 * A blob body that survives a broken connection: when the body fails (reset, cut short of its
 * Content-Length, stalled past the timeout) it asks for the rest again from the byte it
 * stopped at, and carries on as one unbroken stream. It sits *below* the digest verifier, so the verifier, the inflater
 * and the flattener see every byte exactly once and never notice (DESIGN.md §4: resume
 * without losing the hash state).
 *
 * A server that ignores `Range` answers from byte 0. Those first bytes are hashed on the
 * side and compared with a copy of the running hash of what was already passed on, then
 * discarded: if the server now serves different bytes, that is an integrity failure, not
 * something to paper over.
 *
 * What to request and when to give up are the caller's: `open(offset)` makes the request,
 * `retry.pause(error)` waits before the next try or throws to give up.
 */
import { createHash, type Hash } from 'node:crypto';
import { Readable } from 'node:stream';
import { AbortError, DigestMismatchError, NetworkError, OciRootfsError } from '../errors.js';

/** One response: its body, and the blob offset its first byte is at. */
export interface BlobPart {
  body: Readable;
  /** `offset` when the server honoured the range, 0 when it sent the whole blob. */
  start: number;
}

export interface ResumableRetry {
  /** Waits before the next try, or throws the error to fail the stream with. */
  pause(error: unknown): Promise<void>;
  /** New bytes arrived: consecutive-failure counting starts over. */
  progress(): void;
}

export interface ResumableBlobOptions {
  /** Requests the blob from `offset` (a `Range: bytes=offset-` when > 0). */
  open(offset: number, signal: AbortSignal): Promise<BlobPart>;
  retry: ResumableRetry;
  signal?: AbortSignal;
  /** What the bytes are, for error messages. */
  what?: string;
  /** A request after a failure succeeded and the stream goes on from `offset`. */
  onResume?: (offset: number, part: BlobPart) => void;
  highWaterMark?: number;
}

/**
 * A server that restarted from byte 0 ended before the bytes it was to repeat. A body that
 * ends cleanly otherwise is the end of the blob: a connection cut short of its
 * Content-Length is an error (undici's), and a blob shorter than its descriptor is for the
 * digest verifier to report, not something to request again.
 */
export class PrematureEndError extends NetworkError {
  constructor(what: string, received: number, expected: number) {
    super(`${what}: the restarted body ended after ${received} of the ${expected} bytes already read`);
  }
}

/**
 * A hash that a stage upstream already keeps over exactly the bytes it passes on, so a
 * digest check further down can take it instead of hashing every byte a second time.
 */
export interface UpstreamHash {
  /** `sha256`. */
  readonly hashAlgorithm: string;
  /** Hex digest of every byte passed on so far (read it once the stream has ended). */
  digestSoFar(): string;
}

/** The resumable blob: a Readable that also exposes the running hash it keeps anyway. */
export type ResumableBlobStream = Readable & UpstreamHash;

/**
 * Opens the blob (retrying the first request as any other) and returns the stream once the
 * first response is in, so a 404 or an auth failure rejects here rather than mid-stream.
 */
export async function openResumableBlob(options: ResumableBlobOptions): Promise<ResumableBlobStream> {
  const blob = new ResumableBlob(options);
  await blob.start();
  return blob;
}

class ResumableBlob extends Readable implements UpstreamHash {
  readonly hashAlgorithm = 'sha256';
  readonly #options: ResumableBlobOptions;
  readonly #what: string;
  /** Aborts the request in flight and any retry wait when the stream is destroyed. */
  readonly #controller = new AbortController();
  readonly #onOuterAbort: () => void;
  /**
   * Hash of every byte pushed so far: checks a server that restarts from byte 0, and is the
   * blob's digest for the verifier downstream ({@link digestSoFar}).
   */
  readonly #hash: Hash = createHash('sha256');
  #offset = 0;
  #part: BlobPart | undefined;
  #pumping = false;
  #starting = false;
  #wakeReader: (() => void) | undefined;

  constructor(options: ResumableBlobOptions) {
    super(options.highWaterMark === undefined ? {} : { highWaterMark: options.highWaterMark });
    this.#options = options;
    this.#what = options.what ?? 'blob';
    // A blob read to its end has nothing left to abort: an error now would reach no listener.
    // Neither would one before start() returned the stream: then the request is cancelled
    // and start() rejects instead.
    this.#onOuterAbort = () => {
      if (this.#starting) this.#controller.abort(options.signal?.reason);
      else if (!this.readableEnded) this.destroy(new AbortError({ cause: options.signal?.reason }));
    };
    options.signal?.addEventListener('abort', this.#onOuterAbort, { once: true });
  }

  /**
   * The running hash of every byte pushed: the digest verifier downstream takes it rather
   * than hashing the blob again (one sha256 pass over the compressed bytes, not two).
   */
  digestSoFar(): string {
    return this.#hash.copy().digest('hex');
  }

  async start(): Promise<void> {
    this.#starting = true;
    try {
      if (this.#options.signal?.aborted) throw new AbortError({ cause: this.#options.signal.reason });
      this.#part = await this.#openWithRetry();
    } catch (error) {
      this.destroy();
      throw this.#options.signal?.aborted && !(error instanceof AbortError)
        ? new AbortError({ cause: this.#options.signal.reason })
        : error;
    } finally {
      this.#starting = false;
    }
  }

  override _read(): void {
    if (this.#wakeReader !== undefined) {
      const wake = this.#wakeReader;
      this.#wakeReader = undefined;
      wake();
    } else if (!this.#pumping) {
      this.#pumping = true;
      this.#pump().catch((error: unknown) => this.destroy(error instanceof Error ? error : new Error(String(error))));
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#options.signal?.removeEventListener('abort', this.#onOuterAbort);
    this.#controller.abort();
    if (this.#part !== undefined) discard(this.#part.body);
    this.#part = undefined;
    // A pump parked on backpressure must wake to see it is over (and let go of the body).
    this.#wakeReader?.();
    this.#wakeReader = undefined;
    callback(error);
  }

  async #pump(): Promise<void> {
    for (;;) {
      const part = this.#part ?? (await this.#openWithRetry());
      this.#part = part;
      let failure: unknown;
      try {
        const repeated = await this.#consume(part);
        if (this.destroyed) return;
        if (repeated === undefined) {
          this.#part = undefined;
          this.push(null);
          return;
        }
        failure = new PrematureEndError(this.#what, repeated, this.#offset);
      } catch (error) {
        // A changed blob is final; so is anything after destroy().
        if (error instanceof DigestMismatchError || this.destroyed) throw error;
        failure = error;
      } finally {
        discard(part.body);
        this.#part = undefined;
      }
      if (this.destroyed) return;
      await this.#options.retry.pause(failure);
    }
  }

  async #openWithRetry(): Promise<BlobPart> {
    for (;;) {
      if (this.destroyed) throw new AbortError();
      try {
        const part = await this.#options.open(this.#offset, this.#controller.signal);
        if (this.destroyed) {
          discard(part.body);
          throw new AbortError();
        }
        if (part.start !== 0 && part.start !== this.#offset) {
          discard(part.body);
          throw new OciRootfsError(`${this.#what}: asked for byte ${this.#offset}, the server answered from byte ${part.start}`);
        }
        if (this.#offset > 0) this.#options.onResume?.(this.#offset, part);
        return part;
      } catch (error) {
        if (this.destroyed || this.#controller.signal.aborted) throw error;
        await this.#options.retry.pause(error);
      }
    }
  }

  /**
   * Pushes the new bytes of `part` until it ends. Returns undefined at the end of the blob,
   * or, for a restarted body that ended within the bytes it repeats, how many it repeated.
   */
  async #consume(part: BlobPart): Promise<number | undefined> {
    // Bytes this response repeats (a 200 to a Range request): check, then drop.
    let repeat = this.#offset - part.start;
    const check = repeat > 0 ? createHash('sha256') : undefined;
    for await (const chunk of part.body as AsyncIterable<Buffer>) {
      let data = chunk;
      if (repeat > 0 && check !== undefined) {
        const take = Math.min(repeat, data.length);
        check.update(data.subarray(0, take));
        repeat -= take;
        data = data.subarray(take);
        if (repeat === 0) this.#compareRepeat(check);
        if (data.length === 0) continue;
      }
      this.#hash.update(data);
      this.#offset += data.length;
      this.#options.retry.progress();
      if (!this.push(data)) {
        await new Promise<void>((resolve) => (this.#wakeReader = resolve));
        if (this.destroyed) return undefined;
      }
    }
    return repeat > 0 ? this.#offset - part.start - repeat : undefined;
  }

  #compareRepeat(check: Hash): void {
    const again = `sha256:${check.digest('hex')}`;
    const before = `sha256:${this.#hash.copy().digest('hex')}`;
    if (again !== before) {
      throw new DigestMismatchError(
        `${this.#what}: the server restarted the body from byte 0 with different bytes`,
        before,
        again,
        this.#offset,
      );
    }
  }
}

function discard(body: Readable): void {
  body.on('error', () => undefined);
  body.destroy();
}
