import type { TarHeader } from '../streams/tar/types.js';
import type { PathKey } from './paths.js';

/**
 * One inode of the flattened tree that hardlinks refer to. Its content is either already in
 * the output (`outputPath` holds it), or still to come from a `source` entry that the output
 * does not show (hidden by a higher layer), in which case the first surviving link is written
 * as a copy of that entry and the others link to it (DESIGN.md §3, case 2).
 */
export interface LinkGroup {
  /** The layer whose link created this group; a watch only matches layers below it. */
  createdAt: number;
  /** The link that created this group, for error messages. */
  firstLink: PathKey | undefined;
  /** A path of the output that holds this inode, once one does. */
  outputPath: PathKey | undefined;
  /** Every path of the output that holds this inode (for same-layer overwrites). */
  writtenPaths: PathKey[];
  /** Surviving links not written yet, in the order they were met. */
  members: LinkMember[];
  /**
   * The hidden entry whose bytes the group carries, when no output path holds it yet. Its
   * header is undefined when the entry was written and then replaced (it kept none): the
   * layer is read again for it.
   */
  source: { layer: number; ordinal: number; header: TarHeader | undefined } | undefined;
}

/** A link waiting to be written; a later same-layer entry at its path cancels it. */
export interface LinkMember {
  key: PathKey;
  header: TarHeader;
  cancelled?: boolean;
}

export function newGroup(createdAt: number, firstLink?: PathKey): LinkGroup {
  return { createdAt, firstLink, outputPath: undefined, writtenPaths: [], members: [], source: undefined };
}

/**
 * Hardlinks of higher layers waiting for their target to stream past in a lower layer,
 * keyed by the resolved target path.
 */
export class LinkWatches {
  private readonly byPath = new Map<PathKey, LinkGroup[]>();

  get size(): number {
    return this.byPath.size;
  }

  add(target: PathKey, group: LinkGroup): void {
    const groups = this.byPath.get(target);
    if (groups) groups.push(group);
    else this.byPath.set(target, [group]);
  }

  /** Removes and returns the groups created above `layer` that wait for `target`. */
  take(target: PathKey, layer: number): LinkGroup[] {
    const groups = this.byPath.get(target);
    if (!groups) return [];
    const taken = groups.filter((g) => g.createdAt > layer);
    if (taken.length === 0) return [];
    const kept = groups.filter((g) => g.createdAt <= layer);
    if (kept.length > 0) this.byPath.set(target, kept);
    else this.byPath.delete(target);
    return taken;
  }

  /** The targets still waiting, with a group created above `layer`. */
  *waitingAbove(layer: number): Generator<[PathKey, LinkGroup]> {
    for (const [target, groups] of this.byPath) {
      const group = groups.find((g) => g.createdAt > layer);
      if (group) yield [target, group];
    }
  }
}

/** Moves the members of `from` into `into`; they now share its content. */
export function mergeGroups(into: LinkGroup, from: readonly LinkGroup[]): void {
  for (const group of from) {
    if (group === into) continue;
    into.members.push(...group.members);
    group.members.length = 0;
  }
}
