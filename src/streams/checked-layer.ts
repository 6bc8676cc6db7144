/**
 * A layer's stored bytes → its uncompressed tar, with the checks of DESIGN.md §3 (stored
 * digest and size, decompression, diffID), and the one question a failure raises: was the
 * blob broken, or were the bytes damaged on the way? A flipped byte in a download shows up
 * first as a gzip or tar error, long before the digest check at EOF could speak; reporting
 * it as "malformed image" (exit 8) would blame the image for the network. So when the
 * decompressor or the tar reader fails, the stored bytes are read on to their end (bounded in
 * time) and their digest decides: no match → an integrity error with the read error as its
 * cause (exit 7); a match → the content itself is malformed, as first reported.
 */
import type { Duplex } from 'node:stream';
import { addAbortSignal, PassThrough, pipeline, type Readable } from 'node:stream';
import {
  AbortError,
  DigestMismatchError,
  ExitCode,
  OciRootfsError,
  SizeMismatchError,
} from '../errors.js';
import type { DigestVerifier } from './digest-verifier.js';

export interface CheckedLayerOptions {
  /** The stored bytes (the blob body, a file). */
  raw: Readable;
  /**
   * Stages between `raw` and the decompressor (a byte meter, …), the last of which must be the
   * {@link DigestVerifier} of the stored bytes when there is one: only it can tell a damaged
   * download from a malformed blob.
   */
  stored: ReadonlyArray<NodeJS.ReadWriteStream>;
  /** Whether the last of `stored` checks the digest (else failures are reported as they are). */
  verifies: boolean;
  inflate: Duplex;
  /** The diffID check of the uncompressed bytes, when known. */
  diffId?: DigestVerifier;
  /** Aborting tears everything down. */
  signal: AbortSignal;
  /**
   * How long a failed read may go on reading the stored bytes to learn whether they match
   * their digest (default 30 s); past it, the failure is reported as it was.
   */
  checkTimeoutMs?: number;
}

/** The uncompressed tar of one layer, and how to explain a failure to read it. */
export interface CheckedLayer {
  /** Ends only after every check passed; fails with the (explained) first failure. */
  readonly tar: Readable;
  /**
   * Reading `tar` failed with `error` (the decompressor, the tar reader, or whatever the
   * consumer found wrong): reads the rest of the stored bytes and resolves to what to report,
   * an integrity error with `error` as its cause when they do not match their digest, else
   * `error`. Call it before aborting the signal. Asked twice, it answers the same.
   */
  explain(error: unknown): Promise<unknown>;
}

const DEFAULT_CHECK_TIMEOUT_MS = 30_000;

/** Wires the stages and keeps the stored bytes readable after a failure downstream. */
export function checkedLayer(options: CheckedLayerOptions): CheckedLayer {
  const { raw, inflate, diffId, signal } = options;
  const tail: Duplex = diffId ?? new PassThrough();
  const stages = options.stored;
  const storedEnd = (stages.length === 0 ? null : stages[stages.length - 1]) as Readable | null;
  // The stored stage's outcome: undefined while it runs, then null (ended, checks passed) or
  // the error it failed with.
  let storedOutcome: Error | null | undefined;
  const storedSettled: Array<() => void> = [];
  const source = addAbortSignal(signal, raw);
  const stored: Readable = storedEnd ?? source;
  const onStored = (error: Error | null | undefined): void => {
    storedOutcome = error ?? null;
    for (const wake of storedSettled.splice(0)) wake();
    if (!error) return;
    // Not while a failure is being explained: the explanation reports it.
    if (explanation !== undefined || inflate.destroyed || !isMismatch(error)) {
      inflate.destroy();
      if (explanation === undefined) tail.destroy(error);
      return;
    }
    // The inflater may hold stored bytes it has not looked at yet (it takes them in batches).
    // Let it finish them, its output going nowhere: if they fail to inflate, the report is the
    // one a failure seen first gets (the mismatch, with that failure as its cause).
    inflate.unpipe(tail);
    inflate.once('end', () => {
      if (explanation === undefined) tail.destroy(error);
    });
    inflate.resume();
    inflate.end();
  };
  if (storedEnd === null) source.once('error', (error) => onStored(error)).once('end', () => onStored(null));
  else pipeline([source, ...stages], onStored);

  // `.pipe()`, not pipeline(): a failure of the decompressor must leave the stored bytes
  // flowing, so that they can be read on to their digest.
  stored.pipe(inflate);
  if (diffId === undefined) inflate.pipe(tail);
  else inflate.pipe(diffId);
  inflate.on('error', (error) => {
    void explain(error).then((reported) => tail.destroy(reported as Error));
  });

  // A consumer that lets go of the tar early wants nothing more: close the connection and
  // free the inflater, once any explanation it asked for is done with the stored bytes.
  const teardown = (): void => {
    source.destroy();
    inflate.destroy();
  };
  tail.once('close', () => {
    if (tail.readableEnded) return;
    if (explanation === undefined) teardown();
    else void explanation.then(teardown);
  });

  let explanation: Promise<unknown> | undefined;
  const explain = (error: unknown): Promise<unknown> => {
    if (!options.verifies || !worthExplaining(error)) return Promise.resolve(error);
    explanation ??= readOnAndDecide(error);
    return explanation;
  };

  const readOnAndDecide = async (error: unknown): Promise<unknown> => {
    stored.unpipe(inflate);
    if (storedOutcome === undefined) {
      stored.on('data', () => undefined);
      stored.resume();
      const timeoutMs = options.checkTimeoutMs ?? DEFAULT_CHECK_TIMEOUT_MS;
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        storedSettled.push(resolve);
        timer = setTimeout(resolve, timeoutMs);
        signal.addEventListener('abort', () => resolve(), { once: true });
      });
      clearTimeout(timer);
    }
    const outcome = storedOutcome;
    if (outcome instanceof DigestMismatchError) {
      return new DigestMismatchError(outcome.what, outcome.expected, outcome.actual, outcome.bytes, {
        cause: error,
        reason: "corrupted in transit or in the registry's storage",
      });
    }
    if (outcome instanceof SizeMismatchError) {
      return new SizeMismatchError(outcome.what, outcome.expected, outcome.actual, { cause: error });
    }
    // The bytes matched (or could not be checked in time): the failure stands.
    return error;
  };

  return { tar: tail, explain };
}

function isMismatch(error: Error): boolean {
  return error instanceof DigestMismatchError || error instanceof SizeMismatchError;
}

/**
 * Failures that could come from damaged bytes: what the decompressor and the tar reader say
 * (malformed content, exit 8) and errors that are not ours. Not an abort, and not an
 * integrity or network failure, which already say what they are.
 */
export function worthExplaining(error: unknown): boolean {
  if (error instanceof AbortError) return false;
  if (error instanceof Error && error.name === 'AbortError') return false;
  if (error instanceof OciRootfsError) return error.exitCode === ExitCode.unsafe;
  return true;
}
