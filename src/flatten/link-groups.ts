import { HardlinkTargetError } from '../errors.js';
import type { TarHeader } from '../streams/tar/types.js';
import { LinkWatches, newGroup, type LinkGroup, type LinkMember } from './hardlinks.js';
import { R_DIR, R_LINK, R_WRITTEN, flagsOf, type LayerRecord, type LayerState } from './layer-state.js';
import type { OutputBatch } from './output.js';
import { keyToBuffer, printable, type PathKey } from './paths.js';

/**
 * The hardlink groups of a flatten (DESIGN.md §3, "Hardlinks"): which inode a link joins,
 * links of higher layers waiting for their target in a lower one, and writing what a group
 * can write. Writes only headers and kept bodies, into the output batch; no I/O.
 */
export class LinkGroups {
  private readonly watches = new LinkWatches();

  /** The groups of higher layers waiting for `key`, including those a same-layer duplicate takes over. */
  takeWatchers(key: PathKey, state: LayerState): LinkGroup[] {
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
  targetGroup(target: PathKey, linkKey: PathKey, state: LayerState): LinkGroup {
    const layer = state.index;
    const value = state.get(target);
    if (value !== undefined) {
      if (flagsOf(value) & R_DIR) {
        throw new HardlinkTargetError(
          `layer ${layer}: hardlink "${printable(linkKey)}" points at directory "${printable(target)}"`,
        );
      }
      const record = state.expand(target, value);
      return (record.group ??= this.groupOf(record, target, state));
    }
    if (state.deleted(target) || state.isBase) {
      throw new HardlinkTargetError(
        `layer ${layer}: hardlink "${printable(linkKey)}" points at "${printable(target)}", which does not exist there`,
      );
    }
    const group = newGroup(layer, linkKey);
    this.watches.add(target, group);
    return group;
  }

  /** A new group for a non-link entry of the current layer. */
  groupOf(record: LayerRecord, key: PathKey, state: LayerState): LinkGroup {
    const group = newGroup(state.index);
    if (record.flags & R_WRITTEN) markWritten(group, key);
    else group.source = { layer: state.index, ordinal: record.ordinal, header: record.header };
    return group;
  }

  /**
   * A same-layer duplicate is about to replace `key` in the output: the inode that was there
   * lives on only in its other links, so groups must stop pointing at `key`.
   */
  displaceOutputPath(key: PathKey, state: LayerState): void {
    const previous = state.get(key);
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

  /**
   * A same-layer duplicate is about to replace `key`: links of higher layers that found their
   * target at the earlier entry are written again after the new one (see takeWatchers), so
   * their paths stop holding the earlier inode, whether or not the earlier entry itself was
   * written (a hidden one hands its content to the first such link).
   */
  releaseWatchHits(key: PathKey, state: LayerState): void {
    const hits = state.watchHits.get(key);
    if (hits === undefined) return;
    const previous = state.get(key);
    const group = previous === undefined || typeof previous === 'number' ? undefined : previous.group;
    if (!group) return;
    const leaving = new Set(hits.filter((member) => !member.cancelled).map((member) => member.key));
    if (leaving.size === 0) return;
    group.writtenPaths = group.writtenPaths.filter((p) => !leaving.has(p));
    group.outputPath = group.writtenPaths[0];
  }

  /**
   * Writes what a group can write now: links to its output path, or a copy of its source
   * when this layer kept its body. A source whose body was not kept is queued in
   * `state.refetch`: the layer is read again for it.
   */
  flush(group: LinkGroup, state: LayerState, out: OutputBatch): void {
    dropCancelled(group);
    if (group.members.length === 0) return;
    if (group.outputPath === undefined) {
      const source = group.source;
      if (!source || source.layer !== state.index) return;
      const body = sourceBody(source, state);
      if (body === undefined || source.header === undefined) {
        state.refetch.set(source.ordinal, group);
        return;
      }
      const first = group.members.shift() as LinkMember;
      // The kept body is the expanded content: the copy is written expanded.
      out.pushHeader({ ...withoutSparse(source.header), name: keyToBuffer(first.key) });
      out.push(body);
      out.pushPadding(body.length);
      markWritten(group, first.key);
    }
    const target = keyToBuffer(group.outputPath as PathKey);
    for (const member of group.members.splice(0)) {
      out.pushHeader(asLink(member.header, target));
      group.writtenPaths.push(member.key);
    }
  }

  /** Links still waiting for a target that this layer deleted: case 3 of DESIGN.md §3. */
  checkAfter(state: LayerState, layerName: string): void {
    for (const [target, group] of this.watches.waitingAbove(state.index)) {
      if (state.deleted(target)) {
        throw new HardlinkTargetError(
          `layer ${group.createdAt}: hardlink "${printable(group.firstLink ?? '')}" points at "${printable(target)}", which layer ${state.index} (${layerName}) deleted`,
        );
      }
    }
  }

  /** Once every layer streamed: a link whose target no layer had is an error. */
  checkNoneWaiting(): void {
    for (const [target, group] of this.watches.waitingAbove(-1)) {
      throw new HardlinkTargetError(
        `layer ${group.createdAt}: hardlink "${printable(group.firstLink ?? '')}" points at "${printable(target)}", which no lower layer has`,
      );
    }
  }
}

export function markWritten(group: LinkGroup, key: PathKey): void {
  group.writtenPaths.push(key);
  group.outputPath ??= key;
}

export function dropCancelled(group: LinkGroup): void {
  if (group.members.some((m) => m.cancelled)) group.members = group.members.filter((m) => !m.cancelled);
}

export function withoutSparse(header: TarHeader): TarHeader {
  if (header.sparse === undefined) return header;
  const { sparse: _dropped, ...expanded } = header;
  return expanded;
}

function asLink(header: TarHeader, target: Buffer): TarHeader {
  return { ...header, type: 'link', size: 0, linkname: target };
}

function sourceBody(source: { ordinal: number; header: TarHeader | undefined }, state: LayerState): Buffer | undefined {
  if (source.header === undefined) return undefined;
  if (source.header.type !== 'file' || source.header.size === 0) return Buffer.alloc(0);
  return state.hiddenBodies.get(source.ordinal);
}
