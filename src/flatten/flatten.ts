import { HardlinkTargetError, MalformedArchiveError, throwIfAborted } from '../errors.js';
import { readTar } from '../streams/tar/reader.js';
import type { TarEntry, TarHeader } from '../streams/tar/types.js';
import { END_OF_ARCHIVE, encodeHeader, paddingFor } from '../streams/tar/writer.js';
import { LinkWatches, mergeGroups, newGroup, type LinkGroup, type LinkMember } from './hardlinks.js';
import {
  classifyName,
  isAufsMetaPath,
  joinKey,
  keyToBuffer,
  normalizeEntryName,
  parentKey,
  printable,
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
}

export interface LayerFlattenStats {
  index: number;
  entriesWritten: number;
  entriesSkipped: number;
}

export interface FlattenOptions {
  signal?: AbortSignal;
  /** Bytes of hidden same-layer files kept for hardlinks before a re-fetch is needed. */
  hiddenBodyBudget?: number;
  /** Applied after the flatten decision: a left-out path still hides its lower copies. */
  filter?: (header: Readonly<TarHeader>) => boolean;
  onLayerStart?: (index: number) => void;
  onLayerDone?: (stats: LayerFlattenStats) => void;
}

const DEFAULT_HIDDEN_BODY_BUDGET = 32 * 1024 * 1024;
/** Small writes (headers, links) are gathered up to this size before they are yielded. */
const OUTPUT_BATCH = 64 * 1024;
const IMPLICIT_DIR_MODE = 0o755;
/** Bodies up to this size are copied into the output batch instead of yielded alone. */
const SMALL_BODY = 32 * 1024;
const DIR_KIND: ParentKind = { kind: 'dir' };
const OTHER_KIND: ParentKind = { kind: 'other' };

/** What one entry of the current layer left behind, for hardlinks that refer to its path. */
interface LayerRecord {
  ordinal: number;
  header: TarHeader;
  /** Whether this entry is in the output at its own path. */
  written: boolean;
  /** For links: the inode they share. For others: set once something links to them. */
  group: LinkGroup | undefined;
  /** For a surviving link not written yet. */
  member?: LinkMember;
}

/** Everything about the layer being streamed that later entries of the same layer need. */
class LayerState {
  readonly records = new Map<PathKey, LayerRecord>();
  /** Same-layer kinds, to resolve parents before the lower layers are known. */
  readonly kinds = new Map<PathKey, ParentKind>();
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

  constructor(readonly index: number) {}
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

  constructor(
    layers: readonly FlattenLayer[],
    private readonly options: FlattenOptions,
  ) {
    this.topDown = [...layers].sort((a, b) => b.index - a.index);
    this.budget = options.hiddenBodyBudget ?? DEFAULT_HIDDEN_BODY_BUDGET;
  }

  async *run(): AsyncGenerator<Buffer> {
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
      if (state.refetch.size > 0) yield* this.refetchSources(layer, state);
      this.checkWatchesAfter(layer, state);
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
    for (const key of this.visibility.implicitParents()) this.push(encodeHeader(implicitDir(key)));
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
    try {
      const source = await layer.open(abort.signal);
      for await (const entry of readTar(source, { signal: abort.signal })) {
        if (entry.ordinal < startAt) continue;
        const placed = this.place(entry, state);
        if (placed === null) return entry.ordinal;
        yield* this.handleEntry(entry, placed.path, placed.linkTarget, state);
        if (this.pendingBytes >= OUTPUT_BATCH) yield* this.drain();
      }
      return undefined;
    } finally {
      abort.abort();
    }
  }

  /**
   * Where an entry lands: its parents resolved through symlinks. `null` when a parent depends
   * on layers not read yet (the entry is pending until the pre-pass).
   */
  private place(
    entry: TarEntry,
    state: LayerState,
  ): { path: string[]; linkTarget: string[] | undefined } | null {
    const { header, ordinal } = entry;
    const name = normalizeEntryName(header.name);
    const target = header.type === 'link' ? normalizeEntryName(header.linkname, 'hardlink target') : undefined;
    if (this.resolutions) {
      const known = this.resolutions.get(state.index, ordinal);
      return { path: known?.path ?? name, linkTarget: known?.linkTarget ?? target };
    }
    const isBase = state.index === this.topDown[this.topDown.length - 1]?.index;
    const lookup = (key: PathKey): ParentKind | undefined | 'unknown' => {
      const kind = state.kinds.get(key);
      if (kind) return kind;
      if (isBase || state.whiteouts.has(key)) return undefined;
      return 'unknown';
    };
    const path = resolveWithBase(name, lookup);
    if (path === null) return null;
    if (!target) return { path, linkTarget: undefined };
    const linkTarget = resolveWithBase(target, lookup);
    if (linkTarget === null) return null;
    return { path, linkTarget };
  }

  private async *handleEntry(
    entry: TarEntry,
    path: string[],
    linkTarget: string[] | undefined,
    state: LayerState,
  ): AsyncGenerator<Buffer> {
    const { header } = entry;
    const key = joinKey(path);
    const base = path[path.length - 1];
    const layer = state.index;

    if (isAufsMetaPath(path)) {
      // Never written, but a hardlink into `.wh..wh.plnk/` takes that file's content.
      this.recordHidden(entry, key, state);
      yield* this.keepHiddenBody(entry, state);
      return;
    }
    if (base !== undefined) {
      const meaning = classifyName(base);
      if (meaning.kind === 'opaque') {
        const dir = path.slice(0, -1);
        this.visibility.recordOpaque(dir, layer);
        state.opaques.add(joinKey(dir));
        return;
      }
      if (meaning.kind === 'whiteout') {
        const victim = [...path.slice(0, -1), meaning.name];
        this.visibility.recordWhiteout(victim, layer);
        state.whiteouts.add(joinKey(victim));
        return;
      }
    }

    const isDir = header.type === 'directory';
    // The root entry keeps the name `./`; every other name loses its `./`.
    const out: TarHeader = { ...header, name: key === '' ? Buffer.from('.') : keyToBuffer(key) };
    // A left-out entry makes no parents: leaving out a file must not conjure its directory.
    const kept = this.options.filter?.(out) ?? true;
    if (kept) this.visibility.markParentsNeeded(path.slice(0, -1), layer);
    let verdict = this.visibility.judge(path, layer);
    if (!isDir && verdict !== 'hidden' && this.visibility.hasHigherDescendants(path, layer)) {
      // Higher layers put entries below this path, so base first it must have become a
      // directory again later in this layer: writing it would make an extractor replace a
      // non-empty directory. It still replaced what lower layers had below it.
      verdict = 'shadowed';
    }
    if (!isDir && verdict === 'shadowed') this.visibility.recordCover(path, layer);
    if (verdict === 'visible') {
      const earlier = this.visibility.writtenInLayer(path, layer);
      if (!isDir && earlier && (earlier.dir || earlier.hasChildren)) {
        throw new MalformedArchiveError(
          `layer ${layer}: directory "${printable(key)}" is replaced by a non-directory within the same layer`,
        );
      }
      this.visibility.recordWrite(path, layer, isDir);
    }
    const written = verdict === 'visible' && kept;
    state.kinds.set(key, this.kindOf(header, linkTarget, state));
    if (written) this.displaceOutputPath(key, state);

    if (header.type === 'link') {
      const targetKey = joinKey(linkTarget ?? []);
      const group = this.targetGroup(targetKey, key, state);
      const record: LayerRecord = { ordinal: entry.ordinal, header: out, written, group };
      state.records.set(key, record);
      if (written) {
        record.member = { key, header: out };
        group.members.push(record.member);
        state.written++;
      } else state.skipped++;
      mergeGroups(group, this.takeWatchers(key, state));
      yield* this.flushGroup(group, state);
      return;
    }

    const record: LayerRecord = { ordinal: entry.ordinal, header: out, written, group: undefined };
    state.records.set(key, record);
    const watchers = this.takeWatchers(key, state);
    if (isDir && watchers.some((g) => g.members.some((m) => !m.cancelled))) {
      throw new HardlinkTargetError(`layer ${layer}: hardlink target "${printable(key)}" is a directory`);
    }
    if (written) {
      state.written++;
      yield* this.writeEntry(out, entry);
      if (watchers.length > 0) {
        const group = (record.group = this.groupOf(record, key, state));
        mergeGroups(group, watchers);
        yield* this.flushGroup(group, state);
      }
      return;
    }
    state.skipped++;
    if (watchers.every((g) => g.members.every((m) => m.cancelled))) {
      if (watchers.length > 0) {
        const group = (record.group = this.groupOf(record, key, state));
        mergeGroups(group, watchers);
      }
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

  /** The groups of higher layers waiting for `key`, including those a same-layer duplicate takes over. */
  private takeWatchers(key: PathKey, state: LayerState): LinkGroup[] {
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
    const record = state.records.get(target);
    if (record) {
      if (record.header.type === 'directory') {
        throw new HardlinkTargetError(
          `layer ${layer}: hardlink "${printable(linkKey)}" points at directory "${printable(target)}"`,
        );
      }
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
    if (record.written) this.markWritten(group, key);
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
    if (previous?.member) previous.member.cancelled = true;
    const group = previous?.group;
    if (!group || !group.writtenPaths.includes(key)) return;
    group.writtenPaths = group.writtenPaths.filter((p) => p !== key);
    group.outputPath = group.writtenPaths[0];
    if (group.source === undefined && previous.header.type !== 'link') {
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
      if (body === undefined) {
        state.refetch.set(source.ordinal, group);
        return;
      }
      const first = group.members.shift() as LinkMember;
      this.push(encodeHeader({ ...source.header, name: keyToBuffer(first.key) }));
      this.push(body);
      this.push(paddingFor(body.length));
      this.markWritten(group, first.key);
    }
    const target = keyToBuffer(group.outputPath as PathKey);
    for (const member of group.members.splice(0)) {
      this.push(encodeHeader(asLink(member.header, target)));
      group.writtenPaths.push(member.key);
    }
    if (this.pendingBytes >= OUTPUT_BATCH) yield* this.drain();
  }

  private sourceBody(source: { ordinal: number; header: TarHeader }, state: LayerState): Buffer | undefined {
    if (source.header.type !== 'file' || source.header.size === 0) return Buffer.alloc(0);
    return state.hiddenBodies.get(source.ordinal);
  }

  /** Reads the layer once more for the bodies of hidden files that links need. */
  private async *refetchSources(layer: FlattenLayer, state: LayerState): AsyncGenerator<Buffer> {
    const abort = linkedController(this.options.signal);
    try {
      const source = await layer.open(abort.signal);
      for await (const entry of readTar(source, { signal: abort.signal })) {
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
    } finally {
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
      if (record && record.header.type !== 'directory') return true;
    }
    return false;
  }

  private kindOf(header: TarHeader, linkTarget: string[] | undefined, state: LayerState): ParentKind {
    if (header.type === 'directory') return DIR_KIND;
    if (header.type === 'symlink') return { kind: 'symlink', target: header.linkname.toString('latin1') };
    if (header.type === 'link' && linkTarget) {
      const target = state.kinds.get(joinKey(linkTarget));
      if (target?.kind === 'symlink') return target;
    }
    return OTHER_KIND;
  }

  private recordHidden(entry: TarEntry, key: PathKey, state: LayerState): void {
    state.records.set(key, {
      ordinal: entry.ordinal,
      header: { ...entry.header, name: keyToBuffer(key) },
      written: false,
      group: undefined,
    });
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

  private async *writeEntry(header: TarHeader, entry: TarEntry): AsyncGenerator<Buffer> {
    this.push(encodeHeader(header));
    if (header.type !== 'file' || header.size === 0) return;
    let bytes = 0;
    if (header.size <= SMALL_BODY) {
      // Small files join the batch: one tiny chunk per file costs more downstream (stream
      // plumbing, writev) than the copy.
      for await (const chunk of entry.body()) {
        bytes += chunk.length;
        this.push(chunk);
      }
    } else {
      yield* this.drain();
      for await (const chunk of entry.body()) {
        bytes += chunk.length;
        yield chunk;
      }
    }
    if (bytes !== header.size) {
      throw new MalformedArchiveError(
        `entry "${printable(header.name.toString('latin1'))}": body is ${bytes} bytes, header says ${header.size}`,
      );
    }
    this.push(paddingFor(header.size));
  }

  /** Learns every directory and symlink of the layers up to `top`, base first, headers only. */
  private async prePass(top: number): Promise<void> {
    const skeleton = new Skeleton();
    const baseFirst = [...this.topDown].reverse().filter((layer) => layer.index <= top);
    for (const layer of baseFirst) {
      const abort = linkedController(this.options.signal);
      try {
        const source = await layer.open(abort.signal);
        for await (const entry of readTar(source, { signal: abort.signal })) {
          skeleton.apply(layer.index, entry.ordinal, entry.header);
        }
      } finally {
        abort.abort();
      }
    }
    this.resolutions = skeleton.resolutions;
  }

  private push(buffer: Buffer): void {
    if (buffer.length === 0) return;
    this.pending.push(buffer);
    this.pendingBytes += buffer.length;
  }

  private *drain(): Generator<Buffer> {
    if (this.pendingBytes === 0) return;
    const out = this.pending.length === 1 ? (this.pending[0] as Buffer) : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    yield out;
  }
}

function resolveWithBase(
  components: string[],
  lookup: (key: PathKey) => ParentKind | undefined | 'unknown',
): string[] | null {
  if (components.length === 0) return components;
  const parents = resolveParents(components.slice(0, -1), lookup, joinKey(components));
  if (parents === null) return null;
  parents.push(components[components.length - 1] as string);
  return parents;
}

function dropCancelled(group: LinkGroup): void {
  if (group.members.some((m) => m.cancelled)) group.members = group.members.filter((m) => !m.cancelled);
}

function asLink(header: TarHeader, target: Buffer): TarHeader {
  return { ...header, type: 'link', size: 0, linkname: target };
}

function implicitDir(key: PathKey): TarHeader {
  return {
    name: keyToBuffer(key),
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

/** A controller that aborts with `parent`, so one pass can be stopped on its own. */
function linkedController(parent: AbortSignal | undefined): AbortController {
  const controller = new AbortController();
  if (parent) {
    if (parent.aborted) controller.abort(parent.reason);
    else parent.addEventListener('abort', () => controller.abort(parent.reason), { once: true, signal: controller.signal });
  }
  return controller;
}
