import { DigestMismatchError, HardlinkTargetError, MalformedArchiveError, SizeMismatchError, throwIfAborted } from '../errors.js';
import { worthExplaining } from '../streams/checked-layer.js';
import { readTar } from '../streams/tar/reader.js';
import type { SparseMap, TarEntry, TarHeader, TarWarning } from '../streams/tar/types.js';
import { alignedData, alignSparse, isBlockAligned } from '../streams/tar/sparse-align.js';
import { bodyLength, END_OF_ARCHIVE } from '../streams/tar/writer.js';
import { decide } from './decide.js';
import { mergeGroups, type LinkMember } from './hardlinks.js';
import { detached, DIR_KIND, LayerState, RecordTable, OTHER_KIND, R_DIR, R_LINK, R_NOKIND, R_SYMLINK, R_WRITTEN, packRecord, type LayerRecord, type RecordValue } from './layer-state.js';
import { DuplicateLedger, FlattenRestart, type FlattenLessons } from './lessons.js';
import { dropCancelled, LinkGroups, markWritten, withoutSparse } from './link-groups.js';
import { OutputBatch, SMALL_BODY } from './output.js';
import { childKey, classifyName, isAufsMetaKey, keyToBuffer, printable, ROOT, WHITEOUT_PREFIX, type PathKey } from './paths.js';
import { Placer } from './placement.js';
import type { ParentKind } from './resolve.js';
import { Skeleton } from './skeleton.js';
import { MAX_LAYERS, Visibility } from './visibility.js';

export { FlattenRestart, type FlattenLessons, type Superseded } from './lessons.js';

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
const IMPLICIT_DIR_MODE = 0o755;

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

/**
 * Drives the passes over the layers and writes what the decisions say. The decisions live
 * beside it, free of streams: {@link Placer} (where an entry lands), {@link decide} (whether
 * it is written), {@link LinkGroups} (hardlinks), {@link DuplicateLedger} (one entry per path).
 */
class Flattener {
  private readonly visibility = new Visibility();
  /** The current layer's records, on the same tree of paths as {@link visibility}. */
  private readonly records = new RecordTable(this.visibility.trie);
  private readonly links = new LinkGroups();
  private readonly placer = new Placer();
  private readonly out = new OutputBatch();
  private readonly ledger: DuplicateLedger;
  private readonly budget: number;
  private readonly topDown: FlattenLayer[];
  /** Per layer that wrote a path twice: `layer N (name) holds K paths twice`. */
  private readonly duplicateNotes: string[] = [];
  /** Aborts what layers fetched ahead and nobody took (the flatten ended, or failed). */
  private readonly ahead: AbortController;

  constructor(
    layers: readonly FlattenLayer[],
    private readonly options: FlattenOptions,
  ) {
    this.topDown = [...layers].sort((a, b) => b.index - a.index);
    const highest = this.topDown[0]?.index ?? 0;
    // Layer indices are kept in 16 bits per path.
    if (highest >= MAX_LAYERS) throw new MalformedArchiveError(`an image of ${highest + 1} layers is more than the ${MAX_LAYERS} the flattener takes`);
    this.ahead = linkedController(options.signal);
    this.budget = options.hiddenBodyBudget ?? DEFAULT_HIDDEN_BODY_BUDGET;
    this.ledger = new DuplicateLedger(options.lessons, options.restartable === true);
  }

  async *run(): AsyncGenerator<Buffer> {
    try {
      for await (const chunk of this.runLayers()) {
        if (!this.ledger.discarding) yield chunk;
      }
      if (this.ledger.discarding) {
        throw new FlattenRestart(
          this.ledger.lessons(undefined),
          `${this.duplicateNotes.join('; ')}: starting over to write each path once`,
        );
      }
    } finally {
      this.ahead.abort();
    }
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
    if (damaged && this.options.restartable === true && !this.ledger.refetched(layer.index)) {
      return new FlattenRestart(
        this.ledger.lessons(layer.index),
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
      const state = new LayerState(layer.index, layer === this.topDown[this.topDown.length - 1], this.records);
      let startAt = 0;
      for (;;) {
        const pendingAt = yield* this.streamLayer(layer, state, startAt);
        if (pendingAt === undefined) break;
        await this.prePass(layer.index);
        startAt = pendingAt;
      }
      // Nothing a discarding flatten writes is kept: no need to read a layer again for it.
      if (state.refetch.size > 0 && !this.ledger.discarding) yield* this.refetchSources(layer, state);
      this.links.checkAfter(state, layer.name);
      this.layerWarnings(layer, state);
      yield* this.out.drain();
      this.options.onLayerDone?.({
        index: layer.index,
        entriesWritten: state.written,
        entriesSkipped: state.skipped,
      });
    }
    this.links.checkNoneWaiting();
    // The root entry `./` that no layer gave, then the parents no layer declared.
    if (!this.visibility.rootWritten()) this.out.pushHeader(implicitDir(ROOT));
    for (const key of this.visibility.implicitParents()) this.out.pushHeader(implicitDir(key));
    this.out.push(END_OF_ARCHIVE);
    yield* this.out.drain();
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
        const placement = this.placer.place(entry, state);
        if (placement === null) return entry.ordinal;
        yield* this.handleEntry(entry, placement.key, placement.target, placement.asNamed, state);
        if (this.out.full) yield* this.out.drain();
      }
      return undefined;
    } catch (error) {
      throw await this.failure(layer, error);
    } finally {
      await release();
      abort.abort();
    }
  }

  /**
   * Acts on one placed entry: whiteouts and aufs metadata are recorded, the rest is judged by
   * {@link decide} and written, recorded for the layer's later entries, and joined to the
   * hardlink groups it belongs to. `asNamed`: `key` is the entry's name byte for byte.
   */
  private async *handleEntry(
    entry: TarEntry,
    key: PathKey,
    targetKey: PathKey | undefined,
    asNamed: boolean,
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
      key === ROOT ? { ...header, name: Buffer.from('.') } : asNamed ? header : { ...header, name: keyToBuffer(key) };
    // A left-out entry makes no parents: leaving out a file must not conjure its directory.
    const kept = this.options.filter?.(out) ?? true;
    const superseded = this.ledger.superseded(layer, entry.ordinal);
    const { written, rewrite } = decide(this.visibility, { parent, base, key, layer, isDir, kept, superseded });
    let flags = (written ? R_WRITTEN : 0) | (isDir ? R_DIR : 0);
    const kind = kindOf(header, targetKey, state);
    if (kind.kind === 'symlink') {
      flags |= R_SYMLINK;
      state.symlinks.set(key, kind);
    }
    if ((written && rewrite) || state.watchHits.has(key)) this.ledger.note(key, state, written && rewrite);
    if (written && rewrite) this.links.displaceOutputPath(key, state);
    if (!superseded) this.links.releaseWatchHits(key, state);

    if (header.type === 'link') {
      const group = this.links.targetGroup(targetKey ?? ROOT, key, state);
      const record: LayerRecord = { ordinal: entry.ordinal, flags: flags | R_LINK, header: undefined, group };
      state.setRecordAt(this.visibility.currentNode, key, record);
      if (written) {
        record.member = { key, header: out };
        group.members.push(record.member);
        state.written++;
      } else state.skipped++;
      // Links of higher layers to this path mean the entry that replaces it.
      if (!superseded) mergeGroups(group, this.links.takeWatchers(key, state));
      this.links.flush(group, state, this.out);
      return;
    }

    // Only a hidden non-directory can become a group's content source: only it keeps a header.
    state.setRecordAt(
      this.visibility.currentNode,
      key,
      written || isDir ? packRecord(entry.ordinal, flags) : { ordinal: entry.ordinal, flags, header: detached(header), group: undefined },
    );
    const watchers = superseded ? [] : this.links.takeWatchers(key, state);
    if (isDir && watchers.some((g) => g.members.some((m) => !m.cancelled))) {
      throw new HardlinkTargetError(`layer ${layer}: hardlink target "${printable(key)}" is a directory`);
    }
    if (written) {
      state.written++;
      yield* this.writeEntry(out, entry);
      if (watchers.length > 0) {
        const record = state.expand(key, state.get(key) as RecordValue);
        const group = (record.group = this.links.groupOf(record, key, state));
        mergeGroups(group, watchers);
        this.links.flush(group, state, this.out);
      }
      return;
    }
    state.skipped++;
    if (watchers.length === 0) {
      yield* this.keepHiddenBody(entry, state);
      return;
    }
    const record = state.expand(key, state.get(key) as RecordValue);
    if (watchers.every((g) => g.members.every((m) => m.cancelled))) {
      const group = (record.group = this.links.groupOf(record, key, state));
      mergeGroups(group, watchers);
      yield* this.keepHiddenBody(entry, state);
      return;
    }
    // Hidden here, but links above keep this content: the first one carries the bytes now.
    const group = (record.group = this.links.groupOf(record, key, state));
    mergeGroups(group, watchers);
    dropCancelled(group);
    const first = group.members.shift() as LinkMember;
    yield* this.writeEntry({ ...out, name: keyToBuffer(first.key) }, entry);
    markWritten(group, first.key);
    this.links.flush(group, state, this.out);
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
          markWritten(group, first.key);
        } else if (first) group.members.unshift(first);
        this.links.flush(group, state, this.out);
        if (this.out.full) yield* this.out.drain();
        if (state.refetch.size === 0) break;
      }
    } catch (error) {
      throw await this.failure(layer, error);
    } finally {
      await release();
      abort.abort();
    }
  }

  private recordHidden(entry: TarEntry, key: PathKey, state: LayerState): void {
    const isDir = entry.header.type === 'directory';
    state.setRecord(
      key,
      isDir
        ? packRecord(entry.ordinal, R_DIR | R_NOKIND)
        : { ordinal: entry.ordinal, flags: R_NOKIND, header: detached(entry.header), group: undefined },
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
    state.keepBody(entry.ordinal, chunks);
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
    const output = this.out;
    output.pushHeader(out);
    const length = bodyLength(out);
    if (length === 0) return;
    const body = sparse === undefined ? entry.body() : sparse.body();
    let bytes = 0;
    if (length <= SMALL_BODY) {
      // Small files join the batch: one tiny chunk per file costs more downstream (stream
      // plumbing, writev) than the copy.
      for await (const chunk of body) {
        bytes += chunk.length;
        output.push(chunk);
      }
    } else {
      yield* output.drain();
      for await (const chunk of body) {
        bytes += chunk.length;
        yield chunk;
      }
    }
    if (bytes !== length) {
      throw new MalformedArchiveError(
        `entry "${printable(out.name.toString('latin1'))}": body is ${bytes} bytes, header says ${length}`,
      );
    }
    output.pushPadding(length);
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
    this.placer.resolutions = skeleton.resolutions;
  }
}

/** What an entry is as a parent of later entries (a hardlink to a symlink is a symlink). */
function kindOf(header: TarHeader, linkTarget: PathKey | undefined, state: LayerState): ParentKind {
  if (header.type === 'directory') return DIR_KIND;
  if (header.type === 'symlink') return { kind: 'symlink', target: header.linkname.toString('latin1') };
  if (header.type === 'link' && linkTarget !== undefined) {
    const target = state.kindAt(linkTarget);
    if (target?.kind === 'symlink') return target;
  }
  return OTHER_KIND;
}

function layerLabel(layer: FlattenLayer): string {
  return `layer ${layer.index} (${layer.name})`;
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
