/**
 * Small regular files written concurrently. Creating a file costs a synchronous journal and
 * directory update in the kernel; on a busy or slow disk that is milliseconds per file, and
 * one file at a time would leave the disk idle between them. So small files (their bytes
 * already read off the tar stream) are created, written and closed on the thread pool, a
 * bounded number at a time, while the next entries are parsed.
 *
 * Ordering stays the tree writer's job: it waits for the job of a path before touching that
 * path again (a later duplicate, a hardlink to it, a child below it) and for all of them
 * before removing a directory or finishing the tree.
 */
import { close, fchmod, fchown, futimes, lstatSync, open, unlinkSync, write } from 'node:fs';
import { promisify } from 'node:util';
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
  body: Buffer;
  /** Absent: keep the creating user's ownership. */
  owner?: { uid: number; gid: number };
  mode: number;
  mtime: number;
}

export class FileJobs {
  readonly #byKey = new Map<string, Promise<void>>();
  #bytes = 0;
  #failure: { error: unknown } | undefined;

  readonly #write: (job: FileJob) => Promise<void>;

  /** `native`: the fs addon for one pool trip per file; by default when it loads, `null` for node:fs. */
  constructor(
    readonly maxJobs = 32,
    readonly maxBytes = 2 * 1024 * 1024,
    native: NativeFsBinding | null = loadNativeFs() ?? null,
  ) {
    this.#write = native === null ? writeFile : (job) => writeFileNative(native, job);
  }

  get size(): number {
    return this.#byKey.size;
  }

  has(key: string): boolean {
    return this.#byKey.has(key);
  }

  /** Throws the first failure of a job, once one happened. */
  throwIfFailed(): void {
    if (this.#failure !== undefined) throw this.#failure.error;
  }

  /** Resolves when no job for `key` is in flight (never rejects: failures surface in throwIfFailed). */
  async settle(key: string): Promise<void> {
    const job = this.#byKey.get(key);
    if (job !== undefined) await job;
  }

  /** Resolves when every job has ended, then throws the first failure, if any. */
  async drain(): Promise<void> {
    await this.settleAll();
    this.throwIfFailed();
  }

  /** Resolves when every job has ended; never rejects. */
  async settleAll(): Promise<void> {
    while (this.#byKey.size > 0) await Promise.all(this.#byKey.values());
  }

  /** Starts writing `job` at `key` once the window has room. */
  async add(key: string, job: FileJob): Promise<void> {
    this.throwIfFailed();
    const bytes = job.body.length;
    while (this.#byKey.size >= this.maxJobs || (this.#byKey.size > 0 && this.#bytes + bytes > this.maxBytes)) {
      await Promise.race(this.#byKey.values());
    }
    this.throwIfFailed();
    this.#bytes += bytes;
    const running: Promise<void> = this.#write(job)
      .catch((error: unknown) => {
        const name = JSON.stringify(Buffer.from(key, 'latin1').toString('utf8'));
        const message = error instanceof Error ? error.message : String(error);
        this.#failure ??= { error: new OciRootfsError(`cannot unpack ${name}: ${message}`, { cause: error }) };
      })
      .finally(() => {
        this.#bytes -= bytes;
        if (this.#byKey.get(key) === running) this.#byKey.delete(key);
      });
    this.#byKey.set(key, running);
  }
}

/** {@link writeFile} as one call of the fs addon: one thread-pool trip instead of six. */
async function writeFileNative(native: NativeFsBinding, job: FileJob): Promise<void> {
  const once = (): Promise<void> =>
    new Promise((resolve, reject) => {
      native.writeFile(job.path, job.flags, job.body, job.owner?.uid ?? -1, job.owner?.gid ?? 0, job.mode, job.mtime, (error) =>
        error === null ? resolve() : reject(error),
      );
    });
  try {
    await once();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || (error as NodeJS.ErrnoException).syscall !== 'open') throw error;
    // As in writeFile: a later copy of a path wins over a file, link or node.
    if (lstatSync(job.path).isDirectory()) throw error;
    unlinkSync(job.path);
    await once();
  }
}

async function writeFile(job: FileJob): Promise<void> {
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
    for (let done = 0; done < job.body.length; ) {
      const { bytesWritten } = await writeAsync(fd, job.body, done, job.body.length - done, null);
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
