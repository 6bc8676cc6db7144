/**
 * Writes tar entries, one at a time, to their final place under a root directory, without
 * ever reaching outside it. The entries come from the flattener (DESIGN.md §3), which has
 * already put every path inside the root and resolved parents through symlinks; this side
 * trusts none of it and keeps its own rules:
 * - a name with `..` is refused; every parent must be a real directory (checked with lstat
 *   once, then remembered), and a missing parent is created (the flattener may write parents
 *   after their children);
 * - new files are opened with O_CREAT|O_EXCL|O_NOFOLLOW, and an existing entry at the path is
 *   removed first (a path can come twice: the later copy wins);
 * - ownership, mode and times go through the open descriptor (fchown, fchmod, futimes) or the
 *   link itself (lchown, lutimes); chmod comes after chown, which clears setuid and setgid;
 * - directories get their mode and mtime in the finishing pass ({@link Directories}).
 *
 * Small plain files, and with the fs addon new plain directories, are written behind the
 * stream on the thread pool ({@link FileJobs}): creating an inode can take the kernel
 * milliseconds, and letting the main thread parse meanwhile is what makes a 100,000-file
 * image fast. Everything else is synchronous, in stream order, once the entry's parent is
 * on disk: short calls for which a thread-pool round trip would cost more than the call.
 */
import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  ftruncateSync,
  futimesSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeSync,
  chmodSync,
} from 'node:fs';
import { HardlinkTargetError, OciRootfsError, UnsafeEntryError } from '../errors.js';
import type { TarEntry, TarHeader } from '../streams/tar/types.js';
import { Directories, type DirectoryRecord } from './directories.js';
import { entryMtime, entryXattrs, ROOTLESS_XATTR, rootlessOwnerRecord, xattrVerdict, type UnpackPolicy } from './policy.js';
import { BodyWriter, createFileJobs } from './file-jobs.js';
import { SpecialFileError, SpecialFiles } from './special-files.js';

export interface UnpackWarning {
  code: string;
  message: string;
}

export interface TreeWriterOptions extends UnpackPolicy {
  /** Summaries of what could not be kept, once each, when the tree is finished. */
  onWarning?: (warning: UnpackWarning) => void;
  /** The helper for xattrs, device nodes and fifos (tests pass their own). */
  specialFiles?: SpecialFiles;
}

const CREATE_FILE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
const SLASH = 0x2f;
/** Files up to this size are written by {@link FileJobs}, a few at a time; larger ones inline. */
const SMALL_FILE_BYTES = 256 * 1024;
const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;

/** A count of one kind of loss, with the first example, for a one-line summary. */
class Tally {
  count = 0;
  example = '';
  add(example: () => string): void {
    if (this.count++ === 0) this.example = example();
  }
}

export class TreeWriter {
  readonly #root: Buffer;
  readonly #policy: UnpackPolicy;
  readonly #dirs = new Directories();
  readonly #jobs = createFileJobs();
  readonly #special: SpecialFiles;
  readonly #onWarning: ((warning: UnpackWarning) => void) | undefined;
  /** Files we create are ours already; chown only when the owner differs. */
  readonly #ownUid: number;
  readonly #ownGid: number;
  readonly #devicesAsFiles = new Tally();
  readonly #xattrsRootless = new Tally();
  readonly #xattrsHostSpecific = new Tally();
  readonly #xattrsUnsupported = new Tally();
  readonly #ownersNotRecorded = new Tally();
  readonly #userXattrsNotAllowed = new Tally();
  #entries = 0;

  constructor(root: string, options: TreeWriterOptions) {
    this.#root = Buffer.from(root);
    this.#policy = { rootless: options.rootless };
    this.#special = options.specialFiles ?? new SpecialFiles();
    this.#onWarning = options.onWarning;
    this.#ownUid = process.geteuid?.() ?? 0;
    this.#ownGid = process.getegid?.() ?? 0;
    this.#dirs.addImplicit('', this.#root);
  }

  /** Entries written so far. */
  get entries(): number {
    return this.#entries;
  }

  /** Writes one entry; its body is read here. */
  async write(entry: TarEntry): Promise<void> {
    const { header } = entry;
    const key = entryKey(header.name, 'entry');
    this.#jobs.throwIfFailed();
    try {
      // Nothing touches a path while a file is still being written there.
      if (this.#jobs.size > 0) await this.#jobs.settle(key);
      if (key !== '' && header.type !== 'directory' && this.#dirs.has(key)) {
        // A non-directory replaces a directory: only once no file below it is in flight.
        await this.#jobs.drain();
        this.#remove(key, this.#absolute(key));
      }
      if (key === '') {
        await this.#writeRoot(header);
      } else {
        await this.#checkParents(key, true, header.name);
        const path = this.#absolute(key);
        switch (header.type) {
          case 'file':
            await this.#writeFile(entry, key, path);
            break;
          case 'directory':
            await this.#writeDirectory(header, key, path);
            break;
          case 'symlink':
            await this.#writeSymlink(header, key, path);
            break;
          case 'link':
            await this.#writeHardlink(header, key, path);
            break;
          case 'character-device':
          case 'block-device':
            await this.#writeDevice(header, key, path);
            break;
          case 'fifo':
            await this.#writeFifo(header, key, path);
            break;
        }
      }
    } catch (error) {
      if (error instanceof OciRootfsError) throw error;
      const message = error instanceof Error ? error.message : String(error);
      throw new OciRootfsError(`cannot unpack ${JSON.stringify(header.name.toString('utf8'))}: ${message}`, { cause: error });
    }
    this.#entries++;
  }

  /** The finishing pass: directory modes and mtimes, deepest first, then the summaries. */
  async finish(): Promise<void> {
    await this.#jobs.drain();
    this.#dirs.finish();
    this.#report();
  }

  /** Waits for files in flight (whatever the outcome) and stops the helper process, if any. */
  async close(): Promise<void> {
    await this.#jobs.settleAll();
    this.#special.close();
  }

  // -------------------------------------------------------------------------------------------
  // Entry kinds

  async #writeRoot(header: TarHeader): Promise<void> {
    if (header.type !== 'directory') throw new UnsafeEntryError(`the root of the image is a ${header.type}, not a directory`);
    const record = this.#dirs.declare('', this.#root, header.mode & 0o7777, entryMtime(header));
    this.#chown(this.#root, header, true);
    await this.#replaceXattrs(record, header, '.');
  }

  async #writeFile(entry: TarEntry, key: string, path: Buffer): Promise<void> {
    const { header } = entry;
    if (this.#isSmallPlainFile(header)) {
      const chunks: Buffer[] = [];
      if (header.size > 0) for await (const chunk of entry.body()) chunks.push(chunk);
      const owner = !this.#policy.rootless && (header.uid !== this.#ownUid || header.gid !== this.#ownGid);
      await this.#jobs.add(key, {
        path,
        flags: CREATE_FILE,
        body: chunks,
        ...(owner ? { owner: { uid: header.uid, gid: header.gid } } : {}),
        mode: header.mode & 0o7777,
        mtime: entryMtime(header),
      });
      return;
    }
    await this.#settleParent(key);
    const fd = this.#create(key, path, () => openSync(path, CREATE_FILE, 0o600));
    try {
      if (header.sparse !== undefined) {
        await writeSparse(fd, entry);
        ftruncateSync(fd, header.size);
      } else if (header.size > 0) {
        const body = new BodyWriter(fd);
        try {
          for await (const chunk of entry.body()) await body.write(chunk);
        } catch (error) {
          // Never close the descriptor under a write still in flight.
          await body.flush().catch(() => undefined);
          throw error;
        }
        await body.flush();
      }
      if (!this.#policy.rootless && (header.uid !== this.#ownUid || header.gid !== this.#ownGid)) {
        fchownSync(fd, header.uid, header.gid);
      }
      await this.#setXattrs(path, header, key);
      fchmodSync(fd, header.mode & 0o7777);
      const mtime = entryMtime(header);
      futimesSync(fd, mtime, mtime);
    } finally {
      closeSync(fd);
    }
  }

  /** No xattrs to set (or owner to record), not sparse, small enough to hold: a job. */
  #isSmallPlainFile(header: TarHeader): boolean {
    if (header.size > SMALL_FILE_BYTES || header.sparse !== undefined) return false;
    return !this.#hasXattrsToSet(header);
  }

  /** Whether the entry has xattrs, or a rootless owner record: those are set here, synchronously. */
  #hasXattrsToSet(header: TarHeader): boolean {
    if (header.pax.length > 0 && entryXattrs(header).length > 0) return true;
    return this.#policy.rootless && rootlessOwnerRecord(header.uid, header.gid) !== undefined;
  }

  /**
   * Waits until the parent of `key` exists on disk: it may be a directory queued on the pool.
   * Its own parents were made before it (batches wait for the batches that make their
   * parents), so the parent is enough.
   */
  async #settleParent(key: string): Promise<void> {
    if (this.#jobs.size === 0) return;
    const slash = key.lastIndexOf('/');
    if (slash !== -1) await this.#jobs.settle(key.slice(0, slash));
  }

  async #writeDirectory(header: TarHeader, key: string, path: Buffer): Promise<void> {
    if (!this.#dirs.has(key) && this.#jobs.queuesDirectories && !this.#hasXattrsToSet(header)) {
      // Made on the pool with the files around it; the batch keeps it before its children.
      await this.#jobs.addDirectory(key, { path, ...(this.#policy.rootless ? {} : { owner: { uid: header.uid, gid: header.gid } }) });
      this.#dirs.declare(key, path, header.mode & 0o7777, entryMtime(header));
      return;
    }
    await this.#settleParent(key);
    if (!this.#dirs.has(key)) {
      try {
        mkdirSync(path, 0o700);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        // A directory over a directory merges; over anything else, it replaces it.
        if (!lstatSync(path).isDirectory()) {
          unlinkSync(path);
          mkdirSync(path, 0o700);
        }
      }
    }
    const record = this.#dirs.declare(key, path, header.mode & 0o7777, entryMtime(header));
    this.#chown(path, header, true);
    await this.#replaceXattrs(record, header, key);
  }

  async #writeSymlink(header: TarHeader, key: string, path: Buffer): Promise<void> {
    // The target is data, written as it is: absolute and `..` targets are legal in a rootfs,
    // and nothing here ever follows one.
    await this.#settleParent(key);
    this.#create(key, path, () => symlinkSync(header.linkname, path));
    this.#chown(path, header, false);
    await this.#setXattrs(path, header, key);
    const mtime = entryMtime(header);
    lutimesSync(path, mtime, mtime);
  }

  async #writeHardlink(header: TarHeader, key: string, path: Buffer): Promise<void> {
    const targetKey = entryKey(header.linkname, 'hardlink target');
    if (targetKey === '') throw new UnsafeEntryError(`${describe(header.name)}: a hardlink to the root directory`);
    if (targetKey === key) return;
    await this.#jobs.settle(targetKey);
    await this.#checkParents(targetKey, false, header.linkname);
    const target = this.#absolute(targetKey);
    const stats = lstatSync(target, { throwIfNoEntry: false });
    if (stats === undefined) {
      throw new HardlinkTargetError(`${describe(header.name)}: hardlink target ${describe(header.linkname)} does not exist`);
    }
    if (stats.isDirectory()) throw new UnsafeEntryError(`${describe(header.name)}: a hardlink to the directory ${describe(header.linkname)}`);
    // link(2) never follows a symlink at the target: a link to a symlink links the symlink.
    await this.#settleParent(key);
    this.#create(key, path, () => linkSync(target, path));
  }

  async #writeDevice(header: TarHeader, key: string, path: Buffer): Promise<void> {
    await this.#settleParent(key);
    if (!this.#policy.rootless) {
      const type = header.type === 'block-device' ? S_IFBLK : S_IFCHR;
      try {
        await this.#createSpecial(key, path, () => this.#special.mknod(path, type | (header.mode & 0o777), header.devmajor, header.devminor));
        await this.#finishSpecial(header, key, path);
        return;
      } catch (error) {
        // Root without CAP_MKNOD (in a container): do what a rootless unpack does.
        if (!(error instanceof SpecialFileError && error.code === 'EPERM')) throw error;
      }
    }
    // umoci's rootless answer: an empty regular file with the device's permissions.
    this.#devicesAsFiles.add(() => key);
    const fd = this.#create(key, path, () => openSync(path, CREATE_FILE, 0o600));
    try {
      this.#chownFd(fd, header);
      await this.#setXattrs(path, header, key);
      fchmodSync(fd, header.mode & 0o7777);
      const mtime = entryMtime(header);
      futimesSync(fd, mtime, mtime);
    } finally {
      closeSync(fd);
    }
  }

  async #writeFifo(header: TarHeader, key: string, path: Buffer): Promise<void> {
    await this.#settleParent(key);
    await this.#createSpecial(key, path, () => this.#special.mkfifo(path, header.mode & 0o777));
    await this.#finishSpecial(header, key, path);
  }

  /** Owner, xattrs, mode and times of a device node or fifo, never opened (that could block or act). */
  async #finishSpecial(header: TarHeader, key: string, path: Buffer): Promise<void> {
    this.#chown(path, header, false);
    await this.#setXattrs(path, header, key);
    // No lchmod on Linux: but `path` is the node mknod just made inside our private tree.
    chmodSync(path, header.mode & 0o7777);
    const mtime = entryMtime(header);
    lutimesSync(path, mtime, mtime);
  }

  // -------------------------------------------------------------------------------------------
  // Paths

  #absolute(key: string): Buffer {
    const rel = Buffer.from(key, 'latin1');
    const path = Buffer.allocUnsafe(this.#root.length + 1 + rel.length);
    this.#root.copy(path, 0);
    path[this.#root.length] = SLASH;
    rel.copy(path, this.#root.length + 1);
    return path;
  }

  /**
   * Every parent of `key` must be a real directory of the tree. A missing one is created
   * (0700 until the finishing pass) when `create` is set; anything else there (a symlink
   * above all) is refused, so no write can leave the tree through it.
   */
  async #checkParents(key: string, create: boolean, name: Buffer): Promise<void> {
    const last = key.lastIndexOf('/');
    if (last === -1 || this.#dirs.has(key.slice(0, last))) return;
    // Rare (a parent after its children, or a missing one): the known ones must be on disk
    // before the rest are looked at and made.
    await this.#jobs.settleAll();
    for (let slash = key.indexOf('/'); slash !== -1; slash = key.indexOf('/', slash + 1)) {
      const parent = key.slice(0, slash);
      if (this.#dirs.has(parent)) continue;
      await this.#jobs.settle(parent);
      const path = this.#absolute(parent);
      const stats = lstatSync(path, { throwIfNoEntry: false });
      if (stats === undefined && create) {
        mkdirSync(path, 0o700);
      } else if (stats === undefined || !stats.isDirectory()) {
        const what = stats === undefined ? 'does not exist' : stats.isSymbolicLink() ? 'is a symlink' : 'is not a directory';
        throw new UnsafeEntryError(`${describe(name)}: its parent ${JSON.stringify(parent)} ${what} in the unpacked tree`);
      }
      this.#dirs.addImplicit(parent, path);
    }
  }

  /**
   * Runs `make` (which creates `path` exclusively); when something is already there, removes
   * it (a later copy of a path wins) and runs `make` again. A directory that meets an existing
   * directory keeps it (its children merge).
   */
  #create<T>(key: string, path: Buffer, make: () => T): T {
    try {
      return make();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    this.#remove(key, path);
    return make();
  }

  async #createSpecial(key: string, path: Buffer, make: () => Promise<void>): Promise<void> {
    try {
      await make();
      return;
    } catch (error) {
      if (!(error instanceof SpecialFileError && error.code === 'EEXIST')) throw error;
    }
    this.#remove(key, path);
    await make();
  }

  /** Removes what is at `path`, a whole directory included (rm never follows a symlink in it). */
  #remove(key: string, path: Buffer): void {
    const stats = lstatSync(path, { throwIfNoEntry: false });
    if (stats === undefined) return;
    if (stats.isDirectory()) {
      rmSync(path, { recursive: true, force: true });
      this.#dirs.forget(key);
      return;
    }
    unlinkSync(path);
  }

  // -------------------------------------------------------------------------------------------
  // Metadata

  #chown(path: Buffer, header: TarHeader, always: boolean): void {
    if (this.#policy.rootless) return;
    if (always || header.uid !== this.#ownUid || header.gid !== this.#ownGid) lchownSync(path, header.uid, header.gid);
  }

  #chownFd(fd: number, header: TarHeader): void {
    if (this.#policy.rootless) return;
    if (header.uid !== this.#ownUid || header.gid !== this.#ownGid) fchownSync(fd, header.uid, header.gid);
  }

  /**
   * A directory that meets an existing directory keeps the directory (children merge) but
   * takes the later entry's attributes whole: xattrs of an earlier copy that it lacks go.
   */
  async #replaceXattrs(record: DirectoryRecord, header: TarHeader, key: string): Promise<void> {
    const previous = record.xattrs;
    record.xattrs = await this.#setXattrs(record.path, header, key);
    for (const name of previous) {
      if (record.xattrs.includes(name)) continue;
      try {
        await this.#special.removeXattr(record.path, Buffer.from(name, 'latin1'));
      } catch (error) {
        if (!(error instanceof SpecialFileError && error.code === 'ENODATA')) throw error;
      }
    }
  }

  /**
   * The entry's xattrs as the policy allows, plus the owner record of a rootless unpack.
   * Returns the names set (latin1).
   */
  async #setXattrs(path: Buffer, header: TarHeader, key: string): Promise<string[]> {
    const xattrs = header.pax.length === 0 ? [] : entryXattrs(header);
    const owner = this.#policy.rootless ? rootlessOwnerRecord(header.uid, header.gid) : undefined;
    if (xattrs.length === 0 && owner === undefined) return [];
    const set: string[] = [];
    for (const [name, value] of xattrs) {
      const verdict = xattrVerdict(name, this.#policy);
      if (verdict === 'rootless') {
        this.#xattrsRootless.add(() => `${name.toString('latin1')} on ${key}`);
      } else if (verdict === 'host-specific') {
        this.#xattrsHostSpecific.add(() => key);
      } else if (await this.#setXattr(path, name, value, key, this.#xattrsRootless)) {
        set.push(name.toString('latin1'));
      }
    }
    if (owner !== undefined && (await this.#setXattr(path, ROOTLESS_XATTR, owner, key, this.#ownersNotRecorded))) {
      set.push(ROOTLESS_XATTR.toString('latin1'));
    }
    return set;
  }

  /** Whether it was set; what the policy tolerates not setting is counted for the summary. */
  async #setXattr(path: Buffer, name: Buffer, value: Buffer, key: string, denied: Tally): Promise<boolean> {
    try {
      await this.#special.setXattr(path, name, value);
      return true;
    } catch (error) {
      if (!(error instanceof SpecialFileError)) throw error;
      if (error.code === 'ENOTSUP' || error.code === 'EOPNOTSUPP') {
        this.#xattrsUnsupported.add(() => `${name.toString('latin1')} on ${key}`);
      } else if (error.code === 'EPERM' && denied === this.#ownersNotRecorded) {
        denied.add(() => key);
      } else if (error.code === 'EPERM' && name.toString('latin1').startsWith('user.')) {
        // Linux keeps user.* xattrs only on regular files and directories, even for root.
        this.#userXattrsNotAllowed.add(() => `${name.toString('latin1')} on ${key}`);
      } else if (error.code === 'EPERM' && this.#policy.rootless) {
        denied.add(() => `${name.toString('latin1')} on ${key}`);
      } else {
        throw new OciRootfsError(`cannot set xattr ${name.toString('latin1')} on ${JSON.stringify(key)}: ${error.code}`, { cause: error });
      }
      return false;
    }
  }

  #report(): void {
    const warn = (code: string, tally: Tally, message: (count: number, example: string) => string): void => {
      if (tally.count > 0) this.#onWarning?.({ code, message: message(tally.count, tally.example) });
    };
    warn(
      'UNPACK_DEVICES_AS_FILES',
      this.#devicesAsFiles,
      (n, e) => `${n} device node${n === 1 ? ' was' : 's were'} created as empty regular files (creating device nodes needs privilege), e.g. ${e}`,
    );
    warn(
      'UNPACK_XATTRS_SKIPPED',
      this.#xattrsRootless,
      (n, e) => `${n} xattr${n === 1 ? ' was' : 's were'} not set: a rootless unpack cannot set security.* or trusted.* xattrs, e.g. ${e}`,
    );
    warn(
      'UNPACK_OWNERS_NOT_RECORDED',
      this.#ownersNotRecorded,
      (n, e) => `the owner of ${n} entr${n === 1 ? 'y' : 'ies'} could not be recorded in user.rootlesscontainers (symlinks and special files take no user.* xattrs), e.g. ${e}`,
    );
    warn(
      'UNPACK_XATTRS_NOT_ALLOWED',
      this.#userXattrsNotAllowed,
      (n, e) => `${n} user.* xattr${n === 1 ? ' was' : 's were'} not set: Linux allows them only on regular files and directories, e.g. ${e}`,
    );
    warn(
      'UNPACK_XATTRS_HOST_SPECIFIC',
      this.#xattrsHostSpecific,
      (n, e) => `${n} security.selinux label${n === 1 ? ' was' : 's were'} not set: they belong to the machine that built the image, e.g. on ${e}`,
    );
    warn(
      'UNPACK_XATTRS_UNSUPPORTED',
      this.#xattrsUnsupported,
      (n, e) => `${n} xattr${n === 1 ? ' was' : 's were'} not set: the file system of the target does not support them, e.g. ${e}`,
    );
  }
}

/**
 * An entry name as the key of its path below the root: `./a//b/` → `a/b`, the root itself
 * → ''. `..` is refused outright: the flattener never lets one through, so one here means
 * the stream did not come from it.
 */
export function entryKey(name: Buffer, what: string): string {
  const text = name.toString('latin1');
  // The common case, already clean: no leading `./` or `/`, no `//`, no `.` or `..` segment.
  if (text !== '' && !/(^|\/)\.{1,2}(\/|$)|\/\/|^\/|\/$/.test(text)) return text;
  const parts: string[] = [];
  for (const part of text.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') throw new UnsafeEntryError(`${what} ${describe(name)} has a ".." component`);
    parts.push(part);
  }
  return parts.join('/');
}

function describe(name: Buffer): string {
  return JSON.stringify(name.toString('utf8'));
}

function writeAll(fd: number, chunk: Buffer, position: number | null): void {
  let done = 0;
  while (done < chunk.length) {
    done += writeSync(fd, chunk, done, chunk.length - done, position === null ? null : position + done);
  }
}

/** The stored bytes of a sparse file, each segment at its offset; holes are never written. */
async function writeSparse(fd: number, entry: TarEntry): Promise<void> {
  const segments = entry.header.sparse?.segments ?? [];
  let index = 0;
  let within = 0;
  for await (const chunk of entry.storedBody()) {
    let used = 0;
    while (used < chunk.length) {
      const segment = segments[index];
      if (segment === undefined) throw new OciRootfsError(`${describe(entry.header.name)}: more sparse data than its map describes`);
      const [offset, length] = segment;
      const take = Math.min(length - within, chunk.length - used);
      writeAll(fd, chunk.subarray(used, used + take), offset + within);
      used += take;
      within += take;
      if (within === length) {
        index++;
        within = 0;
      }
    }
  }
}
