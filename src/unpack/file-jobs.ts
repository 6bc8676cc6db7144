/**
 * Small regular files and new directories written behind the stream. Creating a file costs
 * the kernel a directory update and an inode (milliseconds on a busy disk, more on an ext4
 * without a journal that skips recently deleted inodes one by one), and the main thread
 * must not wait for that while it could parse the next entries. So small files (their bytes
 * already read off the tar stream) are created, written and closed on the thread pool, a
 * bounded number at a time: with the fs addon in batches of many files and directories per
 * pool trip ({@link BatchedFileJobs}), with node:fs one file per job ({@link PooledFileJobs}).
 *
 * Ordering stays the tree writer's job: it waits for the job of a path before touching that
 * path again (a later duplicate, a hardlink to it, a child below it), for the parent of an
 * entry it writes itself, and for all of them before removing a directory or finishing the
 * tree. The batched queue adds one rule of its own: a batch waits for earlier batches that
 * make a parent of one of its entries.
 */
import { close, fchmod, fchown, futimes, lstatSync, open, unlinkSync, write } from 'node:fs';
import { getSystemErrorMap, promisify } from 'node:util';
import { OciRootfsError } from '../errors.js';
import { loadNativeFs, type NativeFsBinding } from './native-fs.js';

const openAsync = promisify(open);
const writeAsync = promisify(write);
const fchownAsync = promisify(fchown);
const fchmodAsync = promisify(fchmod);
const futimesAsync = promisify(futimes);
const closeAsync = promisify(close);

/** What one job writes: everything a small regular file needs, decided by the tree writer. */
export interface FileJob {
  path: Buffer;
  flags: number;
  /** The body as read off the stream; the queue copies it, so chunks may be slices of larger buffers. */
  body: readonly Buffer[];
  /** Absent: keep the creating user's ownership. */
  owner?: { uid: number; gid: number };
  mode: number;
  mtime: number;
}

/** A directory to create (0700; its mode and times come in the finishing pass). */
export interface DirectoryJob {
  path: Buffer;
  /** Absent: keep the creating user's ownership. */
  owner?: { uid: number; gid: number };
}

/** What the tree writer needs of the small-file queue; {@link createFileJobs} picks one. */
export interface FileJobs {
  /** Whether {@link addDirectory} may be called; otherwise the caller makes directories itself. */
  readonly queuesDirectories: boolean;
  /** Files queued or being written. */
  readonly size: number;
  has(key: string): boolean;
  /** Throws the first failure of a job, once one happened. */
  throwIfFailed(): void;
  /** Resolves when no job for `key` is in flight (never rejects: failures surface in throwIfFailed). */
  settle(key: string): Promise<void>;
  /** Resolves when every job has ended, then throws the first failure, if any. */
  drain(): Promise<void>;
  /** Resolves when every job has ended; never rejects. */
  settleAll(): Promise<void>;
  /** Queues `job` for `key` (waiting for room first). */
  add(key: string, job: FileJob): Promise<void>;
  /**
   * Queues the directory `key`: what is there already is kept when it is a directory,
   * replaced otherwise. Entries queued later below it run after it.
   */
  addDirectory(key: string, job: DirectoryJob): Promise<void>;
}

/** `native`: the fs addon (batches of files per pool trip), by default when it loads; `null` for node:fs. */
export function createFileJobs(native: NativeFsBinding | null = loadNativeFs() ?? null): FileJobs {
  return native === null ? new PooledFileJobs() : new BatchedFileJobs(native);
}

function jobFailure(key: string, error: unknown): OciRootfsError {
  const name = JSON.stringify(Buffer.from(key, 'latin1').toString('utf8'));
  const message = error instanceof Error ? error.message : String(error);
  return new OciRootfsError(`cannot unpack ${name}: ${message}`, { cause: error });
}

/** node:fs: each file is six promisified calls, a bounded number of files at a time. */
/** What both queues keep: the job of each path not yet on disk, and the first failure. */
abstract class KeyedJobs<Job> {
  protected readonly byKey = new Map<string, Job>();
  protected failure: { error: unknown } | undefined;

  get size(): number {
    return this.byKey.size;
  }

  has(key: string): boolean {
    return this.byKey.has(key);
  }

  throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure.error;
  }
}

export class PooledFileJobs extends KeyedJobs<Promise<void>> implements FileJobs {
  readonly queuesDirectories = false;
  #bytes = 0;

  constructor(
    readonly maxJobs = 32,
    readonly maxBytes = 2 * 1024 * 1024,
  ) {
    super();
  }

  async settle(key: string): Promise<void> {
    const job = this.byKey.get(key);
    if (job !== undefined) await job;
  }

  async drain(): Promise<void> {
    await this.settleAll();
    this.throwIfFailed();
  }

  async settleAll(): Promise<void> {
    while (this.byKey.size > 0) await Promise.all(this.byKey.values());
  }

  async add(key: string, job: FileJob): Promise<void> {
    this.throwIfFailed();
    // A copy: a slice would keep the whole source chunk alive while the job waits.
    const body = Buffer.concat(job.body);
    const bytes = body.length;
    while (this.byKey.size >= this.maxJobs || (this.byKey.size > 0 && this.#bytes + bytes > this.maxBytes)) {
      await Promise.race(this.byKey.values());
    }
    this.throwIfFailed();
    this.#bytes += bytes;
    const running: Promise<void> = writeFile(job, body)
      .catch((error: unknown) => {
        this.failure ??= { error: jobFailure(key, error) };
      })
      .finally(() => {
        this.#bytes -= bytes;
        if (this.byKey.get(key) === running) this.byKey.delete(key);
      });
    this.byKey.set(key, running);
  }

  addDirectory(): Promise<void> {
    throw new Error('node:fs jobs do not queue directories');
  }
}

const META_FIELDS = 9;
const KIND_FILE = 0;
const KIND_DIRECTORY = 1;
/** The syscall names of writeBatch's results, by number (native/oci_fs.c). */
const SYSCALLS = ['', 'open', 'write', 'fchown', 'fchmod', 'futimens', 'close', 'lstat', 'unlink', 'mkdir', 'lchown'];
const NO_BODY: readonly Buffer[] = [];
/** A file or a directory (which has no flags, body, mode or mtime in a batch). */
type BatchEntry = DirectoryJob & Partial<Pick<FileJob, 'flags' | 'body' | 'mode' | 'mtime'>>;

/** Entries collected for one writeBatch call; reused once its call has ended. */
class Batch {
  meta: Float64Array;
  results: Int32Array;
  paths: Buffer;
  bodies: Buffer;
  readonly keys: string[] = [];
  pathBytes = 0;
  bodyBytes = 0;
  /** Earlier batches (their `done` of that use) that create a parent of an entry here. */
  after: Array<Promise<void>> = [];
  done: Promise<void> = Promise.resolve();
  settled: () => void = () => undefined;

  constructor(
    readonly maxFiles: number,
    readonly maxBytes: number,
  ) {
    this.meta = new Float64Array(maxFiles * META_FIELDS);
    this.results = new Int32Array(maxFiles * 2);
    this.paths = Buffer.allocUnsafeSlow(64 * 1024);
    this.bodies = Buffer.allocUnsafeSlow(maxBytes);
  }

  get count(): number {
    return this.keys.length;
  }

  get full(): boolean {
    return this.count === this.maxFiles || this.bodyBytes >= this.maxBytes / 2;
  }

  /** Whether a file with this path and body size still fits; an empty batch grows for anything. */
  fits(pathLength: number, size: number): boolean {
    if (this.count === 0) return true;
    return this.count < this.maxFiles && this.pathBytes + pathLength + 1 <= this.paths.length && this.bodyBytes + size <= this.bodies.length;
  }

  start(): void {
    this.done = new Promise((resolve) => (this.settled = resolve));
  }

  push(key: string, kind: number, job: BatchEntry, size: number): void {
    if (this.pathBytes + job.path.length + 1 > this.paths.length) this.paths = Buffer.allocUnsafeSlow(job.path.length + 1);
    if (this.bodyBytes + size > this.bodies.length) this.bodies = Buffer.allocUnsafeSlow(size);
    const at = this.count * META_FIELDS;
    const meta = this.meta;
    meta[at] = job.flags ?? 0;
    meta[at + 1] = job.owner?.uid ?? -1;
    meta[at + 2] = job.owner?.gid ?? 0;
    meta[at + 3] = job.mode ?? 0;
    meta[at + 4] = job.mtime ?? 0;
    meta[at + 5] = this.pathBytes;
    meta[at + 6] = this.bodyBytes;
    meta[at + 7] = size;
    meta[at + 8] = kind;
    this.pathBytes += job.path.copy(this.paths, this.pathBytes);
    this.paths[this.pathBytes++] = 0;
    for (const chunk of job.body ?? NO_BODY) this.bodyBytes += chunk.copy(this.bodies, this.bodyBytes);
    this.keys.push(key);
  }

  /** The error of file `index`, as node:fs would have thrown it, or undefined. */
  error(index: number): NodeJS.ErrnoException | undefined {
    const errno = this.results[2 * index] ?? 0;
    if (errno === 0) return undefined;
    const syscall = SYSCALLS[this.results[2 * index + 1] ?? 0] ?? 'unknown';
    const offset = this.meta[index * META_FIELDS + 5] ?? 0;
    const path = this.paths.subarray(offset, this.paths.indexOf(0, offset)).toString('latin1');
    const [code, description] = getSystemErrorMap().get(-errno) ?? [`E${errno}`, 'unknown error'];
    return Object.assign(new Error(`${code}: ${description}, ${syscall} '${path}'`), { code, errno: -errno, syscall, path });
  }

  reset(): void {
    this.keys.length = 0;
    this.pathBytes = 0;
    this.bodyBytes = 0;
  }
}

/**
 * The fs addon: small files and new directories go in batches, one writeBatch call (one pool
 * trip) each. A trip costs the main thread tens of microseconds on a VM (futex wake-ups, an
 * async resource, a callback, a promise), about what a small file costs the kernel, so one
 * trip per file made the main thread the bottleneck; and a mkdir on the main thread stopped
 * the whole stream while the kernel looked for a free inode (milliseconds on a busy ext4).
 * Batches fill while up to `maxInFlight` are being written, and leave when full, when the
 * event loop has nothing else to run (so a slow stream never holds entries back), when one in
 * flight ends, or when a path in them is waited for.
 *
 * Order: entries of one batch run in order on one thread. Entries of different batches never
 * share a path (the tree writer settles a path before it touches it again); an entry whose
 * parent directory is created by an earlier batch still running makes its whole batch wait
 * for that one, so a directory always exists before anything is created in it.
 */
export class BatchedFileJobs extends KeyedJobs<Batch> implements FileJobs {
  readonly queuesDirectories = true;
  readonly #inFlight = new Set<Batch>();
  readonly #spare: Batch[] = [];
  #pending: Batch | undefined;
  #flushScheduled = false;

  constructor(
    readonly native: NativeFsBinding,
    readonly maxFiles = 256,
    readonly maxBytes = 1024 * 1024,
    readonly maxInFlight = 2,
  ) {
    super();
  }

  async settle(key: string): Promise<void> {
    const batch = this.byKey.get(key);
    if (batch === undefined) return;
    if (batch === this.#pending) this.#submit();
    await batch.done;
  }

  async drain(): Promise<void> {
    await this.settleAll();
    this.throwIfFailed();
  }

  async settleAll(): Promise<void> {
    if (this.#pending !== undefined) this.#submit();
    while (this.#inFlight.size > 0) await Promise.all([...this.#inFlight].map((batch) => batch.done));
  }

  async add(key: string, job: FileJob): Promise<void> {
    let size = 0;
    for (const chunk of job.body) size += chunk.length;
    await this.#queue(key, KIND_FILE, job, size);
  }

  async addDirectory(key: string, job: DirectoryJob): Promise<void> {
    await this.#queue(key, KIND_DIRECTORY, job, 0);
  }

  async #queue(key: string, kind: number, job: BatchEntry, size: number): Promise<void> {
    this.throwIfFailed();
    while (this.#pending !== undefined && !this.#pending.fits(job.path.length, size)) {
      if (this.#inFlight.size < this.maxInFlight) this.#submit();
      else await Promise.race([...this.#inFlight].map((batch) => batch.done));
    }
    this.throwIfFailed();
    const batch = (this.#pending ??= this.#newBatch());
    const slash = key.lastIndexOf('/');
    const parent = slash === -1 ? undefined : this.byKey.get(key.slice(0, slash));
    if (parent !== undefined && parent !== batch && !batch.after.includes(parent.done)) batch.after.push(parent.done);
    batch.push(key, kind, job, size);
    this.byKey.set(key, batch);
    if (batch.full && this.#inFlight.size < this.maxInFlight) {
      this.#submit();
    } else if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => {
        this.#flushScheduled = false;
        if (this.#pending !== undefined && this.#inFlight.size < this.maxInFlight) this.#submit();
      });
    }
  }

  #newBatch(): Batch {
    const batch = this.#spare.pop() ?? new Batch(this.maxFiles, this.maxBytes);
    batch.start();
    return batch;
  }

  #submit(): void {
    const batch = this.#pending;
    if (batch === undefined) return;
    this.#pending = undefined;
    this.#inFlight.add(batch);
    const run = (): void => {
      try {
        this.native.writeBatch(batch.meta.subarray(0, batch.count * META_FIELDS), batch.paths, batch.bodies, batch.results, (error) =>
          this.#ended(batch, error),
        );
      } catch (error) {
        this.#ended(batch, error as Error);
      }
    };
    const after = batch.after;
    batch.after = [];
    // `done` promises never reject.
    if (after.length === 0) run();
    else void Promise.all(after).then(run);
  }

  #ended(batch: Batch, error: Error | null): void {
    for (let index = 0; index < batch.count; index++) {
      const key = batch.keys[index] as string;
      if (this.byKey.get(key) === batch) this.byKey.delete(key);
      const failed = error ?? batch.error(index);
      if (failed !== undefined) this.failure ??= { error: jobFailure(key, failed) };
    }
    this.#inFlight.delete(batch);
    batch.reset();
    batch.settled();
    this.#spare.push(batch);
    // Group commit: what gathered meanwhile goes now.
    if (this.#pending !== undefined && this.#inFlight.size < this.maxInFlight) this.#submit();
  }
}

async function writeFile(job: FileJob, body: Buffer): Promise<void> {
  let fd: number;
  try {
    fd = await openAsync(job.path, job.flags, 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    // A later copy of a path wins. The tree writer never hands over a path that is a
    // directory (it removes those itself), so what is there is a file, link or node.
    if (lstatSync(job.path).isDirectory()) throw error;
    unlinkSync(job.path);
    fd = await openAsync(job.path, job.flags, 0o600);
  }
  try {
    for (let done = 0; done < body.length; ) {
      const { bytesWritten } = await writeAsync(fd, body, done, body.length - done, null);
      done += bytesWritten;
    }
    if (job.owner !== undefined) await fchownAsync(fd, job.owner.uid, job.owner.gid);
    // After chown, which clears setuid and setgid.
    await fchmodAsync(fd, job.mode);
    await futimesAsync(fd, job.mtime, job.mtime);
  } finally {
    await closeAsync(fd);
  }
}

/**
 * The body of a large file, written behind the stream: each chunk goes to the thread pool at
 * its offset (pwrite), up to `maxBytes` in flight, so parsing and hashing go on while the disk
 * writes, as a file output of `pull` does. Chunks are only read, never changed.
 */
export class BodyWriter {
  readonly #pending: Array<Promise<void>> = [];
  #position = 0;
  #inFlight = 0;
  #failure: { error: unknown } | undefined;

  constructor(
    readonly fd: number,
    readonly maxBytes = 1024 * 1024,
  ) {}

  async write(chunk: Buffer): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure.error;
    const position = this.#position;
    this.#position += chunk.length;
    this.#inFlight += chunk.length;
    const done = writeAt(this.fd, chunk, position)
      .catch((error: unknown) => {
        this.#failure ??= { error };
      })
      .finally(() => {
        this.#inFlight -= chunk.length;
      });
    this.#pending.push(done);
    while (this.#inFlight > this.maxBytes) await this.#pending.shift();
  }

  /** Resolves once every byte is written; throws the first failure. */
  async flush(): Promise<void> {
    await Promise.all(this.#pending.splice(0));
    if (this.#failure !== undefined) throw this.#failure.error;
  }
}

async function writeAt(fd: number, chunk: Buffer, position: number): Promise<void> {
  for (let done = 0; done < chunk.length; ) {
    const { bytesWritten } = await writeAsync(fd, chunk, done, chunk.length - done, position + done);
    done += bytesWritten;
  }
}
