import type { TarHeader } from '../streams/tar/types.js';
import type { LinkGroup, LinkMember } from './hardlinks.js';
import { growableArray, grown } from './growable-array.js';
import { NO_NODE, PathTrie } from './path-trie.js';
import { parentKey, type PathKey } from './paths.js';
import type { ParentKind } from './resolve.js';

export const DIR_KIND: ParentKind = { kind: 'dir' };
export const OTHER_KIND: ParentKind = { kind: 'other' };

/** Flags of a {@link LayerRecord}. */
export const R_WRITTEN = 1;
export const R_DIR = 2;
export const R_LINK = 4;
/** Not a parent kind: aufs metadata. */
export const R_NOKIND = 8;
/** A parent kind that is a symlink (a symlink, or a hardlink to one): see `symlinks`. */
export const R_SYMLINK = 16;
/** In the record table only: the record is an object (see {@link LayerState}). */
const R_OBJECT = 32;
/** One past the largest combination of flags: the packed form's multiplier. */
const R_FLAGS = 64;

/**
 * What one entry of the current layer left behind, for hardlinks that refer to its path and
 * for parents of later entries (its kind: directory, symlink, other). Most entries (no link
 * group, nothing to carry) are kept as a number, `ordinal * R_FLAGS + flags`, so a
 * 100k-entry layer costs no object per entry; the object form is made on demand.
 */
export interface LayerRecord {
  ordinal: number;
  flags: number;
  /**
   * The entry's header, only when it can become the content source of a link group and no
   * output path holds its content: hidden non-directories. A written entry whose path a
   * same-layer duplicate replaces later has none; a group that needs it reads the layer again.
   */
  header: TarHeader | undefined;
  /** For links: the inode they share. For others: set once something links to them. */
  group: LinkGroup | undefined;
  /** For a surviving link not written yet. */
  member?: LinkMember;
}

export type RecordValue = number | LayerRecord;

export function flagsOf(value: RecordValue): number {
  return typeof value === 'number' ? value % R_FLAGS : value.flags;
}

export function ordinalOf(value: RecordValue): number {
  return typeof value === 'number' ? Math.floor(value / R_FLAGS) : value.ordinal;
}

export function packRecord(ordinal: number, flags: number): number {
  return ordinal * R_FLAGS + flags;
}

/**
 * The records of the layer being streamed, one per path, in typed arrays indexed by the
 * path's {@link PathTrie} node (no string or map entry per path: a single layer may hold a
 * million). Shared by the layers, each record stamped with its layer, so a new layer starts
 * empty without clearing anything. The rare object records live in {@link LayerState}.
 */
export class RecordTable {
  private layers: Int16Array;
  private ordinals: Uint32Array;
  private flags: Uint8Array;

  constructor(readonly trie: PathTrie = new PathTrie()) {
    const capacity = trie.onGrow((next) => {
      this.layers = grown(this.layers, next, NO_LAYER);
      this.ordinals = grown(this.ordinals, next);
      this.flags = grown(this.flags, next);
    });
    this.layers = growableArray(Int16Array, capacity, NO_LAYER);
    this.ordinals = growableArray(Uint32Array, capacity);
    this.flags = growableArray(Uint8Array, capacity);
  }

  /** The packed record of `layer` at `node`, if any. */
  get(node: number, layer: number): number | undefined {
    if (node === NO_NODE || this.layers[node] !== layer) return undefined;
    return packRecord(this.ordinals[node] as number, this.flags[node] as number);
  }

  set(node: number, layer: number, ordinal: number, flags: number): void {
    this.layers[node] = layer;
    this.ordinals[node] = ordinal;
    this.flags[node] = flags;
  }
}

const NO_LAYER = -1;
const BODY_SLAB = 64 * 1024;

/** Everything about the layer being streamed that later entries of the same layer need. */
export class LayerState {
  /** Records that carry more than ordinal and flags, by node. */
  private readonly objects = new Map<number, LayerRecord>();
  /** The targets of the records flagged R_SYMLINK. */
  readonly symlinks = new Map<PathKey, ParentKind>();
  /**
   * The last parent resolved without a symlink on the way, which resolves to itself while no
   * same-layer entry changes what it or one of its ancestors is.
   */
  settledParent: PathKey | undefined;
  readonly whiteouts = new Set<PathKey>();
  readonly opaques = new Set<PathKey>();
  /** Bodies of hidden files, kept within the budget for later same-layer hardlinks. */
  readonly hiddenBodies = new Map<number, Buffer>();
  hiddenBytes = 0;
  /** Where small kept bodies are copied: slabs of their own, let go together with the layer. */
  private slab: Buffer | undefined;
  private slabUsed = 0;

  /** Keeps `chunks`, the body of the hidden entry `ordinal`, in a buffer of this layer's own. */
  keepBody(ordinal: number, chunks: readonly Buffer[]): void {
    let length = 0;
    for (const chunk of chunks) length += chunk.length;
    let body: Buffer;
    if (length > BODY_SLAB / 4) body = Buffer.allocUnsafeSlow(length);
    else {
      // Not the shared pool (Buffer.concat's small buffers): a kept body would pin a whole
      // pool slab that the layer's names and headers went through.
      if (this.slab === undefined || this.slabUsed + length > this.slab.length) {
        this.slab = Buffer.allocUnsafeSlow(BODY_SLAB);
        this.slabUsed = 0;
      }
      body = this.slab.subarray(this.slabUsed, this.slabUsed + length);
      this.slabUsed += length;
    }
    let at = 0;
    for (const chunk of chunks) {
      chunk.copy(body, at);
      at += chunk.length;
    }
    this.hiddenBodies.set(ordinal, body);
    this.hiddenBytes += length;
  }
  /**
   * Links of higher layers that found their target at a path of this layer. A later
   * duplicate of that path in the same layer is what they really refer to: they are
   * written again after it.
   */
  readonly watchHits = new Map<PathKey, Array<LinkMember>>();
  /** Groups whose source body was not kept: the layer is read again for them. */
  readonly refetch = new Map<number, LinkGroup>();
  written = 0;
  skipped = 0;
  /** Names (and hardlink targets) whose `..` climbed above the root, and the first of them. */
  pinned = 0;
  pinnedExample: { name: Buffer; key: PathKey } | undefined;
  /** The last ordinal counted in {@link pinned}: a pending entry is placed twice. */
  pinnedOrdinal = -1;
  /** Paths this layer wrote twice, and the first few. */
  duplicates = 0;
  readonly duplicateExamples: PathKey[] = [];

  /** `isBase`: the bottom layer, where every parent is settled. */
  constructor(
    readonly index: number,
    readonly isBase = false,
    readonly table: RecordTable = new RecordTable(),
  ) {}

  /** The record of the last entry at `key` in this layer. */
  get(key: PathKey): RecordValue | undefined {
    return this.at(this.table.trie.find(key));
  }

  /** The record at trie node `node` ({@link NO_NODE}: none). */
  at(node: number): RecordValue | undefined {
    const packed = this.table.get(node, this.index);
    if (packed === undefined) return undefined;
    return flagsOf(packed) & R_OBJECT ? this.objects.get(node) : packed;
  }

  /**
   * Same-layer kinds, to resolve parents before the lower layers are known: what the last
   * entry at `key` is, as a parent.
   */
  kindAt(key: PathKey): ParentKind | undefined {
    const value = this.get(key);
    if (value === undefined) return undefined;
    const flags = flagsOf(value);
    if (flags & R_NOKIND) return undefined;
    if (flags & R_SYMLINK) return this.symlinks.get(key);
    return flags & R_DIR ? DIR_KIND : OTHER_KIND;
  }

  /** Records the entry at `key`, which may change what `key` is as a parent. */
  setRecord(key: PathKey, value: RecordValue): void {
    this.setRecordAt(this.table.trie.ensure(key), key, value);
  }

  /** {@link setRecord}, where `node` is `key`'s trie node. */
  setRecordAt(node: number, key: PathKey, value: RecordValue): void {
    if (typeof value === 'number') {
      this.table.set(node, this.index, ordinalOf(value), flagsOf(value));
      this.objects.delete(node);
    } else {
      this.table.set(node, this.index, value.ordinal, value.flags | R_OBJECT);
      this.objects.set(node, value);
    }
    const settled = this.settledParent;
    if (settled !== undefined && settled.startsWith(key) && (settled.length === key.length || settled.charCodeAt(key.length) === 0x2f)) {
      this.settledParent = undefined;
    }
  }

  /** The object form of the record at `key`, made and stored if it was a number. */
  expand(key: PathKey, value: RecordValue): LayerRecord {
    if (typeof value !== 'number') return value;
    const record: LayerRecord = { ordinal: ordinalOf(value), flags: flagsOf(value), header: undefined, group: undefined };
    const node = this.table.trie.ensure(key);
    this.table.set(node, this.index, record.ordinal, record.flags | R_OBJECT);
    this.objects.set(node, record);
    return record;
  }

  /** Whether this layer deleted `key` so far (whiteout, opaque or non-directory above it). */
  deleted(key: PathKey): boolean {
    if (this.whiteouts.has(key)) return true;
    let current = key;
    while (current !== '') {
      current = parentKey(current);
      if (this.whiteouts.has(current) || this.opaques.has(current)) return true;
      const record = this.get(current);
      if (record !== undefined && !(flagsOf(record) & R_DIR)) return true;
    }
    return false;
  }
}

/**
 * `header` with its byte fields copied into one buffer of their own, for a record that
 * outlives the entry. The reader's fields are small pooled buffers: a few kept headers would
 * otherwise pin every 8 KiB pool slab the layer's names went through (tens of MiB for a
 * layer of a million entries).
 */
export function detached(header: TarHeader): TarHeader {
  let length = header.name.length + header.linkname.length + header.uname.length + header.gname.length;
  for (const [key, value] of header.pax) length += key.length + value.length;
  const store = Buffer.allocUnsafeSlow(length);
  let at = 0;
  const take = (field: Buffer): Buffer => {
    field.copy(store, at);
    const copy = store.subarray(at, at + field.length);
    at += field.length;
    return copy;
  };
  return {
    ...header,
    name: take(header.name),
    linkname: take(header.linkname),
    uname: take(header.uname),
    gname: take(header.gname),
    pax: header.pax.map(([key, value]) => [take(key), take(value)]),
  };
}
