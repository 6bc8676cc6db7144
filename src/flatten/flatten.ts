import {
  DigestMismatchError,
  HardlinkTargetError,
  MalformedArchiveError,
  SizeMismatchError,
  throwIfAborted,
} from '../errors.js';
import { worthExplaining } from '../streams/checked-layer.js';
import { readTar } from '../streams/tar/reader.js';
import type { SparseMap, TarEntry, TarHeader, TarWarning } from '../streams/tar/types.js';
import { alignedData, alignSparse, isBlockAligned } from '../streams/tar/sparse-align.js';
import { bodyLength, END_OF_ARCHIVE, encodeHeader, encodeHeaderInto, paddingFor } from '../streams/tar/writer.js';
import { LinkWatches, mergeGroups, newGroup, type LinkGroup, type LinkMember } from './hardlinks.js';
import {
  childKey,
  classifyName,
  isAufsMetaKey,
  joinKey,
  keyToBuffer,
  normalizeEntryName,
  normalizeKey,
  parentKey,
  printable,
  ROOT,
  WHITEOUT_PREFIX,
  type PathKey,
} from './paths.js';
import { resolveParents, type ParentKind } from './resolve.js';
import { Skeleton, type Resolutions } from './skeleton.js';
import { Visibility } from './visibility.js';

/** One layer as the flattener sees it: a cold factory for its uncompressed, verified tar. */
export interface FlattenLayer {
  /** Position in the stack, 0 = base. */
  index: number;
  /** Used in error messages, e.g. the layer digest. */
  name: string;
  /**
   * Opens the layer's uncompressed tar bytes. Called once per pass; a pass that reaches the end
   * has been verified (digest and diffID). May be called again (pre-pass, re-fetch).
   */
  open(signal: AbortSignal): AsyncIterable<Uint8Array> | Promise<AsyncIterable<Uint8Array>>;
  /**
   * Optional: start fetching the layer's bytes ahead, within a memory budget, so that the next
   * `open()` finds them waiting (DESIGN.md §8). Called at most once, while the layer above
   * streams; `signal` aborts when the flatten ends, which must release whatever was not taken.
   */
  prefetch?(signal: AbortSignal): void;
  /**
   * Optional: reading the pass `open()` started last failed with `error` (decompression, tar
   * parsing, or what the flattener refused in it). Reads the rest of that pass's stored bytes
   * and resolves to what to report: an integrity error (exit 7) with `error` as its cause
   * when they do not match their digest (damaged on the way, not a malformed image), else
   * `error`. Called before the pass's signal is aborted.
   */
  explainFailure?(error: unknown): Promise<unknown>;
}

/** Something the flatten accepted but the user may want to know (contract C). */
export interface FlattenWarning {
  /** Stable: the reader's `TAR_*` codes, `NAME_PINNED_AT_ROOT`, `DUPLICATE_PATH`. */
  code: string;
  message: string;
  /** The layer it concerns (index, 0 = base). */
  layer?: number;
}

/** Per layer index, tar ordinals of entries that a later entry of the same layer replaces. */
export type Superseded = ReadonlyMap<number, ReadonlySet<number>>;

/** What earlier attempts of a restartable flatten learnt; the next attempt needs it. */
export interface FlattenLessons {
  /** Entries to leave out so that each path is written once (they still serve as hardlink sources). */
  superseded: Superseded;
  /** Layers already fetched again after a damaged download: another failure is final. */
  refetched: ReadonlySet<number>;
}

/**
 * Thrown by a flatten with `restartable: true` when the output must start over; nothing it
 * wrote is wanted. Start a new attempt on an emptied output with `lessons`. Each restart
 * learns something new (a layer's duplicates, a layer to fetch again), so they are few: one
 * for all the duplicates of the image, one per damaged download.
 */
export class FlattenRestart extends Error {
  constructor(
    readonly lessons: FlattenLessons,
    /** Why, in words, for a `retry` event. */
    readonly reason: string,
    /** The layer fetched again, when a damaged download is the reason. */
    readonly refetch?: { index: number; name: string; error: unknown },
  ) {
    super(reason);
    this.name = 'FlattenRestart';
  }
}

export interface LayerFlattenStats {
  index: number;
  entriesWritten: number;
  entriesSkipped: number;
}

export interface FlattenOptions {
  signal?: AbortSignal;
  /**
   * Bytes of hidden same-layer files kept for hardlinks before a re-fetch is needed
   * (default 8 MiB: such links are rare, and this memory is held while every layer streams).
   */
  hiddenBodyBudget?: number;
  /** Applied after the flatten decision: a left-out path still hides its lower copies. */
  filter?: (header: Readonly<TarHeader>) => boolean;
  onLayerStart?: (index: number) => void;
  onLayerDone?: (stats: LayerFlattenStats) => void;
  /**
   * Told what was accepted but is worth saying: the tar reader's warnings (message prefixed
   * with the layer), names pinned at the root (`NAME_PINNED_AT_ROOT`, one per layer), paths a
   * layer holds twice (`DUPLICATE_PATH`, one per layer).
   */
  onWarning?: (warning: FlattenWarning) => void;
  /** Write sparse files expanded (holes as zeros) instead of sparse (`--expand-sparse`). */
  expandSparse?: boolean;
  /**
   * The output can start over (a file; stdout cannot). Then each path is written once: on
   * the first path a layer holds twice the flatten stops writing, reads on to learn every
   * such path of every layer, and throws a {@link FlattenRestart}; a layer whose download
   * turns out damaged also throws one, once per layer. Without it, a duplicated path is
   * written twice (the later wins on extraction) with a warning, and a damaged layer fails.
   */
  restartable?: boolean;
  /** What earlier attempts learnt (from {@link FlattenRestart.lessons}). */
  lessons?: FlattenLessons;
}

const DEFAULT_HIDDEN_BODY_BUDGET = 8 * 1024 * 1024;
/** Paths named in a `DUPLICATE_PATH` warning. */
const MAX_EXAMPLES = 3;
/**
 * Small writes (headers, links, small bodies) are gathered up to this size before they are
 * yielded: each chunk costs a write downstream (a thread-pool round trip for a file), and
 * 64 KiB batches left the flattener waiting on those (many: 7.5 s → 6.4 s end to end).
 */
const OUTPUT_BATCH = 256 * 1024;
const IMPLICIT_DIR_MODE = 0o755;
/** Bodies up to this size are copied into the output batch instead of yielded alone. */
const SMALL_BODY = 32 * 1024;
const BLOCK = 512;
/** Room for a few output batches: a full one is sealed and a new one allocated. */
const BATCH_CAPACITY = 1024 * 1024;
const DIR_KIND: ParentKind = { kind: 'dir' };
const OTHER_KIND: ParentKind = { kind: 'other' };

/** Flags of a {@link LayerRecord}. */
const R_WRITTEN = 1;
const R_DIR = 2;
const R_LINK = 4;
/** Not a parent kind: aufs metadata. */
const R_NOKIND = 8;
/** A parent kind that is a symlink (a symlink, or a hardlink to one): see `symlinks`. */
const R_SYMLINK = 16;
const R_FLAGS = 32;

/**
 * What one entry of the current layer left behind, for hardlinks that refer to its path and
 * for parents of later entries (its kind: directory, symlink, other). Most entries (no link group, nothing to carry) are kept as a number, `ordinal * 8 + flags`,
 * so a 100k-entry layer costs no object per entry; the object form is made on demand.
 */
interface LayerRecord {
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

type RecordValue = number | LayerRecord;

function flagsOf(value: RecordValue): number {
  return typeof value === 'number' ? value % R_FLAGS : value.flags;
}

function packRecord(ordinal: number, flags: number): number {
  return ordinal * R_FLAGS + flags;
}

/** Everything about the layer being streamed that later entries of the same layer need. */
class LayerState {
  readonly records = new Map<PathKey, RecordValue>();
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

  constructor(readonly index: number) {}

  /**
   * Same-layer kinds, to resolve parents before the lower layers are known: what the last
   * entry at `key` is, as a parent.
   */
  kindAt(key: PathKey): ParentKind | undefined {
    const value = this.records.get(key);
    if (value === undefined) return undefined;
    const flags = flagsOf(value);
    if (flags & R_NOKIND) return undefined;
    if (flags & R_SYMLINK) return this.symlinks.get(key);
    return flags & R_DIR ? DIR_KIND : OTHER_KIND;
  }

  /** Records the entry at `key`, which may change what `key` is as a parent. */
  setRecord(key: PathKey, value: RecordValue): void {
    this.records.set(key, value);
    const settled = this.settledParent;
    if (settled !== undefined && settled.startsWith(key) && (settled.length === key.length || settled.charCodeAt(key.length) === 0x2f)) {
      this.settledParent = undefined;
    }
  }

  /** The object form of the record at `key`, made and stored if it was a number. */
  expand(key: PathKey, value: RecordValue): LayerRecord {
    if (typeof value !== 'number') return value;
    const record: LayerRecord = { ordinal: Math.floor(value / R_FLAGS), flags: value % R_FLAGS, header: undefined, group: undefined };
    this.records.set(key, record);
    return record;
  }
}

/**
 * Flattens layers (given base first) into one tar stream, top-down, as DESIGN.md §3 says.
 * Yields the output tar bytes, end-of-archive marker included.
 *
 * @example
 * ```ts
 * const tar = Readable.from(flattenLayers(layers, { signal }));
 * await pipeline(tar, createWriteStream('rootfs.tar'), { signal });
 * ```
 */
export async function* flattenLayers(
  layers: readonly FlattenLayer[],
  options: FlattenOptions = {},
): AsyncGenerator<Buffer> {
  yield* new Flattener(layers, options).run();
}

class Flattener {
  private readonly visibility = new Visibility();
  private readonly watches = new LinkWatches();
  private resolutions: Resolutions | undefined;
  private readonly budget: number;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private readonly topDown: FlattenLayer[];
  /** Entries to leave out, learnt by earlier attempts. */
  private readonly superseded: Superseded | undefined;
  /** Entries this attempt found replaced by a later same-layer entry at the same path. */
  private readonly learned = new Map<number, Set<number>>();
  /** A restartable flatten found a path written twice: it reads on, writing nothing. */
  private discarding = false;
  /** Per layer that wrote a path twice: `layer N (name) holds K paths twice`. */
  private readonly duplicateNotes: string[] = [];

  constructor(
    layers: readonly FlattenLayer[],
    private readonly options: FlattenOptions,
  ) {
    this.topDown = [...layers].sort((a, b) => b.index - a.index);
    this.ahead = linkedController(options.signal);
    this.budget = options.hiddenBodyBudget ?? DEFAULT_HIDDEN_BODY_BUDGET;
    this.superseded = options.lessons?.superseded;
  }

  /** Aborts what layers fetched ahead and nobody took (the flatten ended, or failed). */
  private readonly ahead: AbortController;

  async *run(): AsyncGenerator<Buffer> {
    try {
      for await (const chunk of this.runLayers()) {
        if (!this.discarding) yield chunk;
      }
      if (this.discarding) {
        throw new FlattenRestart(
          this.lessons(undefined),
          `${this.duplicateNotes.join('; ')}: starting over to write each path once`,
        );
      }
    } finally {
      this.ahead.abort();
    }
  }

  /** What the next attempt must know; `failed`: a layer whose learnings cannot be trusted. */
  private lessons(failed: number | undefined): FlattenLessons {
    const superseded = new Map<number, Set<number>>();
    for (const [layer, ordinals] of this.superseded ?? []) superseded.set(layer, new Set(ordinals));
    for (const [layer, ordinals] of this.learned) {
      if (layer === failed) continue;
      const set = superseded.get(layer) ?? new Set<number>();
      for (const ordinal of ordinals) set.add(ordinal);
      superseded.set(layer, set);
    }
    const refetched = new Set(this.options.lessons?.refetched ?? []);
    if (failed !== undefined) refetched.add(failed);
    return { superseded, refetched };
  }

  /**
   * A pass over `layer` failed with `error`: what to throw. The layer source may find the
   * bytes were damaged on the way (an integrity error); a restartable flatten then starts
   * over, once per layer, to fetch it again.
   */
  private async failure(layer: FlattenLayer, error: unknown): Promise<unknown> {
    if (error instanceof FlattenRestart) return error;
    let reported = error;
    if (layer.explainFailure !== undefined && worthExplaining(error)) reported = await layer.explainFailure(error);
    const damaged = reported instanceof DigestMismatchError || reported instanceof SizeMismatchError;
    if (damaged && this.options.restartable === true && this.options.lessons?.refetched.has(layer.index) !== true) {
      return new FlattenRestart(
        this.lessons(layer.index),
        `${(reported as Error).message}; fetching it again and starting over`,
        { index: layer.index, name: layer.name, error: reported },
      );
    }
    return reported;
  }

  /** Reader warnings already passed on, per layer (a layer may be read more than once). */
  private readonly warned = new Map<number, Set<string>>();

  /** Passes a reader warning on, once per layer, saying which layer. */
  private readerWarning(layer: FlattenLayer): (warning: TarWarning) => void {
    return (warning) => {
      const seen = `${warning.code}\0${warning.message}`;
      let warned = this.warned.get(layer.index);
      if (warned === undefined) this.warned.set(layer.index, (warned = new Set()));
      if (warned.has(seen)) return;
      warned.add(seen);
      this.options.onWarning?.({ code: warning.code, message: `${layerLabel(layer)}: ${warning.message}`, layer: layer.index });
    };
  }

  /** The warnings of a layer that are summed up once it is done. */
  private layerWarnings(layer: FlattenLayer, state: LayerState): void {
    const warn = this.options.onWarning;
    if (state.pinned > 0 && state.pinnedExample !== undefined) {
      const { name, key } = state.pinnedExample;
      const count = state.pinned === 1 ? 'an entry name climbs' : `${state.pinned} entry names climb`;
      warn?.({
        code: 'NAME_PINNED_AT_ROOT',
        message: `${layerLabel(layer)}: ${count} above the root and ${state.pinned === 1 ? 'was' : 'were'} pinned at it, as container runtimes do (e.g. "${printable(name.toString('latin1'))}" is written as "${printable(key)}")`,
        layer: layer.index,
      });
    }
    if (state.duplicates > 0) {
      const count = state.duplicates === 1 ? 'a path' : `${state.duplicates} paths`;
      const examples = state.duplicateExamples.map((key) => `"${printable(key)}"`).join(', ');
      this.duplicateNotes.push(`${layerLabel(layer)} holds ${count} twice (${examples})`);
      const outcome =
        this.options.restartable === true
          ? 'the later copy wins and is the only one written'
          : 'the later copy wins: both are in the output, and extracting keeps the later (write to a file for one entry per path)';
      warn?.({
        code: 'DUPLICATE_PATH',
        message: `${layerLabel(layer)}: ${count} appear${state.duplicates === 1 ? 's' : ''} more than once in the layer (${examples}); ${outcome}`,
        layer: layer.index,
      });
    }
  }

  /** Lets the layer below `layer` fetch ahead while `layer` streams. */
  private prefetchBelow(layer: FlattenLayer): void {
    const below = this.topDown[this.topDown.indexOf(layer) + 1];
    if (below?.prefetch === undefined || this.prefetched.has(below.index)) return;
    this.prefetched.add(below.index);
    below.prefetch(this.ahead.signal);
  }

  private readonly prefetched = new Set<number>();

  private async *runLayers(): AsyncGenerator<Buffer> {
    for (const layer of this.topDown) {
      throwIfAborted(this.options.signal);
      this.options.onLayerStart?.(layer.index);
      const state = new LayerState(layer.index);
      let startAt = 0;
      for (;;) {
        const pendingAt = yield* this.streamLayer(layer, state, startAt);
        if (pendingAt === undefined) break;
        await this.prePass(layer.index);
        startAt = pendingAt;
      }
      // Nothing a discarding flatten writes is kept: no need to read a layer again for it.
      if (state.refetch.size > 0 && !this.discarding) yield* this.refetchSources(layer, state);
      this.checkWatchesAfter(layer, state);
      this.layerWarnings(layer, state);
      yield* this.drain();
      this.options.onLayerDone?.({
        index: layer.index,
        entriesWritten: state.written,
        entriesSkipped: state.skipped,
      });
    }
    for (const [target, group] of this.watches.waitingAbove(-1)) {
      throw new HardlinkTargetError(
        `layer ${group.createdAt}: hardlink "${printable(group.firstLink ?? '')}" points at "${printable(target)}", which no lower layer has`,
      );
    }
    // The root entry `./` that no layer gave, then the parents no layer declared.
    if (!this.visibility.rootWritten()) this.pushHeader(implicitDir(ROOT));
    for (const key of this.visibility.implicitParents()) this.pushHeader(implicitDir(key));
    this.push(END_OF_ARCHIVE);
    yield* this.drain();
  }

  /** Streams one pass over a layer; returns the ordinal of the first pending entry, if any. */
  private async *streamLayer(
    layer: FlattenLayer,
    state: LayerState,
    startAt: number,
  ): AsyncGenerator<Buffer, number | undefined> {
    const abort = linkedController(this.options.signal);
    let release = NO_RELEASE;
    try {
      const source = heldOpen(await layer.open(abort.signal));
      release = source.release;
      this.prefetchBelow(layer);
      const onWarning = this.readerWarning(layer);
      for await (const entry of readTar(source, { signal: abort.signal, onWarning })) {
        if (entry.ordinal < startAt) continue;
        const key = this.place(entry, state);
        if (key === null) return entry.ordinal;
        yield* this.handleEntry(entry, key, this.placedTarget, state);
        if (this.pendingBytes >= OUTPUT_BATCH) yield* this.drain();
      }
      return undefined;
    } catch (error) {
      throw await this.failure(layer, error);
    } finally {
      await release();
      abort.abort();
    }
  }

  /** The resolved hardlink target of the entry {@link place} placed last. */
  private placedTarget: PathKey | undefined;
  /** Whether that entry's key is its tar name byte for byte (its header can be written as is). */
  private placedAsNamed = false;

  /**
   * Where an entry lands: its key, parents resolved through symlinks (and its hardlink
   * target's, in {@link placedTarget}). `null` when a parent depends on layers not read yet
   * (the entry is pending until the pre-pass).
   */
  private place(entry: TarEntry, state: LayerState): PathKey | null {
    const { header, ordinal } = entry;
    // Two fields rather than an object: no allocation per entry on the hot path.
    this.placingState = state;
    this.placingEntry = entry;
    const name = normalizeKey(header.name, this.notePinned);
    const target = header.type === 'link' ? normalizeKey(header.linkname, this.notePinned) : undefined;
    this.placingEntry = undefined;
    this.placedTarget = undefined;
    this.placedAsNamed = false;
    if (this.resolutions) {
      const known = this.resolutions.get(state.index, ordinal);
      const key = known?.path ? joinKey(known.path) : name;
      this.placedTarget = known?.linkTarget ? joinKey(known.linkTarget) : target;
      this.placedAsNamed = key === name && name.length === header.name.length;
      return key;
    }
    const key = this.resolveKey(name, state);
    if (key === null) return null;
    if (target !== undefined) {
      const linkTarget = this.resolveKey(target, state);
      if (linkTarget === null) return null;
      this.placedTarget = linkTarget;
    }
    this.placedAsNamed = key === name && name.length === header.name.length;
    return key;
  }

  /** The entry {@link place} is cleaning the names of, for {@link notePinned}. */
  private placingEntry: TarEntry | undefined;
  private placingState: LayerState | undefined;

  /** A `..` of the entry being placed was pinned at the root: counted once per entry. */
  private readonly notePinned = (): void => {
    const entry = this.placingEntry;
    const state = this.placingState;
    if (entry === undefined || state === undefined) return;
    if (state.pinnedOrdinal === entry.ordinal) return;
    state.pinnedOrdinal = entry.ordinal;
    state.pinned++;
    if (state.pinnedExample === undefined) {
      const name = climbs(entry.header.name) ? entry.header.name : entry.header.linkname;
      state.pinnedExample = { name, key: normalizeEntryName(name).join('/') };
    }
  };

  /** `key` with its parents resolved through symlinks; `null` when a parent is not settled yet. */
  private resolveKey(key: PathKey, state: LayerState): PathKey | null {
    const slash = key.lastIndexOf('/');
    if (slash < 0) return key;
    const parent = key.slice(0, slash);
    if (parent === state.settledParent) return key;
    const isBase = state.index === this.topDown[this.topDown.length - 1]?.index;
    // Fast path: every ancestor is a directory (or nothing yet): the parent is itself.
    for (let start = 0; ; ) {
      const next = parent.indexOf('/', start);
      const prefix = next < 0 ? parent : parent.slice(0, next);
      const value = state.records.get(prefix);
      const flags = value === undefined ? R_NOKIND : flagsOf(value);
      if (flags & R_NOKIND) {
        if (!isBase && !state.whiteouts.has(prefix)) return null;
      } else if (!(flags & R_DIR)) {
        return this.resolveSlow(key, state, isBase);
      }
      if (next < 0) break;
      start = next + 1;
    }
    state.settledParent = parent;
    return key;
  }

  private resolveSlow(key: PathKey, state: LayerState, isBase: boolean): PathKey | null {
    const lookup = (prefix: PathKey): ParentKind | undefined | 'unknown' => {
      const kind = state.kindAt(prefix);
      if (kind) return kind;
      if (isBase || state.whiteouts.has(prefix)) return undefined;
      return 'unknown';
    };
    const components = key.split('/');
    const parents = resolveParents(components.slice(0, -1), lookup, key);
    if (parents === null) return null;
    parents.push(components[components.length - 1] as string);
    return joinKey(parents);
  }

  private async *handleEntry(
    entry: TarEntry,
    key: PathKey,
    targetKey: PathKey | undefined,
    state: LayerState,
  ): AsyncGenerator<Buffer> {
    const { header } = entry;
    const layer = state.index;
    const slash = key.lastIndexOf('/');
    const parent = slash < 0 ? ROOT : key.slice(0, slash);
    const base = key === ROOT ? undefined : slash < 0 ? key : key.slice(slash + 1);

    if (isAufsMetaKey(key)) {
      // Never written, but a hardlink into `.wh..wh.plnk/` takes that file's content.
      this.recordHidden(entry, key, state);
      yield* this.keepHiddenBody(entry, state);
      return;
    }
    if (base !== undefined && base.startsWith(WHITEOUT_PREFIX)) {
      const meaning = classifyName(base);
      if (meaning.kind === 'opaque') {
        this.visibility.recordOpaque(parent, layer);
        state.opaques.add(parent);
        return;
      }
      if (meaning.kind === 'whiteout') {
        const victim = childKey(parent, meaning.name);
        this.visibility.recordWhiteout(victim, layer);
        state.whiteouts.add(victim);
        return;
      }
    }

    const isDir = header.type === 'directory';
    // The root entry keeps the name `./`; every other name loses its `./`. A name that is
    // already its key (nearly all) keeps the reader's header: no copy per entry.
    const out: TarHeader =
      key === ROOT
        ? { ...header, name: Buffer.from('.') }
        : this.placedAsNamed
          ? header
          : { ...header, name: keyToBuffer(key) };
    // A left-out entry makes no parents: leaving out a file must not conjure its directory.
    const kept = this.options.filter?.(out) ?? true;
    const visibility = this.visibility;
    let verdict = visibility.enter(parent, base, layer, kept);
    if (!isDir && verdict !== 'hidden' && visibility.currentHasHigherDescendants(layer)) {
      // Higher layers put entries below this path, so base first it must have become a
      // directory again later in this layer: writing it would make an extractor replace a
      // non-empty directory. It still replaced what lower layers had below it.
      verdict = 'shadowed';
    }
    if (!isDir && verdict === 'shadowed') visibility.recordCurrentCover(layer);
    // An earlier attempt learnt that a later entry of this layer replaces this one: it is
    // not written (each path once), but stays a hidden source for hardlinks, and a
    // non-directory still replaced what lower layers had below it.
    const superseded = this.superseded?.get(layer)?.has(entry.ordinal) === true;
    if (superseded && verdict === 'visible' && !isDir) visibility.recordCurrentCover(layer);
    // Only a path this layer already wrote can have a same-layer record to displace.
    let rewrite = false;
    if (verdict === 'visible' && !superseded) {
      rewrite = visibility.currentWrittenBy() === layer;
      const earlier = visibility.currentWrittenInLayer(layer);
      if (!isDir && earlier && (earlier.dir || earlier.hasChildren)) {
        throw new MalformedArchiveError(
          `layer ${layer}: directory "${printable(key)}" is replaced by a non-directory within the same layer`,
        );
      }
      visibility.recordCurrentWrite(layer, isDir);
    }
    const written = verdict === 'visible' && kept && !superseded;
    let flags = (written ? R_WRITTEN : 0) | (isDir ? R_DIR : 0);
    const kind = this.kindOf(header, targetKey, state);
    if (kind.kind === 'symlink') {
      flags |= R_SYMLINK;
      state.symlinks.set(key, kind);
    }
    if ((written && rewrite) || state.watchHits.has(key)) this.noteDuplicate(key, state, written && rewrite);
    if (written && rewrite) this.displaceOutputPath(key, state);

    if (header.type === 'link') {
      const group = this.targetGroup(targetKey ?? ROOT, key, state);
      const record: LayerRecord = { ordinal: entry.ordinal, flags: flags | R_LINK, header: undefined, group };
      state.setRecord(key, record);
      if (written) {
        record.member = { key, header: out };
        group.members.push(record.member);
        state.written++;
      } else state.skipped++;
      // Links of higher layers to this path mean the entry that replaces it.
      if (!superseded) mergeGroups(group, this.takeWatchers(key, state));
      yield* this.flushGroup(group, state);
      return;
    }

    // Only a hidden non-directory can become a group's content source: only it keeps a header.
    state.setRecord(
      key,
      written || isDir ? packRecord(entry.ordinal, flags) : { ordinal: entry.ordinal, flags, header, group: undefined },
    );
    const watchers = superseded ? [] : this.takeWatchers(key, state);
    if (isDir && watchers.some((g) => g.members.some((m) => !m.cancelled))) {
      throw new HardlinkTargetError(`layer ${layer}: hardlink target "${printable(key)}" is a directory`);
    }
    if (written) {
      state.written++;
      yield* this.writeEntry(out, entry);
      if (watchers.length > 0) {
        const record = state.expand(key, state.records.get(key) as RecordValue);
        const group = (record.group = this.groupOf(record, key, state));
        mergeGroups(group, watchers);
        yield* this.flushGroup(group, state);
      }
      return;
    }
    state.skipped++;
    if (watchers.length === 0) {
      yield* this.keepHiddenBody(entry, state);
      return;
    }
    const record = state.expand(key, state.records.get(key) as RecordValue);
    if (watchers.every((g) => g.members.every((m) => m.cancelled))) {
      const group = (record.group = this.groupOf(record, key, state));
      mergeGroups(group, watchers);
      yield* this.keepHiddenBody(entry, state);
      return;
    }
    // Hidden here, but links above keep this content: the first one carries the bytes now.
    const group = (record.group = this.groupOf(record, key, state));
    mergeGroups(group, watchers);
    dropCancelled(group);
    const first = group.members.shift() as LinkMember;
    yield* this.writeEntry({ ...out, name: keyToBuffer(first.key) }, entry);
    this.markWritten(group, first.key);
    yield* this.flushGroup(group, state);
  }

  /**
   * A later entry of the same layer replaces the entry at `key`, and the output would hold a
   * path twice: `key` itself (`rewritten`: both written), or the hardlinks of higher layers
   * that the earlier entry took and that are written again after this one. Learnt, so that a
   * restart leaves the earlier entry out; a restartable flatten stops writing from here on.
   */
  private noteDuplicate(key: PathKey, state: LayerState, rewritten: boolean): void {
    const previous = state.records.get(key);
    if (previous === undefined) return;
    if (!(rewritten && flagsOf(previous) & R_WRITTEN) && !state.watchHits.has(key)) return;
    const ordinal = typeof previous === 'number' ? Math.floor(previous / R_FLAGS) : previous.ordinal;
    let ordinals = this.learned.get(state.index);
    if (ordinals === undefined) this.learned.set(state.index, (ordinals = new Set()));
    if (ordinals.has(ordinal)) return;
    ordinals.add(ordinal);
    state.duplicates++;
    if (state.duplicateExamples.length < MAX_EXAMPLES) state.duplicateExamples.push(key);
    if (this.options.restartable === true) this.discarding = true;
  }

  /** The groups of higher layers waiting for `key`, including those a same-layer duplicate takes over. */
  private takeWatchers(key: PathKey, state: LayerState): LinkGroup[] {
    if (this.watches.size === 0 && state.watchHits.size === 0) return [];
    const groups = this.watches.take(key, state.index);
    const earlier = state.watchHits.get(key);
    if (earlier) {
      // Written already, or still waiting in a group that no longer owns them: either way
      // they are written again, after this entry.
      const again = newGroup(state.index + 1);
      for (const member of earlier) {
        if (member.cancelled) continue;
        member.cancelled = true;
        again.members.push({ key: member.key, header: member.header });
      }
      groups.push(again);
    }
    if (groups.length > 0) state.watchHits.set(key, groups.flatMap((g) => g.members));
    return groups;
  }

  /** The group a hardlink to `target` joins, as the target stands at this point of the layer. */
  private targetGroup(target: PathKey, linkKey: PathKey, state: LayerState): LinkGroup {
    const layer = state.index;
    const value = state.records.get(target);
    if (value !== undefined) {
      if (flagsOf(value) & R_DIR) {
        throw new HardlinkTargetError(
          `layer ${layer}: hardlink "${printable(linkKey)}" points at directory "${printable(target)}"`,
        );
      }
      const record = state.expand(target, value);
      return (record.group ??= this.groupOf(record, target, state));
    }
    if (this.deletedInLayer(target, state) || layer === this.topDown[this.topDown.length - 1]?.index) {
      throw new HardlinkTargetError(
        `layer ${layer}: hardlink "${printable(linkKey)}" points at "${printable(target)}", which does not exist there`,
      );
    }
    const group = newGroup(layer, linkKey);
    this.watches.add(target, group);
    return group;
  }

  /** A new group for a non-link entry of the current layer. */
  private groupOf(record: LayerRecord, key: PathKey, state: LayerState): LinkGroup {
    const group = newGroup(state.index);
    if (record.flags & R_WRITTEN) this.markWritten(group, key);
    else group.source = { layer: state.index, ordinal: record.ordinal, header: record.header };
    return group;
  }

  private markWritten(group: LinkGroup, key: PathKey): void {
    group.writtenPaths.push(key);
    group.outputPath ??= key;
  }

  /**
   * A same-layer duplicate is about to replace `key` in the output: the inode that was there
   * lives on only in its other links, so groups must stop pointing at `key`.
   */
  private displaceOutputPath(key: PathKey, state: LayerState): void {
    const previous = state.records.get(key);
    if (previous === undefined || typeof previous === 'number') return;
    if (previous.member) previous.member.cancelled = true;
    const group = previous.group;
    if (!group || !group.writtenPaths.includes(key)) return;
    group.writtenPaths = group.writtenPaths.filter((p) => p !== key);
    group.outputPath = group.writtenPaths[0];
    // A written entry kept no header: the group then reads the layer again for it.
    if (group.source === undefined && !(previous.flags & R_LINK)) {
      group.source = { layer: state.index, ordinal: previous.ordinal, header: previous.header };
    }
  }

  /** Writes what a group can write now: links to its output path, or a copy of its source. */
  private async *flushGroup(group: LinkGroup, state: LayerState): AsyncGenerator<Buffer> {
    dropCancelled(group);
    if (group.members.length === 0) return;
    if (group.outputPath === undefined) {
      const source = group.source;
      if (!source || source.layer !== state.index) return;
      const body = this.sourceBody(source, state);
      if (body === undefined || source.header === undefined) {
        state.refetch.set(source.ordinal, group);
        return;
      }
      const first = group.members.shift() as LinkMember;
      // The kept body is the expanded content: the copy is written expanded.
      this.pushHeader({ ...withoutSparse(source.header), name: keyToBuffer(first.key) });
      this.push(body);
      this.pushPadding(body.length);
      this.markWritten(group, first.key);
    }
    const target = keyToBuffer(group.outputPath as PathKey);
    for (const member of group.members.splice(0)) {
      this.pushHeader(asLink(member.header, target));
      group.writtenPaths.push(member.key);
    }
    if (this.pendingBytes >= OUTPUT_BATCH) yield* this.drain();
  }

  private sourceBody(source: { ordinal: number; header: TarHeader | undefined }, state: LayerState): Buffer | undefined {
    if (source.header === undefined) return undefined;
    if (source.header.type !== 'file' || source.header.size === 0) return Buffer.alloc(0);
    return state.hiddenBodies.get(source.ordinal);
  }

  /** Reads the layer once more for the bodies of hidden files that links need. */
  private async *refetchSources(layer: FlattenLayer, state: LayerState): AsyncGenerator<Buffer> {
    const abort = linkedController(this.options.signal);
    let release = NO_RELEASE;
    try {
      const source = heldOpen(await layer.open(abort.signal));
      release = source.release;
      for await (const entry of readTar(source, { signal: abort.signal, onWarning: this.readerWarning(layer) })) {
        const group = state.refetch.get(entry.ordinal);
        if (!group) continue;
        state.refetch.delete(entry.ordinal);
        dropCancelled(group);
        const first = group.members.shift();
        if (first && group.outputPath === undefined) {
          yield* this.writeEntry({ ...entry.header, name: keyToBuffer(first.key) }, entry);
          this.markWritten(group, first.key);
        } else if (first) group.members.unshift(first);
        yield* this.flushGroup(group, state);
        if (state.refetch.size === 0) break;
      }
    } catch (error) {
      throw await this.failure(layer, error);
    } finally {
      await release();
      abort.abort();
    }
  }

  /** Links still waiting for a target that this layer deleted: case 3 of DESIGN.md §3. */
  private checkWatchesAfter(layer: FlattenLayer, state: LayerState): void {
    for (const [target, group] of this.watches.waitingAbove(layer.index)) {
      if (this.deletedInLayer(target, state)) {
        throw new HardlinkTargetError(
          `layer ${group.createdAt}: hardlink "${printable(group.firstLink ?? '')}" points at "${printable(target)}", which layer ${layer.index} (${layer.name}) deleted`,
        );
      }
    }
  }

  /** Whether the current layer deleted `key` (whiteout, opaque or non-directory above it). */
  private deletedInLayer(key: PathKey, state: LayerState): boolean {
    if (state.whiteouts.has(key)) return true;
    let current = key;
    while (current !== '') {
      current = parentKey(current);
      if (state.whiteouts.has(current) || state.opaques.has(current)) return true;
      const record = state.records.get(current);
      if (record !== undefined && !(flagsOf(record) & R_DIR)) return true;
    }
    return false;
  }

  private kindOf(header: TarHeader, linkTarget: PathKey | undefined, state: LayerState): ParentKind {
    if (header.type === 'directory') return DIR_KIND;
    if (header.type === 'symlink') return { kind: 'symlink', target: header.linkname.toString('latin1') };
    if (header.type === 'link' && linkTarget !== undefined) {
      const target = state.kindAt(linkTarget);
      if (target?.kind === 'symlink') return target;
    }
    return OTHER_KIND;
  }

  private recordHidden(entry: TarEntry, key: PathKey, state: LayerState): void {
    const isDir = entry.header.type === 'directory';
    state.setRecord(
      key,
      isDir
        ? packRecord(entry.ordinal, R_DIR | R_NOKIND)
        : { ordinal: entry.ordinal, flags: R_NOKIND, header: entry.header, group: undefined },
    );
    state.skipped++;
  }

  /** Keeps a hidden file's bytes while the budget lasts; past it, a re-fetch gets them. */
  private async *keepHiddenBody(entry: TarEntry, state: LayerState): AsyncGenerator<Buffer> {
    const { header } = entry;
    if (header.type !== 'file' || header.size === 0) return;
    if (state.hiddenBytes + header.size > this.budget) return;
    const chunks: Buffer[] = [];
    for await (const chunk of entry.body()) chunks.push(chunk);
    // A copy, so a tiny file does not pin the whole network chunk it arrived in.
    const body = Buffer.concat(chunks);
    state.hiddenBodies.set(entry.ordinal, body);
    state.hiddenBytes += body.length;
  }

  /**
   * Writes `header` and the entry's body: a sparse file as it is stored (its segments only,
   * DESIGN.md §3; its map grown to whole blocks where GNU tar needs it), or expanded (holes
   * as zeros) with `expandSparse`.
   */
  private async *writeEntry(header: TarHeader, entry: TarEntry): AsyncGenerator<Buffer> {
    // Sparse files only: an object per entry would cost the 100k-small-files case.
    const sparse = header.sparse === undefined ? undefined : sparseForm(header, header.sparse, entry, this.options.expandSparse === true);
    const out = sparse?.out ?? header;
    this.pushHeader(out);
    const length = bodyLength(out);
    if (length === 0) return;
    const body = sparse === undefined ? (): AsyncIterable<Buffer> => entry.body() : sparse.body;
    let bytes = 0;
    if (length <= SMALL_BODY) {
      // Small files join the batch: one tiny chunk per file costs more downstream (stream
      // plumbing, writev) than the copy.
      for await (const chunk of body()) {
        bytes += chunk.length;
        this.push(chunk);
      }
    } else {
      yield* this.drain();
      for await (const chunk of body()) {
        bytes += chunk.length;
        yield chunk;
      }
    }
    if (bytes !== length) {
      throw new MalformedArchiveError(
        `entry "${printable(out.name.toString('latin1'))}": body is ${bytes} bytes, header says ${length}`,
      );
    }
    this.pushPadding(length);
  }

  /** Learns every directory and symlink of the layers up to `top`, base first, headers only. */
  private async prePass(top: number): Promise<void> {
    const skeleton = new Skeleton();
    const baseFirst = [...this.topDown].reverse().filter((layer) => layer.index <= top);
    for (const layer of baseFirst) {
      const abort = linkedController(this.options.signal);
      let release = NO_RELEASE;
      try {
        const source = heldOpen(await layer.open(abort.signal));
        release = source.release;
        for await (const entry of readTar(source, { signal: abort.signal, onWarning: this.readerWarning(layer) })) {
          skeleton.apply(layer.index, entry.ordinal, entry.header);
        }
      } catch (error) {
        throw await this.failure(layer, error);
      } finally {
        await release();
        abort.abort();
      }
    }
    this.resolutions = skeleton.resolutions;
  }

  /**
   * Small writes (headers, padding, small bodies) go straight into `batch`; what is yielded is
   * a slice of it that is never written again (the next writes go after it).
   */
  private batch: Buffer = Buffer.allocUnsafe(BATCH_CAPACITY);
  /** Start of the bytes of `batch` not yet moved to `pending`. */
  private batchStart = 0;
  private batchEnd = 0;

  private room(length: number): boolean {
    if (this.batchEnd + length <= this.batch.length) return true;
    if (length > SMALL_BODY + BLOCK) return false;
    this.sealBatch();
    this.batch = Buffer.allocUnsafe(BATCH_CAPACITY);
    this.batchStart = this.batchEnd = 0;
    return true;
  }

  /** Moves the unsealed bytes of `batch` to `pending`. */
  private sealBatch(): void {
    if (this.batchEnd === this.batchStart) return;
    this.pending.push(this.batch.subarray(this.batchStart, this.batchEnd));
    this.batchStart = this.batchEnd;
  }

  private pushHeader(header: TarHeader): void {
    if (this.room(BLOCK) && encodeHeaderInto(header, this.batch, this.batchEnd)) {
      this.batchEnd += BLOCK;
      this.pendingBytes += BLOCK;
      return;
    }
    this.push(encodeHeader(header));
  }

  private pushPadding(size: number): void {
    const length = paddingFor(size).length;
    if (length === 0) return;
    this.room(length);
    this.batch.fill(0, this.batchEnd, this.batchEnd + length);
    this.batchEnd += length;
    this.pendingBytes += length;
  }

  private push(buffer: Buffer): void {
    const length = buffer.length;
    if (length === 0) return;
    if (length <= SMALL_BODY && this.room(length)) {
      buffer.copy(this.batch, this.batchEnd);
      this.batchEnd += length;
    } else {
      this.sealBatch();
      this.pending.push(buffer);
    }
    this.pendingBytes += length;
  }

  private *drain(): Generator<Buffer> {
    if (this.pendingBytes === 0) return;
    this.sealBatch();
    const out = this.pending.length === 1 ? (this.pending[0] as Buffer) : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    yield out;
  }
}

function dropCancelled(group: LinkGroup): void {
  if (group.members.some((m) => m.cancelled)) group.members = group.members.filter((m) => !m.cancelled);
}

function asLink(header: TarHeader, target: Buffer): TarHeader {
  return { ...header, type: 'link', size: 0, linkname: target };
}

/** The header and body to write for a sparse file: as stored (aligned for GNU tar), or whole. */
function sparseForm(
  header: TarHeader,
  map: SparseMap,
  entry: TarEntry,
  expandSparse: boolean,
): { out: TarHeader; body: () => AsyncIterable<Buffer> } {
  if (expandSparse) return { out: withoutSparse(header), body: () => entry.body() };
  if (isBlockAligned(map)) return { out: header, body: () => entry.storedBody() };
  const aligned = alignSparse(map);
  return { out: { ...header, sparse: aligned }, body: () => alignedData(entry.storedBody(), map, aligned) };
}

function withoutSparse(header: TarHeader): TarHeader {
  if (header.sparse === undefined) return header;
  const { sparse: _dropped, ...expanded } = header;
  return expanded;
}

function layerLabel(layer: FlattenLayer): string {
  return `layer ${layer.index} (${layer.name})`;
}

/** Whether a name's `..` climbs above the root. */
function climbs(name: Buffer): boolean {
  let pinned = false;
  normalizeEntryName(name, () => (pinned = true));
  return pinned;
}

function implicitDir(key: PathKey): TarHeader {
  return {
    // The root entry is `./` (the writer adds the slash of a directory).
    name: key === ROOT ? Buffer.from('.') : keyToBuffer(key),
    type: 'directory',
    mode: IMPLICIT_DIR_MODE,
    uid: 0,
    gid: 0,
    size: 0,
    mtime: 0,
    linkname: Buffer.alloc(0),
    uname: Buffer.alloc(0),
    gname: Buffer.alloc(0),
    devmajor: 0,
    devminor: 0,
    pax: [],
  };
}

const NO_RELEASE = (): Promise<void> => Promise.resolve();

/**
 * `source` for the tar reader, which lets go of it when it stops early; held open here until
 * {@link release}, so that a failure can first be explained by reading the layer's stored
 * bytes on (see {@link FlattenLayer.explainFailure}).
 */
function heldOpen(source: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> & { release(): Promise<void> } {
  const iterator = source[Symbol.asyncIterator]();
  let done = false;
  return {
    [Symbol.asyncIterator]: () => ({
      next: async () => {
        const result = await iterator.next();
        if (result.done === true) done = true;
        return result;
      },
      return: () => Promise.resolve({ done: true, value: undefined }),
    }),
    release: async () => {
      if (done) return;
      done = true;
      try {
        await iterator.return?.();
      } catch {
        // The pass is over either way; its failure, if any, was reported.
      }
    },
  };
}

/** A controller that aborts with `parent`, so one pass can be stopped on its own. */
function linkedController(parent: AbortSignal | undefined): AbortController {
  const controller = new AbortController();
  if (parent) {
    if (parent.aborted) controller.abort(parent.reason);
    else parent.addEventListener('abort', () => controller.abort(parent.reason), { once: true, signal: controller.signal });
  }
  return controller;
}
