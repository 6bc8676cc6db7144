/**
 * Listings of what a pull produced, for end-to-end assertions on content rather than logs:
 *
 * - {@link listTar}: the entries of a tar, read with OUR reader (`readTar`), in archive order.
 * - {@link extractAndList}: the tree a real extractor (GNU tar or bsdtar, as root) makes of a
 *   tar, walked with node:fs; {@link listTree} walks any directory (e.g. umoci's `rootfs`).
 * - {@link diffTrees}: the differences between two tree listings, ignoring directory mtimes.
 *
 * Names are bytes: a name that is valid UTF-8 is shown as text, any other byte as `\xNN`
 * (see {@link showName}), so `bad\xff\xfe` and a unicode name both stay distinct and readable.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { readTar } from '../../src/streams/tar/reader.js';
import type { TarEntryType } from '../../src/streams/tar/types.js';

const execFileAsync = promisify(execFile);

// ---------------------------------------------------------------------------------------------
// Names

/** A name as text: UTF-8 when it is valid UTF-8, else every byte ≥ 0x80 (and `\`) as `\xNN`. */
export function showName(name: Buffer): string {
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(name);
    if (!text.includes('\\')) return text;
  } catch {
    // not UTF-8: escape below
  }
  let out = '';
  for (const byte of name) {
    out += byte >= 0x80 || byte === 0x5c ? `\\x${byte.toString(16).padStart(2, '0')}` : String.fromCharCode(byte);
  }
  return out;
}

export const sha256Hex = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

export const octalMode = (mode: number): string => (mode & 0o7777).toString(8).padStart(4, '0');

// ---------------------------------------------------------------------------------------------
// Tar listing

export type ListedType = 'file' | 'hardlink' | 'symlink' | 'dir' | 'char' | 'block' | 'fifo';

const LISTED_TYPE: Record<TarEntryType, ListedType> = {
  file: 'file',
  link: 'hardlink',
  symlink: 'symlink',
  directory: 'dir',
  'character-device': 'char',
  'block-device': 'block',
  fifo: 'fifo',
};

/** One entry of a tar as our reader sees it. */
export interface ListedEntry {
  /** {@link showName} of the path (no trailing slash). */
  path: string;
  type: ListedType;
  /** `mode & 0o7777` in octal, e.g. `'4755'`. */
  mode: string;
  uid: number;
  gid: number;
  size: number;
  /** sha256 (hex) of the body; `''` for anything but a regular file. */
  sha256: string;
  /** {@link showName} of the hardlink or symlink target; `''` for other types. */
  linkname: string;
  /** `SCHILY.xattr.NAME` PAX records: NAME → value as hex. */
  xattrs: Record<string, string>;
  /** `major,minor` for char and block devices; `''` otherwise. */
  device: string;
  mtime: number;
}

async function* once(bytes: Buffer): AsyncIterable<Uint8Array> {
  // Odd-sized chunks, so block straddling in the reader is exercised too.
  for (let offset = 0; offset < bytes.length; offset += 65_537) yield bytes.subarray(offset, offset + 65_537);
}

/** Every entry of `bytes` (an uncompressed tar), in archive order. Throws if the tar is malformed or truncated. */
export async function listTar(bytes: Buffer): Promise<ListedEntry[]> {
  const out: ListedEntry[] = [];
  for await (const entry of readTar(once(bytes))) {
    const { header } = entry;
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of entry.body()) {
      hash.update(chunk);
      size += chunk.length;
    }
    const type = LISTED_TYPE[header.type];
    const xattrs: Record<string, string> = {};
    for (const [keyBytes, value] of header.pax) {
      const key = keyBytes.toString('utf8');
      if (key.startsWith('SCHILY.xattr.')) xattrs[key.slice('SCHILY.xattr.'.length)] = value.toString('hex');
    }
    out.push({
      path: showName(header.name),
      type,
      mode: octalMode(header.mode),
      uid: header.uid,
      gid: header.gid,
      size: type === 'file' ? size : 0,
      sha256: type === 'file' ? hash.digest('hex') : '',
      linkname: type === 'hardlink' || type === 'symlink' ? showName(header.linkname) : '',
      xattrs,
      device: type === 'char' || type === 'block' ? `${header.devmajor},${header.devminor}` : '',
      mtime: header.mtime,
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Tree listing

export type TreeType = 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';

/** One path of an extracted tree. */
export interface TreeEntry {
  /** {@link showName} of the path relative to the root. */
  path: string;
  type: TreeType;
  mode: string;
  uid: number;
  gid: number;
  size: number;
  sha256: string;
  /** Symlink target ({@link showName}); `''` for other types. */
  linkname: string;
  /** For a regular file with more than one name in the tree: the first of them (sorted); else `''`. */
  hardlinkGroup: string;
  /** NAME → hex value, or `undefined` when xattrs could not be read (no getfattr). */
  xattrs: Record<string, string> | undefined;
  device: string;
  /** Whole seconds; kept for every type, ignored for directories by {@link diffTrees}. */
  mtime: number;
}

const GETFATTR = '/usr/bin/getfattr';

/** Whether extended attributes can be listed (package `attr`). */
export const canReadXattrs = (): boolean => existsSync(GETFATTR);

/**
 * The xattrs of every path under `root` that has any, from one `getfattr -R -P -h -d -m - -e hex`
 * run there; keyed by the relative path's raw bytes as latin1. getfattr prints names with
 * unprintable bytes (and `\`, whitespace) as `\ooo` octal escapes, which are undone here.
 */
async function readAllXattrs(root: string): Promise<Map<string, Record<string, string>>> {
  const { stdout } = await execFileAsync(GETFATTR, ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '.'], {
    cwd: root,
    encoding: 'buffer',
    maxBuffer: 256 * 1024 * 1024,
  });
  return parseGetfattr(stdout as unknown as Buffer);
}

/** `# file: NAME` blocks of getfattr output, keyed by NAME (unescaped, without `./`) as latin1. */
export function parseGetfattr(output: Buffer): Map<string, Record<string, string>> {
  const result = new Map<string, Record<string, string>>();
  let current: Record<string, string> | undefined;
  for (const line of output.toString('latin1').split('\n')) {
    if (line.startsWith('# file: ')) {
      const name = line
        .slice('# file: '.length)
        .replace(/\\([0-7]{3})/g, (_, digits: string) => String.fromCharCode(parseInt(digits, 8)))
        .replace(/^\.\//, '');
      current = {};
      result.set(name, current);
    } else if (current !== undefined && line.includes('=')) {
      const eq = line.indexOf('=');
      const value = line.slice(eq + 1);
      current[line.slice(0, eq)] = value.startsWith('0x') ? value.slice(2) : Buffer.from(value, 'latin1').toString('hex');
    } else if (current !== undefined && line !== '') {
      // An attribute without a value (`name` alone): empty.
      current[line] = '';
    }
  }
  return result;
}

function treeType(stats: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isFIFO(): boolean }): TreeType {
  if (stats.isFile()) return 'file';
  if (stats.isDirectory()) return 'dir';
  if (stats.isSymbolicLink()) return 'symlink';
  if (stats.isCharacterDevice()) return 'char';
  if (stats.isBlockDevice()) return 'block';
  if (stats.isFIFO()) return 'fifo';
  return 'socket';
}

/** Linux `major(rdev)`, `minor(rdev)`. */
function device(rdev: bigint): string {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return `${major},${minor}`;
}

export interface ListTreeOptions {
  /** How a regular file's content is summarised in `sha256` (default: sha256 of the whole file). */
  contentDigest?: (path: Buffer) => Promise<string>;
}

/**
 * Every path under `root` (not `root` itself), sorted by path, with hardlink groups found by
 * inode. Names are read as bytes, so non-UTF-8 names survive.
 */
export async function listTree(root: string, options: ListTreeOptions = {}): Promise<TreeEntry[]> {
  const xattrs = canReadXattrs() ? await readAllXattrs(root) : undefined;
  const entries: Array<TreeEntry & { ino: bigint }> = [];
  const walk = async (dir: Buffer, rel: Buffer | undefined): Promise<void> => {
    const names = (await readdir(dir, { encoding: 'buffer' })) as Buffer[];
    for (const name of names) {
      const full = Buffer.concat([dir, Buffer.from('/'), name]);
      const relPath = rel === undefined ? name : Buffer.concat([rel, Buffer.from('/'), name]);
      const stats = await lstat(full, { bigint: true });
      const type = treeType(stats);
      const digest =
        type !== 'file' ? '' : options.contentDigest !== undefined ? await options.contentDigest(full) : sha256Hex(await readFile(full));
      entries.push({
        path: showName(relPath),
        type,
        mode: octalMode(Number(stats.mode)),
        uid: Number(stats.uid),
        gid: Number(stats.gid),
        size: type === 'file' ? Number(stats.size) : 0,
        sha256: digest,
        linkname: type === 'symlink' ? showName((await readlink(full, { encoding: 'buffer' })) as Buffer) : '',
        hardlinkGroup: '',
        xattrs: xattrs === undefined ? undefined : (xattrs.get(relPath.toString('latin1')) ?? {}),
        device: type === 'char' || type === 'block' ? device(stats.rdev) : '',
        mtime: Number(stats.mtimeMs / 1000n),
        ino: type === 'file' && stats.nlink > 1n ? stats.ino : -1n,
      });
      if (type === 'dir') await walk(full, relPath);
    }
  };
  await walk(Buffer.from(root), undefined);
  entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const groups = new Map<bigint, string[]>();
  for (const entry of entries) {
    if (entry.ino === -1n) continue;
    const group = groups.get(entry.ino) ?? [];
    group.push(entry.path);
    groups.set(entry.ino, group);
  }
  return entries.map(({ ino, ...entry }) => {
    const group = groups.get(ino);
    // nlink > 1 only counts if more than one of the names is inside this tree.
    return group !== undefined && group.length > 1 ? { ...entry, hardlinkGroup: group[0]! } : entry;
  });
}

export type Extractor = 'gnu' | 'bsdtar';

/**
 * Extracts `tarPath` as root, keeping owners, modes and xattrs, into a fresh temp dir and lists
 * the tree. The temp dir is removed afterwards. Throws if the extractor fails (it printed
 * something on stderr and exited non-zero).
 */
export async function extractAndList(tarPath: string, tool: Extractor): Promise<TreeEntry[]> {
  const dir = await mkdtemp(join(tmpdir(), `oci-rootfs-extract-${tool}-`));
  try {
    if (tool === 'gnu') {
      await execFileAsync('tar', ['--numeric-owner', '--xattrs', "--xattrs-include=*", '-xpf', tarPath, '-C', dir]);
    } else {
      await execFileAsync('bsdtar', ['--numeric-owner', '-xpf', tarPath, '-C', dir]);
    }
    return await listTree(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The differences between two tree listings, one line per path (`''` when equal): a path on one
 * side only, or the fields that differ. Directory mtimes are ignored (extractors touch them
 * while filling the directory); a side whose xattrs are `undefined` was not read and is not
 * compared.
 */
export function diffTrees(
  a: readonly TreeEntry[],
  b: readonly TreeEntry[],
  names: [string, string] = ['a', 'b'],
): string[] {
  const byPath = (list: readonly TreeEntry[]): Map<string, TreeEntry> => new Map(list.map((e) => [e.path, e]));
  const left = byPath(a);
  const right = byPath(b);
  const paths = [...new Set([...left.keys(), ...right.keys()])].sort();
  const out: string[] = [];
  for (const path of paths) {
    const l = left.get(path);
    const r = right.get(path);
    if (l === undefined || r === undefined) {
      out.push(`${path}: only in ${l === undefined ? names[1] : names[0]}`);
      continue;
    }
    const fields: Array<keyof TreeEntry> = ['type', 'mode', 'uid', 'gid', 'size', 'sha256', 'linkname', 'hardlinkGroup', 'device'];
    if (l.type !== 'dir' || r.type !== 'dir') fields.push('mtime');
    const diffs: string[] = [];
    for (const field of fields) {
      if (l[field] !== r[field]) diffs.push(`${field} ${JSON.stringify(l[field])} != ${JSON.stringify(r[field])}`);
    }
    if (l.xattrs !== undefined && r.xattrs !== undefined && JSON.stringify(sortKeys(l.xattrs)) !== JSON.stringify(sortKeys(r.xattrs))) {
      diffs.push(`xattrs ${JSON.stringify(sortKeys(l.xattrs))} != ${JSON.stringify(sortKeys(r.xattrs))}`);
    }
    if (diffs.length > 0) out.push(`${path}: ${diffs.join('; ')} (${names[0]} vs ${names[1]})`);
  }
  return out;
}

function sortKeys(record: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(record).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)));
}

// ---------------------------------------------------------------------------------------------
// A tar listing as the tree it extracts to

/**
 * The tree an extractor makes of `entries` (one flattened archive) on an empty directory,
 * without touching a disk: later entries replace earlier ones at the same path, a hardlink
 * shares its target's inode (so it has the target's type, content and metadata). Throws when
 * a hardlink comes before its target, or an entry's parent is not a directory of the
 * archive, since an extractor would then make a different tree. Sorted by path, in the
 * {@link TreeEntry} shape, xattrs included (from PAX), ready for {@link diffTrees}.
 */
export function treeOfListing(entries: readonly ListedEntry[]): TreeEntry[] {
  interface Inode {
    entry: ListedEntry;
  }
  const paths = new Map<string, Inode>();
  for (const entry of entries) {
    // The root entry `./` describes the extraction directory itself, which a tree does not list.
    if (entry.path === '.') continue;
    if (entry.type === 'hardlink') {
      const target = paths.get(entry.linkname);
      if (target === undefined) throw new Error(`${entry.path}: hardlink to ${entry.linkname}, which is not written before it`);
      paths.set(entry.path, target);
    } else {
      const existing = paths.get(entry.path);
      if (existing?.entry.type === 'dir' && entry.type === 'dir') existing.entry = entry;
      else paths.set(entry.path, { entry });
    }
  }
  // Top-down flattening writes a higher layer's entries before the lower layer's directory that
  // holds them (extractors create such parents and fix their attributes when the entry comes),
  // so only require that every parent is a directory of the archive, in any position.
  for (const path of paths.keys()) {
    const slash = path.lastIndexOf('/');
    if (slash > 0 && paths.get(path.slice(0, slash))?.entry.type !== 'dir') {
      throw new Error(`${path}: its parent ${path.slice(0, slash)} is not a directory of the archive`);
    }
  }
  const sorted = [...paths.keys()].sort();
  const groups = new Map<Inode, string>();
  const counts = new Map<Inode, number>();
  for (const path of sorted) {
    const inode = paths.get(path)!;
    if (!groups.has(inode)) groups.set(inode, path);
    counts.set(inode, (counts.get(inode) ?? 0) + 1);
  }
  return sorted.map((path) => {
    const inode = paths.get(path)!;
    const e = inode.entry;
    const type: TreeType = e.type === 'hardlink' ? 'file' : e.type;
    return {
      path,
      type,
      mode: e.mode,
      uid: e.uid,
      gid: e.gid,
      size: e.size,
      sha256: e.sha256,
      linkname: e.type === 'symlink' ? e.linkname : '',
      hardlinkGroup: type === 'file' && (counts.get(inode) ?? 0) > 1 ? groups.get(inode)! : '',
      xattrs: e.xattrs,
      device: e.device,
      mtime: e.mtime,
    };
  });
}
