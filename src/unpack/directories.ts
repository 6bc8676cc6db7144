/**
 * The directories of an unpack: which exist (so a parent is checked on disk once, not per
 * entry), and the mode and mtime each must end with. Both are applied only in the finishing
 * pass, deepest first: while the tree is built every directory stays 0700, so a 0555
 * directory still receives its files (rootless, too), and no later child bumps a parent's
 * mtime after it was set.
 */
import { closeSync, constants, fchmodSync, futimesSync, openSync } from 'node:fs';

export interface DirectoryRecord {
  /** Absolute path, as bytes. */
  readonly path: Buffer;
  mode: number;
  mtime: number;
  /** False for a parent we created because a child came first; its entry may follow. */
  declared: boolean;
  /** The xattrs its entry set (latin1 names): a later copy of the entry removes those it lacks. */
  xattrs: string[];
}

/** Directories the flattener never declares get what it would write for them (DESIGN.md §3). */
const IMPLICIT_MODE = 0o755;

export class Directories {
  /** Keyed by the path relative to the root, as latin1 ('' is the root itself). */
  readonly #records = new Map<string, DirectoryRecord>();

  has(key: string): boolean {
    return this.#records.has(key);
  }

  get(key: string): DirectoryRecord | undefined {
    return this.#records.get(key);
  }

  /** A directory that exists on disk now; its entry may set mode and mtime later. */
  addImplicit(key: string, path: Buffer): DirectoryRecord {
    const record: DirectoryRecord = { path: unpooled(path), mode: IMPLICIT_MODE, mtime: 0, declared: false, xattrs: [] };
    this.#records.set(key, record);
    return record;
  }

  declare(key: string, path: Buffer, mode: number, mtime: number): DirectoryRecord {
    const record = this.#records.get(key) ?? this.addImplicit(key, path);
    record.mode = mode;
    record.mtime = mtime;
    record.declared = true;
    return record;
  }

  /** The directory at `key` was removed (replaced by another entry): forget it and below. */
  forget(key: string): void {
    if (!this.#records.delete(key)) return;
    const prefix = `${key}/`;
    for (const other of this.#records.keys()) if (other.startsWith(prefix)) this.#records.delete(other);
  }

  /**
   * Gives every directory its mode and mtime (atime = mtime), deepest first. Each is opened
   * with O_NOFOLLOW|O_DIRECTORY and changed through its descriptor, so nothing outside the
   * tree can be reached even if the tree were changed under us.
   */
  finish(): void {
    const records = [...this.#records.entries()].sort((a, b) => depth(b[0]) - depth(a[0]));
    for (const [, record] of records) {
      const fd = openSync(record.path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
      try {
        fchmodSync(fd, record.mode);
        futimesSync(fd, record.mtime, record.mtime);
      } finally {
        closeSync(fd);
      }
    }
  }
}

/**
 * A copy with its own memory: a small Buffer is a slice of a shared 8 KiB pool, and a record
 * kept to the end would keep its whole pool alive (15,000 directories, 120 MiB).
 */
function unpooled(path: Buffer): Buffer {
  const copy = Buffer.allocUnsafeSlow(path.length);
  path.copy(copy);
  return copy;
}

function depth(key: string): number {
  if (key === '') return 0;
  let slashes = 1;
  for (let i = key.indexOf('/'); i !== -1; i = key.indexOf('/', i + 1)) slashes++;
  return slashes;
}
