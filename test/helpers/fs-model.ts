/**
 * The reference semantics of flattening (DESIGN.md §3): an in-memory filesystem onto which
 * layers are applied base first, one entry at a time, the way an extractor would. The
 * flattener streams top-down; its output, applied as ONE layer onto an empty model, must give
 * the same {@link snapshot} as applying every layer here.
 *
 * Inodes are explicit (a path holds a node, a node points at an inode), so a hardlink shares
 * the inode of its target as it stood at that moment, and keeps the old content when a later
 * entry replaces the target's path with a new inode.
 *
 * Decisions DESIGN.md leaves open are marked "Decision:" below.
 */
import { createHash } from 'node:crypto';
import type { TarHeader } from '../../src/streams/tar/types.js';
import type { FixtureEntry, FixtureType } from './tar-fixture.js';

export type NodeType = 'dir' | 'file' | 'symlink' | 'char' | 'block' | 'fifo';

export interface Meta {
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  uname: Buffer;
  gname: Buffer;
  /** `SCHILY.xattr.NAME` records, keyed by NAME, values as raw bytes. */
  xattrs: Map<string, Buffer>;
}

export interface Inode {
  type: NodeType;
  meta: Meta;
  /** File body. */
  content: Buffer;
  /** Symlink target, raw bytes, never normalised (it is data). */
  target: Buffer;
  devmajor: number;
  devminor: number;
  /** Directory entries keyed by the name's raw bytes as a latin1 string. */
  children: Map<string, FsNode> | undefined;
}

export interface FsNode {
  inode: Inode;
  /** The layer (1-based application order) that created or last replaced this path. */
  layer: number;
}

export interface FsModel {
  root: FsNode;
  /** Layers applied so far; the next layer gets `layers + 1`. */
  layers: number;
  /**
   * aufs metadata (`.wh..wh.plnk/…`, `.wh..wh.aufs`): never nodes of the tree, but kept so
   * a hardlink into `.wh..wh.plnk/` can take that file's inode. Keyed by normalised path.
   */
  aufs: Map<string, Inode>;
}

export type ModelErrorCode =
  | 'ERR_UNSAFE_ENTRY'
  | 'ERR_HARDLINK_TARGET'
  | 'ERR_BARE_WHITEOUT'
  | 'ERR_NOT_A_DIRECTORY'
  | 'ERR_SYMLINK_LOOP'
  | 'ERR_DIR_REPLACED_IN_LAYER';

/** The layer is not valid input (or the model refuses to define it). */
export class ModelError extends Error {
  constructor(
    readonly code: ModelErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ModelError';
  }
}

/** What one layer did, for checks on the flattener's output. Paths are latin1-keyed, joined by `/`. */
export interface LayerRecord {
  /** For every entry that became a node, in order: where it landed (parents resolved). */
  landed: string[];
  /** Directories the layer created implicitly as missing parents, in order. */
  implicit: string[];
}

const MAX_SYMLINK_HOPS = 40;
const WH = '.wh.';
const AUFS_META = '.wh..wh.';
const OPAQUE = '.wh..wh..opq';

function implicitMeta(): Meta {
  return { mode: 0o755, uid: 0, gid: 0, mtime: 0, uname: Buffer.alloc(0), gname: Buffer.alloc(0), xattrs: new Map() };
}

function dirInode(meta: Meta): Inode {
  return { type: 'dir', meta, content: Buffer.alloc(0), target: Buffer.alloc(0), devmajor: 0, devminor: 0, children: new Map() };
}

export function createFs(): FsModel {
  return { root: { inode: dirInode(implicitMeta()), layer: 0 }, layers: 0, aufs: new Map() };
}

/** A deep copy that keeps inode sharing (hardlinks) intact. */
export function cloneFs(fs: FsModel): FsModel {
  const copies = new Map<Inode, Inode>();
  const copyInode = (inode: Inode): Inode => {
    const known = copies.get(inode);
    if (known) return known;
    const copy: Inode = {
      ...inode,
      meta: { ...inode.meta, xattrs: new Map(inode.meta.xattrs) },
      children: undefined,
    };
    copies.set(inode, copy);
    if (inode.children) {
      copy.children = new Map([...inode.children].map(([k, n]) => [k, { inode: copyInode(n.inode), layer: n.layer }]));
    }
    return copy;
  };
  return {
    root: { inode: copyInode(fs.root.inode), layer: fs.root.layer },
    layers: fs.layers,
    aufs: new Map([...fs.aufs].map(([k, i]) => [k, copyInode(i)])),
  };
}

function toBytes(value: string | Buffer | undefined): Buffer {
  if (value === undefined) return Buffer.alloc(0);
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
}

/**
 * `./a//b/`, `/a/b` → `['a', 'b']`; `..` is folded lexically and stays at the root when it
 * would climb above it (`../x`, `a/../../x` → `['x']`), as a layer applied in a chroot does.
 * Components are latin1 strings so any byte survives.
 */
export function normalisePath(name: Buffer): string[] {
  const out: string[] = [];
  for (const part of name.toString('latin1').split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      out.pop();
      continue;
    }
    out.push(part);
  }
  return out;
}

interface Resolved {
  dir: FsNode;
  /** The real path of `dir`, components from the root. */
  path: string[];
}

/**
 * Resolves a directory path the way a kernel would inside a chroot (as `securejoin` does):
 * every component is followed through symlinks, an absolute target restarts at the root,
 * `..` stops at the root. With `create`, a missing component becomes an implicit directory
 * (0755 root:root, mtime 0) owned by `layer`; without it, a missing component gives `undefined`.
 */
function resolveDir(
  fs: FsModel,
  components: readonly string[],
  create: { layer: number; record: LayerRecord } | undefined,
): Resolved | undefined {
  const stack: FsNode[] = [fs.root];
  const path: string[] = [];
  const queue = [...components];
  let hops = 0;
  for (let c = queue.shift(); c !== undefined; c = queue.shift()) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (stack.length > 1) {
        stack.pop();
        path.pop();
      }
      continue;
    }
    const here = stack[stack.length - 1]!;
    let child = here.inode.children!.get(c);
    if (child === undefined) {
      if (create === undefined) return undefined;
      child = { inode: dirInode(implicitMeta()), layer: create.layer };
      here.inode.children!.set(c, child);
      create.record.implicit.push([...path, c].join('/'));
    }
    if (child.inode.type === 'symlink') {
      if (++hops > MAX_SYMLINK_HOPS) {
        throw new ModelError('ERR_SYMLINK_LOOP', `too many levels of symlinks at ${[...path, c].join('/')}`);
      }
      const target = child.inode.target.toString('latin1');
      if (target === '') throw new ModelError('ERR_NOT_A_DIRECTORY', `empty symlink used as a parent: ${[...path, c].join('/')}`);
      if (target.startsWith('/')) {
        stack.length = 1;
        path.length = 0;
      }
      queue.unshift(...target.split('/'));
      continue;
    }
    if (child.inode.type !== 'dir') {
      throw new ModelError('ERR_NOT_A_DIRECTORY', `not a directory, used as a parent: ${[...path, c].join('/')}`);
    }
    stack.push(child);
    path.push(c);
  }
  return { dir: stack[stack.length - 1]!, path };
}

function hasNodeOfLayer(node: FsNode, layer: number): boolean {
  if (node.layer === layer) return true;
  for (const child of node.inode.children?.values() ?? []) if (hasNodeOfLayer(child, layer)) return true;
  return false;
}

/**
 * Deletes what `layer` may delete below and at `node`: nodes from lower layers. Returns
 * whether `node` itself survives.
 *
 * Decision: a lower-layer directory that still holds nodes of `layer` (written earlier in
 * the same layer) survives, but as an implicit directory (0755 root:root, mtime 0, owned by
 * `layer`): the flattener hides the lower entry, so no layer declares it any more.
 */
function prune(node: FsNode, layer: number): boolean {
  const children = node.inode.children;
  if (children) {
    for (const [name, child] of children) if (!prune(child, layer)) children.delete(name);
  }
  if (node.layer === layer) return true;
  if (children && children.size > 0) {
    node.inode.meta = implicitMeta();
    node.layer = layer;
    return true;
  }
  return false;
}

function metaOf(entry: FixtureEntry): Meta {
  const xattrs = new Map<string, Buffer>();
  for (const [key, value] of Object.entries(entry.pax ?? {})) {
    if (key.startsWith('SCHILY.xattr.')) xattrs.set(key.slice('SCHILY.xattr.'.length), toBytes(value));
  }
  return {
    mode: (entry.mode ?? (entry.type === 'dir' ? 0o755 : 0o644)) & 0o7777,
    uid: entry.uid ?? 0,
    gid: entry.gid ?? 0,
    mtime: entry.mtime ?? 0,
    uname: toBytes(entry.uname),
    gname: toBytes(entry.gname),
    xattrs,
  };
}

function newInode(entry: FixtureEntry): Inode {
  const type = entry.type as Exclude<FixtureType, 'link'>;
  return {
    type,
    meta: metaOf(entry),
    content: type === 'file' ? toBytes(entry.content) : Buffer.alloc(0),
    target: type === 'symlink' ? toBytes(entry.linkname) : Buffer.alloc(0),
    devmajor: type === 'char' || type === 'block' ? (entry.devmajor ?? 0) : 0,
    devminor: type === 'char' || type === 'block' ? (entry.devminor ?? 0) : 0,
    children: type === 'dir' ? new Map() : undefined,
  };
}

const isAufsMeta = (component: string): boolean => component.startsWith(AUFS_META) && component !== OPAQUE;

/** The inode a hardlink names: parents resolved through symlinks, the last component not followed. */
function hardlinkTarget(fs: FsModel, entry: FixtureEntry, layer: number): Inode {
  const name = toBytes(entry.name);
  const linkname = toBytes(entry.linkname);
  const components = normalisePath(linkname);
  if (components.some(isAufsMeta)) {
    const inode = fs.aufs.get(components.join('/'));
    if (inode) return inode;
  } else if (components.length > 0) {
    const parent = resolveDir(fs, components.slice(0, -1), undefined);
    const node = parent?.dir.inode.children!.get(components[components.length - 1]!);
    if (node && node.inode.type !== 'dir') return node.inode;
  }
  throw new ModelError(
    'ERR_HARDLINK_TARGET',
    `layer ${layer}: hardlink ${show(name)} -> ${show(linkname)}: no such file at that point`,
  );
}

function applyEntry(fs: FsModel, entry: FixtureEntry, layer: number, record: LayerRecord): void {
  // Hostile or extension headers (global PAX, GNU sparse…) are the reader's business, not the model's.
  if (entry.rawTypeflag !== undefined) return;
  const name = toBytes(entry.name);
  const components = normalisePath(name);
  const base = components[components.length - 1];

  // Whiteouts: never nodes; they delete from lower layers only.
  if (base !== undefined && base.startsWith(WH)) {
    if (base === WH) throw new ModelError('ERR_BARE_WHITEOUT', `bare whiteout ${show(name)}`);
    if (base === OPAQUE) {
      const dir = resolveDir(fs, components.slice(0, -1), undefined);
      // Decision: an opaque marker in a directory that does not exist is a no-op, and creates nothing.
      for (const [child, node] of dir?.dir.inode.children ?? []) {
        if (!prune(node, layer)) dir!.dir.inode.children!.delete(child);
      }
      return;
    }
    if (base.startsWith(AUFS_META)) {
      if (entry.type !== 'dir' && entry.type !== 'link') fs.aufs.set(components.join('/'), newInode(entry));
      return;
    }
    const victim = base.slice(WH.length);
    if (victim === '.' || victim === '..') throw new ModelError('ERR_UNSAFE_ENTRY', `whiteout of ${victim}: ${show(name)}`);
    // Decision: a whiteout whose parent does not exist is a no-op, and creates no parents
    // (the marker is never written, so nothing in the output could create them).
    const parent = resolveDir(fs, components.slice(0, -1), undefined);
    const node = parent?.dir.inode.children!.get(victim);
    if (node && !prune(node, layer)) parent!.dir.inode.children!.delete(victim);
    return;
  }

  // Anything inside aufs metadata (`.wh..wh.plnk/123.456`) is kept aside for hardlinks only.
  if (components.some(isAufsMeta)) {
    if (entry.type !== 'dir' && entry.type !== 'link') fs.aufs.set(components.join('/'), newInode(entry));
    return;
  }

  const linked = entry.type === 'link' ? hardlinkTarget(fs, entry, layer) : undefined;

  if (base === undefined) {
    if (entry.type !== 'dir') throw new ModelError('ERR_UNSAFE_ENTRY', `a non-directory at the root: ${show(name)}`);
    fs.root.inode.meta = metaOf(entry);
    fs.root.layer = layer;
    record.landed.push('.');
    return;
  }

  const parent = resolveDir(fs, components.slice(0, -1), { layer, record })!;
  const children = parent.dir.inode.children!;
  const existing = children.get(base);
  record.landed.push([...parent.path, base].join('/'));

  if (entry.type === 'dir') {
    if (existing?.inode.type === 'dir') {
      existing.inode.meta = metaOf(entry); // attributes from the newer entry, children merge
      existing.layer = layer;
    } else {
      children.set(base, { inode: newInode(entry), layer });
    }
    return;
  }
  if (existing?.inode.type === 'dir' && hasNodeOfLayer(existing, layer)) {
    throw new ModelError(
      'ERR_DIR_REPLACED_IN_LAYER',
      `layer ${layer}: ${show(name)} replaces a directory the same layer wrote or filled`,
    );
  }
  children.set(base, { inode: linked ?? newInode(entry), layer });
}

/**
 * Applies one layer's entries in order, as layer `fs.layers + 1`. Throws {@link ModelError}
 * when the layer is not valid at this point (the caller may discard it); the model is then
 * left half-applied, so clone first if you need to go on.
 */
export function applyLayer(fs: FsModel, entries: readonly FixtureEntry[]): LayerRecord {
  const layer = ++fs.layers;
  const record: LayerRecord = { landed: [], implicit: [] };
  for (const entry of entries) applyEntry(fs, entry, layer, record);
  return record;
}

/**
 * Applies a single entry as part of the layer most recently started with {@link beginLayer};
 * lets a generator try entries one by one (clone, try, keep or roll back).
 */
export function applyEntryInLayer(fs: FsModel, entry: FixtureEntry, record: LayerRecord): void {
  applyEntry(fs, entry, fs.layers, record);
}

/** Starts a new layer for {@link applyEntryInLayer}. */
export function beginLayer(fs: FsModel): LayerRecord {
  fs.layers++;
  return { landed: [], implicit: [] };
}

// ---------------------------------------------------------------------------------------
// Snapshot

export interface SnapshotEntry {
  path: string;
  type: NodeType;
  /** Octal, 4 digits: `'0755'`, `'4755'`. */
  mode: string;
  uid: number;
  gid: number;
  mtime: number;
  /** Files: byte count and sha256 of the content. */
  size?: number;
  sha256?: string;
  /** Symlinks: the target as written. */
  target?: string;
  /** Character and block devices: `major,minor`. */
  device?: string;
  /** xattr name → value in hex. */
  xattrs: Record<string, string>;
  /** Non-directories: every path sharing this inode, sorted (itself included). */
  hardlinks?: string[];
}

/** Raw name bytes for display: UTF-8 text when valid, else `hex:…`, so any byte sequence survives. */
export function show(raw: Buffer | string): string {
  const buf = typeof raw === 'string' ? Buffer.from(raw, 'latin1') : raw;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch {
    return `hex:${buf.toString('hex')}`;
  }
}

const byBytes = (a: string, b: string): number => Buffer.compare(Buffer.from(a, 'latin1'), Buffer.from(b, 'latin1'));

/** Every path of the tree (root as `.`), sorted by bytes, in a form `toEqual` can compare. */
export function snapshot(fs: FsModel): SnapshotEntry[] {
  const nodes: Array<[path: string, node: FsNode]> = [];
  const walk = (node: FsNode, path: string): void => {
    nodes.push([path, node]);
    for (const [name, child] of node.inode.children ?? []) walk(child, path === '.' ? name : `${path}/${name}`);
  };
  walk(fs.root, '.');
  nodes.sort(([a], [b]) => byBytes(a, b));

  const groups = new Map<Inode, string[]>();
  for (const [path, node] of nodes) {
    if (node.inode.type === 'dir') continue;
    const group = groups.get(node.inode) ?? [];
    group.push(path);
    groups.set(node.inode, group);
  }

  return nodes.map(([path, { inode }]) => {
    const entry: SnapshotEntry = {
      path: show(path),
      type: inode.type,
      mode: inode.meta.mode.toString(8).padStart(4, '0'),
      uid: inode.meta.uid,
      gid: inode.meta.gid,
      mtime: inode.meta.mtime,
      xattrs: Object.fromEntries(
        [...inode.meta.xattrs].sort(([a], [b]) => byBytes(a, b)).map(([k, v]) => [k, v.toString('hex')]),
      ),
    };
    if (inode.type === 'file') {
      entry.size = inode.content.length;
      entry.sha256 = createHash('sha256').update(inode.content).digest('hex');
    }
    if (inode.type === 'symlink') entry.target = show(inode.target);
    if (inode.type === 'char' || inode.type === 'block') entry.device = `${inode.devmajor},${inode.devminor}`;
    if (inode.type !== 'dir') entry.hardlinks = groups.get(inode)!.map(show);
    return entry;
  });
}

/** Looks a path up without following its last component (`undefined` when missing). */
export function lookup(fs: FsModel, path: string | Buffer): FsNode | undefined {
  const components = normalisePath(toBytes(path));
  if (components.length === 0) return fs.root;
  const parent = resolveDir(fs, components.slice(0, -1), undefined);
  return parent?.dir.inode.children!.get(components[components.length - 1]!);
}

// ---------------------------------------------------------------------------------------
// From our tar reader's entries

const FROM_TAR_TYPE: Record<TarHeader['type'], FixtureType> = {
  file: 'file',
  link: 'link',
  symlink: 'symlink',
  'character-device': 'char',
  'block-device': 'block',
  directory: 'dir',
  fifo: 'fifo',
};

/** A read-back tar entry in the form {@link applyLayer} takes. */
export function fixtureFromTar(header: Readonly<TarHeader>, body: Buffer): FixtureEntry {
  const pax: Record<string, Buffer> = {};
  for (const [key, value] of header.pax) pax[key.toString('utf8')] = value;
  return {
    name: header.name,
    type: FROM_TAR_TYPE[header.type],
    mode: header.mode,
    uid: header.uid,
    gid: header.gid,
    uname: header.uname,
    gname: header.gname,
    mtime: header.mtime,
    content: body,
    linkname: header.linkname,
    pax,
    devmajor: header.devmajor,
    devminor: header.devminor,
  };
}
