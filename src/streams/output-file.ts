/**
 * Where the rootfs bytes end: a file that appears only when complete, or stdout
 * (DESIGN.md §3 last rule, §5). A failed pull must never look like a finished one.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { getSystemErrorMap } from 'node:util';
import { OciRootfsError, UsageError } from '../errors.js';
import { ByteMeter } from './byte-meter.js';

/**
 * What a file stream takes in while a write is on the thread pool: the next write then hands
 * all of it over in one writev(2). Every write is a pool round trip, and at the 16 KiB default
 * each output chunk was one (10,000 for a 1 GB rootfs).
 */
const WRITE_BATCH = 1024 * 1024;

export interface WriteOutputOptions {
  /** Aborting stops the copy, destroys `source`, and (for a file) removes the partial file. */
  signal?: AbortSignal;
}

export interface WriteOutputResult {
  /** Bytes written to the file or handed to stdout. */
  bytes: number;
}

/**
 * Copies `source` to `path` so that `path` only ever holds a complete output: the bytes go
 * to `.<base>.<random>.partial` in the same directory (same filesystem, so the rename is
 * atomic), are fsynced, then renamed over `path`. On any error or abort the temporary file
 * is removed, an existing `path` is left as it was, and the promise rejects with the
 * original error (errors of the file itself are wrapped to name `path`, not the temp name).
 *
 * @example
 * ```ts
 * const { bytes } = await writeAtomically(pullRootfs('alpine:3.20'), 'alpine.tar');
 * ```
 */
export async function writeAtomically(
  source: Readable,
  path: string,
  options: WriteOutputOptions = {},
): Promise<WriteOutputResult> {
  const { signal } = options;
  const target = resolve(path);
  const temp = join(dirname(target), `.${basename(target)}.${randomBytes(6).toString('hex')}.partial`);

  const meter = new ByteMeter();
  // 'wx': never write into a file someone else made, even under a random name. `flush`
  // fsyncs before the stream closes, and pipeline() waits for that close.
  const file = createWriteStream(temp, { flags: 'wx', flush: true, highWaterMark: WRITE_BATCH });
  // pipeline() destroys every stage with the first error, so the file stream also emits
  // errors that came from `source` or the signal. Only one the file raised first is ours
  // to reword ("cannot write PATH"); the others must reach the caller as they were.
  let fileFailure: unknown;
  let otherFailure = source.errored !== null || source.destroyed;
  const onFileError = (error: unknown): void => {
    if (!otherFailure && signal?.aborted !== true) fileFailure = error;
  };
  const onSourceError = (): void => {
    if (fileFailure === undefined) otherFailure = true;
  };
  file.once('error', onFileError);
  source.once('error', onSourceError);
  try {
    await pipeline(source, meter, file, signal === undefined ? {} : { signal });
    await renameOver(temp, path, target, signal);
  } catch (error) {
    // Wait for the descriptor to close: Windows cannot delete a file that is still open.
    if (!file.closed) await new Promise<void>((resolve) => file.once('close', () => resolve()));
    await rm(temp, { force: true, maxRetries: 3 }).catch(() => undefined);
    throw error === fileFailure ? fileError(path, error) : error;
  } finally {
    source.off('error', onSourceError);
  }
  await syncDirectory(dirname(target));
  return { bytes: meter.bytes };
}

/**
 * A file output that appears only when complete and that a pull can start over
 * (DESIGN.md §3: each path once, a damaged layer fetched again): every {@link open} empties the
 * temporary file `.<base>.<random>.partial` beside `path` and returns a stream that writes it
 * from the start; {@link commit} renames the last attempt over `path`; {@link discard}
 * removes the temporary file (call it in a `finally`: after a commit it does nothing).
 * It is the `RestartableOutput` that `pullRootfs$` takes.
 *
 * @example
 * ```ts
 * const file = createAtomicFile('alpine.tar');
 * try {
 *   await lastValueFrom(pullRootfs$('alpine:3.20', { output: file }));
 *   await file.commit();
 * } finally {
 *   await file.discard();
 * }
 * ```
 */
export interface AtomicFile {
  /** The stream of attempt `attempt` (0 first): an empty file, whatever earlier attempts wrote. */
  open(attempt: number): Promise<Writable>;
  /** Renames the finished last attempt over `path` (durably); resolves to its size. */
  commit(): Promise<WriteOutputResult>;
  /** Removes the temporary file, unless it was committed. */
  discard(): Promise<void>;
}

export function createAtomicFile(path: string, options: WriteOutputOptions = {}): AtomicFile {
  const target = resolve(path);
  const temp = join(dirname(target), `.${basename(target)}.${randomBytes(6).toString('hex')}.partial`);
  let current: WriteStream | undefined;
  let committed = false;
  /** Waits until no descriptor of an earlier attempt is open, so no late write lands in the next. */
  const closed = async (): Promise<void> => {
    const stream = current;
    if (stream === undefined || stream.closed) return;
    if (!stream.destroyed && !stream.writableFinished) stream.destroy();
    await new Promise<void>((done) => stream.once('close', () => done()));
  };
  return {
    async open(attempt: number): Promise<Writable> {
      await closed();
      // 'wx' first: never write into a file someone else made, even under a random name;
      // then 'w', which empties our own. `flush` fsyncs before the stream closes.
      const stream = createWriteStream(temp, {
        flags: current === undefined && attempt === 0 ? 'wx' : 'w',
        flush: true,
        highWaterMark: WRITE_BATCH,
      });
      current = stream;
      return stream;
    },
    async commit(): Promise<WriteOutputResult> {
      const stream = current;
      if (stream === undefined || !stream.writableFinished) throw new OciRootfsError(`cannot commit ${path}: the output is not complete`);
      await closed();
      await renameOver(temp, path, target, options.signal);
      committed = true;
      await syncDirectory(dirname(target));
      return { bytes: stream.bytesWritten };
    },
    async discard(): Promise<void> {
      if (committed) return;
      await closed();
      await rm(temp, { force: true, maxRetries: 3 }).catch(() => undefined);
    },
  };
}

/**
 * rename(2) replaces an existing target atomically on POSIX, and on Windows node uses
 * MoveFileEx(MOVEFILE_REPLACE_EXISTING); there the target may be briefly held open by an
 * indexer or virus scanner, which shows as EPERM/EBUSY/EACCES and goes away. So retry
 * those for about 1.5 s in total (as graceful-fs does, for less long) before giving up.
 */
const RENAME_RETRY_CODES = new Set(['EPERM', 'EBUSY', 'EACCES']);
const RENAME_DELAYS_MS = [25, 50, 100, 200, 400, 800];

async function renameOver(
  temp: string,
  path: string,
  target: string,
  signal: AbortSignal | undefined,
): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await rename(temp, target);
      return;
    } catch (error) {
      const delay = RENAME_DELAYS_MS[attempt];
      if (delay === undefined || !RENAME_RETRY_CODES.has(errorCode(error) ?? '')) {
        throw fileError(path, error);
      }
      await sleep(delay, undefined, signal === undefined ? {} : { signal });
    }
  }
}

/**
 * Makes the rename itself durable on POSIX. Best effort: Windows cannot open a directory
 * this way and some filesystems refuse fsync on one; the file's own data is already synced.
 */
async function syncDirectory(directory: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(directory, 'r');
    await handle.sync();
  } catch {
    // Nothing to do: see above.
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

/** The stdout of a process, or anything shaped like it (tests pass a PassThrough). */
export type StdoutLike = Writable & { isTTY?: boolean | undefined };

export interface WriteToStdoutOptions extends WriteOutputOptions {
  /** `process.stdout` unless given. */
  stdout?: StdoutLike;
}

export const TERMINAL_REFUSAL =
  'refusing to write a tar archive to a terminal; write to a file or redirect stdout';

/**
 * Copies `source` to stdout without ever ending or destroying stdout. If `source` fails,
 * the bytes written so far stay and nothing more is written: the tar end-of-archive marker
 * (or the gzip trailer) never comes, so `tar -x` reports a truncated archive, and the
 * promise rejects so the exit code is non-zero (DESIGN.md §3). A reader that goes away
 * (EPIPE) stops the pull and rejects with an error saying so.
 *
 * Callers writing to `process.stdout` should keep an `'error'` listener on it for the life
 * of the process (the CLI does): a write queued before a failure can still report EPIPE
 * after this promise settled, and an unheard stream error would crash the process.
 *
 * @example
 * ```ts
 * process.stdout.on('error', () => {});
 * await writeToStdout(pullRootfs('alpine:3.20')); // refuses a terminal: redirect stdout
 * ```
 */
export async function writeToStdout(
  source: Readable,
  options: WriteToStdoutOptions = {},
): Promise<WriteOutputResult> {
  const { signal, stdout = process.stdout } = options;
  if (stdout.isTTY === true) {
    source.destroy();
    throw new UsageError(TERMINAL_REFUSAL);
  }

  // stdout is not a stage of the pipeline (pipeline would end or destroy it), so its
  // errors reach the pipeline through this signal.
  const stdoutFailed = new AbortController();
  let stdoutError: Error | undefined;
  const onStdoutError = (error: Error): void => {
    stdoutError ??= error;
    stdoutFailed.abort(error);
  };
  stdout.on('error', onStdoutError);

  let bytes = 0;
  try {
    await pipeline(
      source,
      // pipeline always passes its own signal (aborted when any stage fails), so a source
      // error ends a wait for 'drain' on a stalled reader; @types/node does not declare it.
      async (chunks: AsyncIterable<Buffer>, stage?: { signal: AbortSignal }) => {
        for await (const chunk of chunks) {
          bytes += chunk.length;
          if (!stdout.write(chunk)) await once(stdout, 'drain', stage);
        }
        await flushed(stdout);
      },
      { signal: signal === undefined ? stdoutFailed.signal : AbortSignal.any([signal, stdoutFailed.signal]) },
    );
  } catch (error) {
    if (stdoutError !== undefined) throw stdoutFailure(stdoutError);
    throw error;
  } finally {
    stdout.off('error', onStdoutError);
  }
  return { bytes };
}

/** Resolves once every earlier write reached the OS; writes complete in order. */
function flushed(stdout: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    stdout.write(new Uint8Array(0), (error) => (error ? reject(error) : resolve()));
  });
}

function stdoutFailure(error: Error): OciRootfsError {
  if (errorCode(error) === 'EPIPE') {
    return new OciRootfsError('stdout was closed before the archive was complete', { cause: error });
  }
  return new OciRootfsError(`cannot write to stdout: ${describe(error)}`, { cause: error });
}

/** An error of the output file, named by the path the user gave rather than the temp name. */
function fileError(path: string, error: unknown): OciRootfsError {
  return new OciRootfsError(`cannot write ${path}: ${describe(error)}`, { cause: error });
}

/** "permission denied (EACCES)" for a system error, else the message. */
function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const errno = (error as NodeJS.ErrnoException).errno;
  const entry = errno === undefined ? undefined : getSystemErrorMap().get(errno);
  return entry === undefined ? error.message : `${entry[1]} (${entry[0]})`;
}

function errorCode(error: unknown): string | undefined {
  return error instanceof Error ? (error as NodeJS.ErrnoException).code : undefined;
}
