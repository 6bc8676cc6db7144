/**
 * Tars written by OTHER implementations, at test time, for the differential test of our reader
 * (test/e2e/peer-tars.test.ts), and the two views we compare our pull with:
 *
 * - {@link planPeerTars} / {@link buildPeerTars}: a source tree on disk (long names, links, a fifo, a device, empty and
 *   sticky directories, non-UTF-8 names, xattrs, big ids and mtimes, sparse files), archived by
 *   GNU tar, bsdtar, Python's tarfile, busybox and Go's archive/tar in every format they write;
 *   tars Python and Go write from headers built in code; `git archive` of a small repository;
 *   plus Go's own test vectors from /usr/lib/go/src/archive/tar/testdata.
 * - {@link readWithGo}: Go's archive/tar reading a tar (test/helpers/peertar/main.go), as the
 *   entries one layer of it makes ({@link goListing}); Docker and containerd read layers with it.
 * - {@link extractWithBsdtar}: the tree libarchive extracts from a tar, as root.
 * - {@link listOurTar}: our output read back, with each entry's sparse map.
 *
 * Contents are compared by a sparse-aware fingerprint ({@link ContentFingerprint}) that the Go
 * side computes the same way, so 60 GB sparse files cost nothing to compare.
 */
import { execFile } from 'node:child_process';
import { createHash, type Hash } from 'node:crypto';
import { existsSync } from 'node:fs';
import {
  chmod,
  chown,
  copyFile,
  lchown,
  lutimes,
  mkdir,
  mkdtemp,
  open,
  rm,
  symlink,
  link,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { readTar } from '../../src/streams/tar/reader.js';
import type { TarEntry, TarHeader } from '../../src/streams/tar/types.js';
import { listTree, octalMode, showName, type ListedEntry, type ListedType, type TreeEntry } from './listing.js';

const execFileAsync = promisify(execFile);
const run = async (file: string, args: readonly string[]): Promise<void> => {
  await execFileAsync(file, args, { maxBuffer: 64 * 1024 * 1024 });
};

// ---------------------------------------------------------------------------------------------
// Content fingerprint

/** Must equal `window` in test/helpers/peertar/main.go. */
const WINDOW = 65_536;
const ZERO_WINDOW = Buffer.alloc(WINDOW);

/**
 * sha256 over, for every WINDOW-aligned block of the content that holds a non-zero byte, its
 * index (uint64 BE) and the block (zero-padded past the end), then the size (uint64 BE). Equal
 * contents give equal fingerprints whether zeros were stored as data or as holes. Bytes must
 * be given in ascending offsets; skipped ranges are zeros.
 */
export class ContentFingerprint {
  private readonly hash: Hash = createHash('sha256');
  private readonly block = Buffer.alloc(WINDOW);
  private current = -1;
  private dirty = false;

  /** `bytes` lie at `offset` of the file. */
  write(offset: number, bytes: Uint8Array): void {
    let pos = offset;
    let rest = bytes;
    while (rest.length > 0) {
      const index = Math.floor(pos / WINDOW);
      if (index !== this.current) {
        this.flush();
        this.current = index;
      }
      const at = pos % WINDOW;
      const n = Math.min(rest.length, WINDOW - at);
      const piece = rest.subarray(0, n);
      this.block.set(piece, at);
      if (!this.dirty && !Buffer.from(piece.buffer, piece.byteOffset, n).equals(ZERO_WINDOW.subarray(0, n))) this.dirty = true;
      pos += n;
      rest = rest.subarray(n);
    }
  }

  digest(size: number): string {
    this.flush();
    const tail = Buffer.alloc(8);
    tail.writeBigUInt64BE(BigInt(size));
    return this.hash.update(tail).digest('hex');
  }

  private flush(): void {
    if (this.current >= 0 && this.dirty) {
      const index = Buffer.alloc(8);
      index.writeBigUInt64BE(BigInt(this.current));
      this.hash.update(index).update(this.block);
    }
    this.block.fill(0);
    this.dirty = false;
  }
}

/** The fingerprint of a file on disk (read whole; the extracted sparse files are small). */
async function fingerprintFile(path: Buffer): Promise<string> {
  const handle = await open(path, 'r');
  try {
    const fingerprint = new ContentFingerprint();
    const buffer = Buffer.alloc(1024 * 1024);
    let offset = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset);
      if (bytesRead === 0) break;
      fingerprint.write(offset, buffer.subarray(0, bytesRead));
      offset += bytesRead;
    }
    return fingerprint.digest(offset);
  } finally {
    await handle.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Our side

/** Where the data of a sparse file lies (the shape of `TarHeader.sparse`, DESIGN.md §3). */
interface SparseLike {
  readonly segments: ReadonlyArray<readonly [number, number]>;
}

/** One entry of our output: the listing fields, the fingerprint in `sha256`, and whether it is sparse. */
export interface OurEntry extends ListedEntry {
  /** The sparse map's segments when the entry is written sparse. */
  sparse: ReadonlyArray<readonly [number, number]> | undefined;
}

const LISTED: Record<TarHeader['type'], ListedType> = {
  file: 'file',
  link: 'hardlink',
  symlink: 'symlink',
  directory: 'dir',
  'character-device': 'char',
  'block-device': 'block',
  fifo: 'fifo',
};

/** A PAX key as text, byte for byte (latin1), whether the reader gives it as bytes or as a string. */
const keyText = (key: string | Buffer): string => (typeof key === 'string' ? key : key.toString('latin1'));

async function* chunksOf(bytes: Buffer): AsyncIterable<Uint8Array> {
  for (let offset = 0; offset < bytes.length; offset += 1 << 20) yield bytes.subarray(offset, offset + (1 << 20));
}

/**
 * Every entry of `bytes` (a tar we wrote), read with our reader. A sparse entry's content is
 * fingerprinted from its map and stored bytes, never expanded.
 */
export async function listOurTar(bytes: Buffer): Promise<OurEntry[]> {
  const out: OurEntry[] = [];
  for await (const entry of readTar(chunksOf(bytes))) {
    const { header } = entry;
    const type = LISTED[header.type];
    const sparse = (header as TarHeader & { sparse?: SparseLike }).sparse;
    let fingerprint = '';
    if (type === 'file') {
      const print = new ContentFingerprint();
      const stored = (entry as TarEntry & { storedBody?: () => AsyncIterable<Buffer> }).storedBody;
      if (sparse !== undefined && stored !== undefined) {
        // The stored bytes are the segments' bytes, in order.
        let segment = 0;
        let within = 0;
        for await (let chunk of stored.call(entry)) {
          while (chunk.length > 0) {
            const current = sparse.segments[segment];
            if (current === undefined) throw new Error(`${showName(header.name)}: more stored bytes than its sparse map holds`);
            const [offset, length] = current;
            const n = Math.min(chunk.length, length - within);
            print.write(offset + within, chunk.subarray(0, n));
            within += n;
            chunk = chunk.subarray(n);
            if (within === length) {
              segment++;
              within = 0;
            }
          }
        }
      } else {
        let offset = 0;
        for await (const chunk of entry.body()) {
          print.write(offset, chunk);
          offset += chunk.length;
        }
      }
      fingerprint = print.digest(header.size);
    }
    const xattrs: Record<string, string> = {};
    for (const [key, value] of header.pax as Array<[string | Buffer, Buffer]>) {
      const text = keyText(key);
      if (text.startsWith('SCHILY.xattr.')) xattrs[text.slice('SCHILY.xattr.'.length)] = value.toString('hex');
    }
    out.push({
      path: showName(header.name),
      type,
      mode: octalMode(header.mode),
      uid: header.uid,
      gid: header.gid,
      size: type === 'file' ? header.size : 0,
      sha256: fingerprint,
      linkname: type === 'hardlink' || type === 'symlink' ? showName(header.linkname) : '',
      xattrs,
      device: type === 'char' || type === 'block' ? `${header.devmajor},${header.devminor}` : '',
      mtime: header.mtime,
      sparse: sparse?.segments,
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Go's side

const PEERTAR_SOURCE = join(dirname(fileURLToPath(import.meta.url)), 'peertar');

/** One entry as Go's archive/tar returns it (test/helpers/peertar/main.go). */
export interface GoEntry {
  /** Hex of the name bytes. */
  name: string;
  typeflag: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  linkname: string;
  devmajor: number;
  devminor: number;
  mtime: number;
  /** [name hex, value hex] of the `SCHILY.xattr.*` records. */
  xattrs: Array<[string, string]>;
  digest: string;
  /** Stored in a GNU sparse form (type `S` or `GNU.sparse.*` records). */
  sparse: boolean;
}

export interface GoView {
  file: string;
  entries: GoEntry[];
  error: string | null;
}

/** Builds the Go peer once into `dir`; returns the binary's path. */
export async function buildGoPeer(dir: string): Promise<string> {
  const binary = join(dir, 'peertar');
  await execFileAsync('go', ['build', '-o', binary, '.'], {
    cwd: PEERTAR_SOURCE,
    env: { ...process.env, GOFLAGS: '-mod=mod', GO111MODULE: 'on', GOTOOLCHAIN: 'local' },
  });
  return binary;
}

/** Go's reading of each of `files`, in order (one process for all). */
export async function readWithGo(binary: string, files: readonly string[]): Promise<GoView[]> {
  const { stdout } = await execFileAsync(binary, ['read', ...files], { maxBuffer: 256 * 1024 * 1024 });
  return stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as GoView);
}

const GO_TYPES: Record<string, ListedType | 'skip'> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  S: 'file',
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'char',
  '4': 'block',
  '5': 'dir',
  // GNU dumpdir (incremental archives): a directory, as libarchive and GNU tar extract it.
  D: 'dir',
  '6': 'fifo',
  // Dropped, as the README says: global headers, volume labels, Solaris ACLs.
  g: 'skip',
  V: 'skip',
  A: 'skip',
};

/**
 * A name as the flattener writes it: leading `/` and `./` stripped, no trailing slash; the
 * root (`.`, `./`, `/`, empty) is `.`.
 */
export function normaliseName(name: Buffer): Buffer {
  let start = 0;
  let end = name.length;
  for (;;) {
    if (name[start] === 0x2f) start++;
    else if (name[start] === 0x2e && name[start + 1] === 0x2f) start += 2;
    else break;
  }
  while (end > start && name[end - 1] === 0x2f) end--;
  const out = name.subarray(start, end);
  return out.length === 0 || (out.length === 1 && out[0] === 0x2e) ? Buffer.from('.') : out;
}

/**
 * The entries of Go's view as one layer of an image, with only the normalisations the README
 * lists: names normalised ({@link normaliseName}), global headers (and `V`, `A`) dropped,
 * implicit parents added (0755 root:root, mtime 0), a root entry `.` added when the tar has
 * none. Throws on a type the model does not know.
 */
export function goListing(view: GoView): ListedEntry[] {
  const entries: ListedEntry[] = [];
  for (const e of view.entries) {
    const mapped = GO_TYPES[e.typeflag];
    if (mapped === undefined) throw new Error(`${view.file}: Go returned type ${JSON.stringify(e.typeflag)}, unknown to the model`);
    if (mapped === 'skip') continue;
    let type = mapped;
    const rawName = Buffer.from(e.name, 'hex');
    // Go turns a v7 '\0' entry with a trailing slash into a directory, as we do.
    if (type === 'file' && (e.typeflag === '\0' || e.typeflag === '0') && rawName[rawName.length - 1] === 0x2f) type = 'dir';
    const xattrs: Record<string, string> = {};
    for (const [key, value] of e.xattrs) xattrs[Buffer.from(key, 'hex').toString('latin1')] = value;
    entries.push({
      path: showName(normaliseName(rawName)),
      type,
      mode: octalMode(e.mode),
      uid: e.uid,
      gid: e.gid,
      size: type === 'file' ? e.size : 0,
      sha256: type === 'file' ? e.digest : '',
      linkname: type === 'hardlink' ? showName(normaliseName(Buffer.from(e.linkname, 'hex'))) : type === 'symlink' ? showName(Buffer.from(e.linkname, 'hex')) : '',
      xattrs,
      device: type === 'char' || type === 'block' ? `${e.devmajor},${e.devminor}` : '',
      mtime: e.mtime,
    });
  }
  return withParentsAndRoot(entries);
}

const implicitDir = (path: string): ListedEntry => ({
  path,
  type: 'dir',
  mode: '0755',
  uid: 0,
  gid: 0,
  size: 0,
  sha256: '',
  linkname: '',
  xattrs: {},
  device: '',
  mtime: 0,
});

function withParentsAndRoot(entries: ListedEntry[]): ListedEntry[] {
  const dirs = new Set(entries.filter((e) => e.type === 'dir').map((e) => e.path));
  const added: ListedEntry[] = [];
  if (!dirs.has('.')) added.push(implicitDir('.'));
  for (const entry of entries) {
    if (entry.path === '.') continue;
    const parts = entry.path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/');
      if (!dirs.has(parent)) {
        dirs.add(parent);
        added.push(implicitDir(parent));
      }
    }
  }
  return [...added, ...entries];
}


// ---------------------------------------------------------------------------------------------
// bsdtar's side

/** What bsdtar (libarchive), as root, extracts from `tarPath`; the root itself is not listed. */
export async function extractWithBsdtar(tarPath: string, scratch: string): Promise<TreeEntry[]> {
  const dir = await mkdtemp(join(scratch, 'bsdtar-'));
  try {
    try {
      await execFileAsync('bsdtar', ['--numeric-owner', '-xpf', tarPath, '-C', dir]);
    } catch (error) {
      // libarchive warns (and exits 1) when a PAX path or linkpath is not UTF-8 and no
      // hdrcharset says so, but it still extracts the raw bytes, as Go reads them. Anything
      // else it prints is a failure of the oracle.
      const stderr = String((error as { stderr?: unknown }).stderr ?? '');
      const lines = stderr.split('\n').filter((line) => line !== '');
      const benign = /^bsdtar: ((Pathname|Linkname) can't be converted from UTF-8 to current locale\.|Error exit delayed from previous errors\.)$/;
      if (lines.length === 0 || !lines.every((line) => benign.test(line))) throw error;
    }
    return await listTree(dir, { contentDigest: fingerprintFile });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// The source tree

const T0 = 1_600_000_000;

/** The parts of the source tree; each writer archives the parts its format can hold. */
export type TreePart = 'base' | 'special' | 'long100' | 'long255' | 'names' | 'ids' | 'xattrs' | 'sparse';

const long100Name = `long100/${'a'.repeat(60)}/${'b'.repeat(60)}.txt`;
const long255Name = `long255/${'c'.repeat(120)}/${'d'.repeat(120)}/${'e'.repeat(40)}.txt`;
const longTarget = `${'t'.repeat(100)}/${'u'.repeat(50)}`;

interface Node {
  path: string | Buffer;
  kind: 'dir' | 'file' | 'symlink' | 'hardlink' | 'fifo' | 'char' | 'sparse';
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  content?: string;
  target?: string;
  xattrs?: Record<string, Buffer>;
  /** Sparse files: data pieces and the apparent size. */
  pieces?: Array<[number, string]>;
  size?: number;
}

const PARTS: Record<TreePart, Node[]> = {
  base: [
    { path: 'base', kind: 'dir', mtime: T0 },
    { path: 'base/file.txt', kind: 'file', content: 'hello, peers\n', mtime: T0 + 1 },
    { path: 'base/exec', kind: 'file', mode: 0o755, content: '#!/bin/sh\necho hi\n', mtime: T0 + 2 },
    { path: 'base/setuid', kind: 'file', mode: 0o4755, content: 'su\n', mtime: T0 + 3 },
    { path: 'base/setgid', kind: 'file', mode: 0o2711, gid: 5, content: 'wall\n', mtime: T0 + 3 },
    { path: 'base/owned', kind: 'file', mode: 0o640, uid: 1000, gid: 1000, content: 'owned\n', mtime: T0 + 4 },
    { path: 'base/empty-file', kind: 'file', content: '', mtime: T0 + 4 },
    { path: 'base/zeros', kind: 'file', content: '\0'.repeat(3 * WINDOW + 5), mtime: T0 + 4 },
    { path: 'base/sticky', kind: 'dir', mode: 0o1777, mtime: T0 + 5 },
    { path: 'base/empty', kind: 'dir', mode: 0o700, mtime: T0 + 6 },
    { path: 'base/sub', kind: 'dir', mode: 0o2775, gid: 50, mtime: T0 + 7 },
    { path: 'base/hard-a', kind: 'file', content: 'hardlinked\n', mtime: T0 + 8 },
    { path: 'base/hard-b', kind: 'hardlink', target: 'base/hard-a' },
    { path: 'base/sub/hard-c', kind: 'hardlink', target: 'base/hard-a' },
    { path: 'base/sym', kind: 'symlink', target: 'file.txt', mtime: T0 + 9 },
    { path: 'base/sym-abs', kind: 'symlink', target: '/etc/passwd', mtime: T0 + 9 },
    { path: 'base/sym-dangling', kind: 'symlink', target: '../nowhere/at/all', mtime: T0 + 9 },
  ],
  special: [
    { path: 'special', kind: 'dir', mtime: T0 },
    { path: 'special/fifo', kind: 'fifo', mode: 0o600, mtime: T0 + 10 },
    { path: 'special/null', kind: 'char', mode: 0o666, mtime: T0 + 10 },
  ],
  long100: [
    { path: 'long100', kind: 'dir', mtime: T0 },
    { path: `long100/${'a'.repeat(60)}`, kind: 'dir', mtime: T0 },
    { path: long100Name, kind: 'file', content: 'a name of 129 bytes\n', mtime: T0 + 11 },
  ],
  long255: [
    { path: 'long255', kind: 'dir', mtime: T0 },
    { path: `long255/${'c'.repeat(120)}`, kind: 'dir', mtime: T0 },
    { path: `long255/${'c'.repeat(120)}/${'d'.repeat(120)}`, kind: 'dir', mtime: T0 },
    { path: long255Name, kind: 'file', content: 'a name of 294 bytes\n', mtime: T0 + 12 },
    { path: 'long255/hardlink-to-long', kind: 'hardlink', target: long255Name },
    { path: `long255/${'f'.repeat(110)}`, kind: 'hardlink', target: long255Name },
    { path: 'long255/symlink-long', kind: 'symlink', target: longTarget, mtime: T0 + 13 },
  ],
  names: [
    { path: 'names', kind: 'dir', mtime: T0 },
    { path: 'names/h\u00e9llo w\u00f6rld \u65e5\u672c\u8a9e.txt', kind: 'file', content: 'utf-8\n', mtime: T0 + 14 },
    { path: Buffer.from('names/caf\xe9', 'latin1'), kind: 'file', content: 'latin-1\n', mtime: T0 + 14 },
    { path: Buffer.concat([Buffer.from('names/bad-'), Buffer.from([0xff, 0xfe]), Buffer.from('.bin')]), kind: 'file', content: 'not utf-8\n', mtime: T0 + 14 },
    { path: 'names/space and\ttab', kind: 'file', content: 'space\n', mtime: T0 + 14 },
  ],
  ids: [
    { path: 'ids', kind: 'dir', mtime: T0 },
    { path: 'ids/2097152', kind: 'file', uid: 2_097_152, gid: 2_097_153, content: 'just past ustar\n', mtime: T0 + 15 },
    { path: 'ids/4294967294', kind: 'file', uid: 4_294_967_294, gid: 4_294_967_294, content: 'nobody\n', mtime: T0 + 15 },
    // Past the 11 octal digits of ustar (2242), within what ext4 stores (2446).
    { path: 'ids/future', kind: 'file', content: 'year 2286\n', mtime: 10_000_000_000 },
    { path: 'ids/before-1970', kind: 'file', content: '1969\n', mtime: -86_400 },
  ],
  xattrs: [
    { path: 'xattrs', kind: 'dir', mtime: T0, xattrs: { 'user.dir': Buffer.from('on a directory') } },
    {
      path: 'xattrs/file',
      kind: 'file',
      content: 'with xattrs\n',
      mtime: T0 + 16,
      xattrs: { 'user.text': Buffer.from('hello'), 'user.binary': Buffer.from([0x00, 0xff, 0x01, 0x80]) },
    },
  ],
  sparse: [
    { path: 'sparse', kind: 'dir', mtime: T0 },
    { path: 'sparse/holey', kind: 'sparse', pieces: [[0, 'head'], [1_048_576 + 123, 'middle']], size: 3 * 1_048_576, mtime: T0 + 17 },
    { path: 'sparse/all-hole', kind: 'sparse', pieces: [], size: 1_048_576, mtime: T0 + 17 },
    { path: 'sparse/data-at-end', kind: 'sparse', pieces: [[2 * 1_048_576 - 4, 'tail']], size: 2 * 1_048_576, mtime: T0 + 17 },
  ],
};

/** Writes `parts` of the source tree under `root` (which must not exist), as root. */
export async function makeTree(root: string, parts: readonly TreePart[]): Promise<void> {
  await mkdir(root, { mode: 0o755 });
  const at = (path: string | Buffer): Buffer => Buffer.concat([Buffer.from(`${root}/`), Buffer.from(path)]);
  const nodes = parts.flatMap((part) => PARTS[part]);
  for (const node of nodes) {
    const path = at(node.path);
    switch (node.kind) {
      case 'dir':
        await mkdir(path);
        break;
      case 'file':
        await writeFile(path, node.content ?? '');
        break;
      case 'sparse': {
        const handle = await open(path, 'w');
        for (const [offset, text] of node.pieces ?? []) await handle.write(Buffer.from(text), 0, text.length, offset);
        await handle.truncate(node.size ?? 0);
        await handle.close();
        break;
      }
      case 'symlink':
        await symlink(node.target ?? '', path);
        break;
      case 'hardlink':
        await link(at(node.target ?? ''), path);
        break;
      case 'fifo':
        await run('mkfifo', [path.toString()]);
        break;
      case 'char':
        await run('mknod', [path.toString(), 'c', '1', '3']);
        break;
    }
    if (node.kind === 'hardlink') continue;
    if (node.kind === 'symlink') {
      await lchown(path, node.uid ?? 0, node.gid ?? 0);
    } else {
      await chown(path, node.uid ?? 0, node.gid ?? 0);
      await chmod(path, node.mode ?? (node.kind === 'dir' ? 0o755 : 0o644));
    }
    for (const [name, value] of Object.entries(node.xattrs ?? {})) {
      await run('setfattr', ['-n', name, '-v', `0x${value.toString('hex')}`, path.toString()]);
    }
  }
  // Times last, deepest first, so that creating children does not touch a parent's mtime.
  for (const node of [...nodes].reverse()) {
    if (node.kind === 'hardlink' || node.mtime === undefined) continue;
    const path = at(node.path);
    if (node.kind === 'symlink') await lutimes(path, node.mtime, node.mtime);
    else await utimes(path, node.mtime, node.mtime);
  }
  await utimes(root, T0 - 1, T0 - 1);
}

/** Every non-directory path of `parts`, as bytes (the `deep` layout lists only these). */
function leavesOf(parts: readonly TreePart[]): Buffer[] {
  return parts.flatMap((part) => PARTS[part]).filter((node) => node.kind !== 'dir').map((node) => Buffer.from(node.path));
}

// ---------------------------------------------------------------------------------------------
// The peer tars

export type Writer = 'GNU tar' | 'bsdtar' | 'Python tarfile' | 'busybox tar' | 'git archive' | 'Go archive/tar' | 'Go test vector';

export interface PeerTar {
  /** A readable, unique case name, e.g. `GNU tar --format=posix --sparse --sparse-version=0.1 (./ names)`. */
  name: string;
  writer: Writer;
  /** The uncompressed tar on disk. */
  file: string;
  /** How the layer is pushed; alternates, since the reader must not care. */
  compression: 'gzip' | 'none';
  /** `broken`: Go's reader_test.go expects an error (or Go's reader fails on it); we must refuse it. */
  expect: 'valid' | 'broken';
  /**
   * Written at test time by a peer: bsdtar's extraction is an oracle too. (Go's vectors are
   * judged by Go alone: some are Go-specific on purpose, e.g. invalid-go17.tar, or read
   * differently by libarchive, e.g. nil-uid.tar.)
   */
  bsdtarOracle: boolean;
  /** The writer was asked to store sparse files sparse: Go must see at least one sparse entry. */
  sparse: boolean;
  /**
   * Codes of the warning events the pull must give for a tar written at test time (each at
   * least once, and no others); none when absent.
   */
  warnings?: readonly string[];
}

/**
 * How a tar lists the parts it holds:
 * - `dot`: `-C root .` (a root entry `./` and `./`-prefixed names);
 * - `names`: the part directories by name (no root entry, no prefix);
 * - `deep`: only the non-directories, not recursing (every parent is implicit).
 */
type Layout = 'dot' | 'names' | 'deep';

const LAYOUT_LABEL: Record<Layout, string> = { dot: './ names', names: 'plain names', deep: 'leaves only' };


export const GO_TESTDATA = '/usr/lib/go/src/archive/tar/testdata';

/**
 * Go's test vectors, from reader_test.go (TestReader, TestReadTruncation, TestReadHeaderOnly)
 * and writer_test.go: `valid` ones Go reads to the end, `broken` ones it refuses (the err
 * vectors of TestReader, and writer-big*.tar, which are the first blocks of 16 GiB archives,
 * truncated). `small*.txt` are not tars; `pax-bad-hdr-large.tar.bz2` is a bzip2'd tar.
 */
export const GO_VECTORS: Record<string, 'valid' | 'broken'> = {
  'file-and-dir.tar': 'valid',
  'gnu-incremental.tar': 'valid',
  'gnu-long-nul.tar': 'valid',
  'gnu-multi-hdrs.tar': 'valid',
  'gnu-nil-sparse-data.tar': 'valid',
  'gnu-nil-sparse-hole.tar': 'valid',
  'gnu-not-utf8.tar': 'valid',
  'gnu-sparse-big.tar': 'valid',
  'gnu-utf8.tar': 'valid',
  'gnu.tar': 'valid',
  'hardlink.tar': 'valid',
  'hdr-only.tar': 'valid',
  'invalid-go17.tar': 'valid',
  'issue10968.tar': 'broken',
  'issue11169.tar': 'broken',
  'issue12435.tar': 'broken',
  'neg-size.tar': 'broken',
  'nil-uid.tar': 'valid',
  'pax-bad-hdr-file.tar': 'broken',
  'pax-bad-hdr-large.tar.bz2': 'broken',
  'pax-bad-mtime-file.tar': 'broken',
  'pax-global-records.tar': 'valid',
  'pax-multi-hdrs.tar': 'valid',
  'pax-nil-sparse-data.tar': 'valid',
  'pax-nil-sparse-hole.tar': 'valid',
  'pax-nul-path.tar': 'broken',
  'pax-nul-xattrs.tar': 'broken',
  'pax-path-hdr.tar': 'valid',
  'pax-pos-size-file.tar': 'valid',
  'pax-records.tar': 'valid',
  'pax-sparse-big.tar': 'valid',
  'pax.tar': 'valid',
  'sparse-formats.tar': 'valid',
  'star.tar': 'valid',
  'trailing-slash.tar': 'valid',
  'ustar-file-devs.tar': 'valid',
  'ustar-file-reg.tar': 'valid',
  'ustar.tar': 'valid',
  'v7.tar': 'valid',
  'writer-big-long.tar': 'broken',
  'writer-big.tar': 'broken',
  'writer.tar': 'valid',
  'xattrs.tar': 'valid',
};

/** `python3 -c` with a JSON argument. */
async function python(script: string, arg: unknown): Promise<void> {
  await execFileAsync('python3', ['-c', script, JSON.stringify(arg)]);
}

/** Python's tarfile archiving parts of the tree from disk (names as bytes via surrogateescape). */
const PY_FROM_DISK = `
import json, os, sys, tarfile
a = json.loads(sys.argv[1])
fmt = getattr(tarfile, a['format'])
os.chdir(a['root'])
with tarfile.open(a['out'], 'w', format=fmt) as tar:
    if a['layout'] == 'dot':
        tar.add('.')
    elif a['layout'] == 'names':
        for part in a['parts']:
            tar.add(part)
    else:
        for name in open(a['list'], 'rb').read().split(b'\\0'):
            if name:
                tar.add(os.fsdecode(name), recursive=False)
`;

/** Python's tarfile writing TarInfo headers built in code: every type, PAX records, a global header. */
const PY_IN_CODE = `
import io, json, sys, tarfile
a = json.loads(sys.argv[1])
fmt = getattr(tarfile, a['format'])
rich = a['format'] != 'USTAR_FORMAT'
pax = a['format'] == 'PAX_FORMAT'
kw = {'pax_headers': {'comment': 'a global header', 'PYTHON.note': 'dropped'}} if a.get('global') else {}
with tarfile.open(a['out'], 'w', format=fmt, **kw) as tar:
    def add(name, type=tarfile.REGTYPE, data=None, **fields):
        info = tarfile.TarInfo(name)
        info.type = type
        info.mtime = fields.pop('mtime', 1600000000)
        info.mode = fields.pop('mode', 0o755 if type == tarfile.DIRTYPE else 0o644)
        for key, value in fields.items():
            setattr(info, key, value)
        if data is not None:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        else:
            tar.addfile(info)
    add('py', tarfile.DIRTYPE)
    add('py/file.txt', data=b'hello from python\\n', uid=1000, gid=1000, uname='user', gname='users')
    add('py/contiguous', tarfile.CONTTYPE, data=b'a contiguous file\\n')
    add('py/old-regular', tarfile.AREGTYPE, data=b'a v7 regular file\\n')
    add('py/v7-dir/', tarfile.AREGTYPE)
    add('py/v7-dir/inside', data=b'in a v7 directory\\n')
    add('py/setuid', data=b'su\\n', mode=0o4755)
    add('py/sticky', tarfile.DIRTYPE, mode=0o1777)
    add('py/hard', tarfile.LNKTYPE, linkname='py/file.txt')
    add('py/sym', tarfile.SYMTYPE, linkname='file.txt', mode=0o777)
    add('py/fifo', tarfile.FIFOTYPE, mode=0o600)
    add('py/null', tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666)
    add('py/sda', tarfile.BLKTYPE, devmajor=8, devminor=0, mode=0o660, gid=6)
    add('py/' + 'l' * 120 + '/' + 'm' * 120, tarfile.DIRTYPE) if rich else None
    if rich:
        long = 'py/' + 'l' * 120 + '/' + 'm' * 120 + '/' + 'n' * 60 + '.txt'
        add(long, data=b'a long name\\n')
        add('py/hard-to-long', tarfile.LNKTYPE, linkname=long)
        add('py/long-symlink', tarfile.SYMTYPE, linkname='t/' * 80 + 'end', mode=0o777)
        add('py/big-ids', data=b'big ids\\n', uid=4194304, gid=4294967294)
        add('py/future', data=b'future\\n', mtime=10000000000)
        add('py/before-1970', data=b'1969\\n', mtime=-86400)
        add('py/caf\\udce9-\\udcff.bin', data=b'not utf-8\\n')
        add('py/\\u65e5\\u672c\\u8a9e.txt', data=b'utf-8\\n')
    if pax:
        info = tarfile.TarInfo('py/xattrs')
        info.pax_headers = {'SCHILY.xattr.user.py': 'from python', 'comment': 'a per-file record'}
        info.mtime = 1600000000.25
        data = b'xattrs\\n'
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
`;

/** A tar to build: what {@link planPeerTars} lists (names are known before anything is built). */
export interface PlannedTar extends Omit<PeerTar, 'file'> {
  /** Writes the tar to `file`. */
  build: (file: string, context: BuildContext) => Promise<void>;
}

interface BuildContext {
  /** The source tree holding `parts` (built once per distinct set). */
  rootFor: (parts: readonly TreePart[]) => Promise<string>;
  /** Go's Writer output directory (all Go tars are written by one run). */
  goTars: () => Promise<string>;
}

/**
 * Every case, in a fixed order, with readable unique names: the tree archived by each peer in
 * each format and layout, Python's and Go's tars of headers built in code, and Go's vectors.
 */
export function planPeerTars(): PlannedTar[] {
  const all: TreePart[] = ['base', 'special', 'long100', 'long255', 'names', 'ids', 'xattrs', 'sparse'];
  const plans: PlannedTar[] = [];
  const add = (plan: Omit<PlannedTar, 'compression'>): void => {
    plans.push({ ...plan, compression: plans.length % 2 === 0 ? 'none' : 'gzip' });
  };
  /** A tar of the source tree: `write(file, root, list)`, `list` being the NUL-separated leaves. */
  const tree = (
    name: string,
    writer: Writer,
    parts: readonly TreePart[],
    write: (file: string, root: string, list: string) => Promise<void>,
    sparse = false,
    warnings?: readonly string[],
  ): void =>
    add({
      name,
      writer,
      expect: 'valid',
      bsdtarOracle: true,
      sparse,
      ...(warnings === undefined ? {} : { warnings }),
      build: async (file, context) => {
        const root = await context.rootFor(parts);
        const list = `${file}.list`;
        await writeFile(list, Buffer.concat(leavesOf(parts).flatMap((leaf) => [leaf, Buffer.from([0])])));
        await write(file, root, list);
      },
    });

  // GNU tar: every format in every layout.
  const gnuParts: Record<string, TreePart[]> = {
    gnu: ['base', 'special', 'long100', 'long255', 'names', 'ids', 'sparse'],
    oldgnu: ['base', 'special', 'long100', 'long255', 'names', 'ids', 'sparse'],
    v7: ['base', 'names'],
    ustar: ['base', 'special', 'long100', 'names', 'sparse'],
    posix: all,
  };
  const gnuLayout = (layout: Layout, parts: readonly TreePart[], list: string): string[] =>
    layout === 'dot' ? ['.'] : layout === 'names' ? [...parts] : ['--no-recursion', '--null', '-T', list];
  for (const format of ['gnu', 'oldgnu', 'v7', 'ustar', 'posix'] as const) {
    const parts = gnuParts[format]!;
    const extra = format === 'posix' ? ['--xattrs', '--xattrs-include=user.*'] : [];
    for (const layout of ['dot', 'names', 'deep'] as const) {
      tree(`GNU tar --format=${format}${extra.length > 0 ? ' --xattrs' : ''} (${LAYOUT_LABEL[layout]})`, 'GNU tar', parts, (file, root, list) =>
        run('tar', ['-cf', file, `--format=${format}`, ...extra, '-C', root, ...gnuLayout(layout, parts, list)]),
      );
    }
  }
  // GNU tar: sparse files in every format that has them.
  for (const [format, version] of [
    ['gnu', undefined],
    ['oldgnu', undefined],
    ['posix', undefined],
    ['posix', '0.0'],
    ['posix', '0.1'],
    ['posix', '1.0'],
  ] as const) {
    const versionArgs = version === undefined ? [] : [`--sparse-version=${version}`];
    tree(
      `GNU tar --format=${format} --sparse${version === undefined ? '' : ` --sparse-version=${version}`}`,
      'GNU tar',
      ['base', 'sparse'],
      (file, root) => run('tar', ['-cf', file, `--format=${format}`, '--sparse', ...versionArgs, '-C', root, '.']),
      true,
    );
  }
  tree('GNU tar --format=gnu --listed-incremental (dumpdir entries)', 'GNU tar', ['base', 'names'], (file, root) =>
    run('tar', ['-cf', file, '--format=gnu', `--listed-incremental=${file}.snar`, '-C', root, '.']),
  );
  tree('GNU tar --format=posix --pax-option with a global header and per-file records', 'GNU tar', ['base', 'long255'], (file, root) =>
    run('tar', ['-cf', file, '--format=posix', '--pax-option=comment=a global note,note:=per file', '-C', root, 'base', 'long255']),
  );
  for (const format of ['gnu', 'posix'] as const) {
    tree(`GNU tar --format=${format} -P with absolute names`, 'GNU tar', ['base', 'long255'], (file, root) =>
      run('tar', ['-cf', file, `--format=${format}`, '-P', '--transform=s,^,/,', '-C', root, 'base', 'long255']),
    );
  }
  tree(
    'GNU tar --format=gnu --label (a volume header entry, V)',
    'GNU tar',
    ['base'],
    (file, root) => run('tar', ['-cf', file, '--format=gnu', '--label=peer volume', '-C', root, 'base']),
    false,
    ['TAR_SKIPPED_ENTRY'],
  );
  tree('GNU tar --format=posix --label (a global header)', 'GNU tar', ['base'], (file, root) =>
    run('tar', ['-cf', file, '--format=posix', '--label=peer volume', '-C', root, 'base']),
  );
  tree(
    'GNU tar --format=gnu with a path archived twice (the later copy wins)',
    'GNU tar',
    ['base'],
    (file, root) =>
      run('tar', ['-cf', file, '--format=gnu', '--transform=s,^base/exec$,base/file.txt,', '-C', root, 'base/file.txt', 'base/exec', 'base/owned']),
    false,
    ['DUPLICATE_PATH'],
  );
  tree('GNU tar --format=gnu --hard-dereference -b 1 (no record padding)', 'GNU tar', ['base', 'special', 'long100'], (file, root) =>
    run('tar', ['-cf', file, '--format=gnu', '--hard-dereference', '-b', '1', '-C', root, '.']),
  );
  tree('GNU tar --format=posix --sort=name --mtime=@0 --owner=0 --group=0 (reproducible)', 'GNU tar', ['base', 'names', 'ids'], (file, root) =>
    run('tar', [
      '-cf',
      file,
      '--format=posix',
      '--sort=name',
      '--mtime=@0',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '--pax-option=delete=atime,delete=ctime',
      '-C',
      root,
      '.',
    ]),
  );

  // bsdtar: every format in every layout; pax keeps xattrs and sparse files by default.
  const bsdParts: Record<string, TreePart[]> = {
    ustar: ['base', 'special', 'long100', 'names'],
    pax: all,
    paxr: all,
    gnutar: ['base', 'special', 'long100', 'long255', 'names', 'ids'],
    v7tar: ['base', 'names'],
  };
  const bsdLayout = (layout: Layout, parts: readonly TreePart[], list: string): string[] =>
    layout === 'dot' ? ['.'] : layout === 'names' ? [...parts] : ['-n', '--null', '-T', list];
  for (const format of ['ustar', 'pax', 'paxr', 'gnutar', 'v7tar'] as const) {
    const parts = bsdParts[format]!;
    for (const layout of ['dot', 'names', 'deep'] as const) {
      tree(
        `bsdtar --format ${format} (${LAYOUT_LABEL[layout]})`,
        'bsdtar',
        parts,
        (file, root, list) => run('bsdtar', ['-cf', file, '--format', format, '-C', root, ...bsdLayout(layout, parts, list)]),
        parts.includes('sparse'),
      );
    }
  }
  tree('bsdtar --format pax --options hdrcharset=BINARY', 'bsdtar', ['base', 'names', 'long255'], (file, root) =>
    run('bsdtar', ['-cf', file, '--format', 'pax', '--options', 'hdrcharset=BINARY', '-C', root, '.']),
  );
  tree('bsdtar --format pax --options xattrheader=SCHILY', 'bsdtar', ['base', 'xattrs'], (file, root) =>
    run('bsdtar', ['-cf', file, '--format', 'pax', '--options', 'xattrheader=SCHILY', '-C', root, '.']),
  );

  // Python's tarfile from disk.
  for (const format of ['USTAR_FORMAT', 'GNU_FORMAT', 'PAX_FORMAT'] as const) {
    const parts: TreePart[] = format === 'USTAR_FORMAT' ? ['base', 'special', 'long100', 'names'] : ['base', 'special', 'long100', 'long255', 'names', 'ids'];
    for (const layout of ['dot', 'names', 'deep'] as const) {
      tree(`Python tarfile ${format} from disk (${LAYOUT_LABEL[layout]})`, 'Python tarfile', parts, (file, root, list) =>
        python(PY_FROM_DISK, { format, out: file, root, layout, parts, list }),
      );
    }
  }

  // busybox tar.
  for (const layout of ['dot', 'names'] as const) {
    const parts: TreePart[] = ['base', 'special', 'long100', 'long255', 'names'];
    tree(`busybox tar (${LAYOUT_LABEL[layout]})`, 'busybox tar', parts, (file, root) =>
      run('busybox', ['tar', '-cf', file, '-C', root, ...(layout === 'dot' ? ['.'] : parts)]),
    );
  }

  // Python, headers built in code.
  for (const [format, global] of [
    ['USTAR_FORMAT', false],
    ['GNU_FORMAT', false],
    ['PAX_FORMAT', false],
    ['PAX_FORMAT', true],
  ] as const) {
    add({
      name: `Python tarfile ${format} from TarInfo headers${global ? ' with a global header' : ''}`,
      writer: 'Python tarfile',
      expect: 'valid',
      bsdtarOracle: true,
      sparse: false,
      build: (file) => python(PY_IN_CODE, { format, out: file, global }),
    });
  }

  // Go's Writer.
  for (const [base, label] of [
    ['go-ustar.tar', 'FormatUSTAR'],
    ['go-pax.tar', 'FormatPAX'],
    ['go-gnu.tar', 'FormatGNU'],
    ['go-any.tar', 'with the format of its choice per entry'],
    ['go-pax-global.tar', 'FormatPAX with a global header'],
  ] as const) {
    add({
      name: `Go archive/tar Writer ${label}`,
      writer: 'Go archive/tar',
      expect: 'valid',
      bsdtarOracle: true,
      sparse: false,
      build: async (file, context) => copyFile(join(await context.goTars(), base), file),
    });
  }

  // git archive: ustar entries after a pax global header holding the commit id (as in
  // source tarballs), with and without a prefix directory.
  for (const prefix of [undefined, 'project-1.0/'] as const) {
    add({
      name: `git archive --format=tar${prefix === undefined ? '' : ` --prefix=${prefix}`}`,
      writer: 'git archive',
      expect: 'valid',
      bsdtarOracle: true,
      sparse: false,
      build: async (file) => {
        const repo = `${file}.git-work`;
        await mkdir(join(repo, 'src', 'nested'), { recursive: true });
        await writeFile(join(repo, 'README'), 'a repository\n');
        await writeFile(join(repo, 'src', 'run.sh'), '#!/bin/sh\necho run\n', { mode: 0o755 });
        await writeFile(join(repo, 'src', 'nested', `${'long-name-'.repeat(12)}.txt`), 'a long name\n');
        await symlink('src/run.sh', join(repo, 'run'));
        const env = {
          ...process.env,
          GIT_AUTHOR_NAME: 'peer',
          GIT_AUTHOR_EMAIL: 'peer@example.com',
          GIT_COMMITTER_NAME: 'peer',
          GIT_COMMITTER_EMAIL: 'peer@example.com',
          GIT_AUTHOR_DATE: '@1600000000 +0000',
          GIT_COMMITTER_DATE: '@1600000000 +0000',
          GIT_CONFIG_NOSYSTEM: '1',
          HOME: repo,
        };
        const git = (args: string[]): Promise<unknown> => execFileAsync('git', ['-C', repo, ...args], { env });
        await git(['init', '-q']);
        await git(['add', '.']);
        await git(['commit', '-q', '-m', 'peer']);
        await git(['archive', '--format=tar', ...(prefix === undefined ? [] : [`--prefix=${prefix}`]), '-o', file, 'HEAD']);
      },
    });
  }

  // Go's own test vectors (a bzip2'd one decompressed: a layer is a tar).
  for (const [base, expect] of Object.entries(GO_VECTORS)) {
    add({
      name: `Go test vector ${base}`,
      writer: 'Go test vector',
      expect,
      bsdtarOracle: false,
      sparse: false,
      build: async (file) => {
        const source = join(GO_TESTDATA, base);
        if (base.endsWith('.bz2')) {
          const { stdout } = await execFileAsync('bunzip2', ['-c', source], { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 });
          await writeFile(file, stdout);
        } else {
          await copyFile(source, file);
        }
      },
    });
  }
  return plans;
}

/**
 * Builds every planned tar under `dir` (scratch space; the caller removes it), four at a time;
 * a writer's failure names the case.
 */
export async function buildPeerTars(plans: readonly PlannedTar[], dir: string, goPeer: string): Promise<PeerTar[]> {
  const roots = new Map<string, Promise<string>>();
  let goTars: Promise<string> | undefined;
  const context: BuildContext = {
    rootFor: (parts) => {
      const key = parts.join('+');
      let root = roots.get(key);
      if (root === undefined) {
        const path = join(dir, `tree-${roots.size}`);
        root = makeTree(path, parts).then(() => path);
        roots.set(key, root);
      }
      return root;
    },
    goTars: () => {
      goTars ??= (async () => {
        const goDir = join(dir, 'go');
        await mkdir(goDir);
        await run(goPeer, ['write', goDir]);
        return goDir;
      })();
      return goTars;
    },
  };
  const out = join(dir, 'tars');
  await mkdir(out);
  const tars = plans.map(({ build: _build, ...plan }, index) => ({ ...plan, file: join(out, `${String(index).padStart(3, '0')}.tar`) }));
  const failures: string[] = [];
  await inBatches(plans, 4, async (plan, index) => {
    try {
      await plan.build(tars[index]!.file, context);
    } catch (error) {
      failures.push(`${plan.name}: ${(error as Error).message}`);
    }
  });
  if (failures.length > 0) throw new Error(`peer writers failed:\n${failures.join('\n')}`);
  return tars;
}

/** Runs `task` over `items`, at most `width` at once. */
export async function inBatches<T>(items: readonly T[], width: number, task: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      await task(items[index]!, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
}

/** Whether every tool the peer tars need is installed. */
export function missingPeerTools(): string[] {
  const tools = ['/usr/bin/tar', '/usr/bin/bsdtar', '/usr/bin/python3', '/usr/bin/busybox', '/usr/bin/go', '/usr/bin/setfattr', '/usr/bin/getfattr', '/usr/bin/bunzip2', '/usr/bin/git'];
  return [...tools.filter((tool) => !existsSync(tool)), ...(existsSync(GO_TESTDATA) ? [] : [GO_TESTDATA])];
}
