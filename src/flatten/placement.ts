import type { TarEntry } from '../streams/tar/types.js';
import { R_DIR, R_NOKIND, flagsOf, type LayerState } from './layer-state.js';
import { NO_NODE, ROOT_NODE } from './path-trie.js';
import { joinKey, normalizeEntryName, normalizeKey, type PathKey } from './paths.js';
import { resolveParents, type ParentKind } from './resolve.js';
import type { Resolutions } from './skeleton.js';

/** Where an entry lands. */
export interface Placement {
  /** Its path, parents resolved through symlinks. */
  key: PathKey;
  /** For a hardlink: its target, resolved the same way. */
  target: PathKey | undefined;
  /** Whether `key` is the tar name byte for byte (its header can be written as is). */
  asNamed: boolean;
}

/**
 * Places the entries of a layer (DESIGN.md §3, "Parents resolve through symlinks"): from what
 * earlier entries of the same layer made of each parent, or, after the pre-pass, from the
 * {@link Resolutions} it learnt. No I/O.
 */
export class Placer {
  /** Learnt by the pre-pass: every parent of every layer is known from then on. */
  resolutions: Resolutions | undefined;

  /**
   * Where `entry` of `state`'s layer lands; `null` when a parent depends on layers not read
   * yet (the entry is pending until the pre-pass). Counts names pinned at the root in `state`.
   */
  place(entry: TarEntry, state: LayerState): Placement | null {
    const { header, ordinal } = entry;
    this.placingState = state;
    this.placingEntry = entry;
    const name = normalizeKey(header.name, this.notePinned);
    const target = header.type === 'link' ? normalizeKey(header.linkname, this.notePinned) : undefined;
    this.placingEntry = undefined;
    if (this.resolutions) {
      const known = this.resolutions.get(state.index, ordinal);
      const key = known?.path ? joinKey(known.path) : name;
      return {
        key,
        target: known?.linkTarget ? joinKey(known.linkTarget) : target,
        asNamed: key === name && name.length === header.name.length,
      };
    }
    const key = this.resolveKey(name, state);
    if (key === null) return null;
    let linkTarget: PathKey | undefined;
    if (target !== undefined) {
      const resolved = this.resolveKey(target, state);
      if (resolved === null) return null;
      linkTarget = resolved;
    }
    return { key, target: linkTarget, asNamed: key === name && name.length === header.name.length };
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
    const isBase = state.isBase;
    // Fast path: every ancestor is a directory (or nothing yet): the parent is itself.
    const trie = state.table.trie;
    let node = ROOT_NODE;
    for (let start = 0; ; ) {
      const next = parent.indexOf('/', start);
      const end = next < 0 ? parent.length : next;
      if (node !== NO_NODE) node = trie.child(node, parent, start, end, false);
      const value = state.at(node);
      const flags = value === undefined ? R_NOKIND : flagsOf(value);
      if (flags & R_NOKIND) {
        if (!isBase && (state.whiteouts.size === 0 || !state.whiteouts.has(parent.slice(0, end)))) return null;
      } else if (!(flags & R_DIR)) {
        return resolveSlow(key, state);
      }
      if (next < 0) break;
      start = next + 1;
    }
    state.settledParent = parent;
    return key;
  }
}

function resolveSlow(key: PathKey, state: LayerState): PathKey | null {
  const lookup = (prefix: PathKey): ParentKind | undefined | 'unknown' => {
    const kind = state.kindAt(prefix);
    if (kind) return kind;
    if (state.isBase || state.whiteouts.has(prefix)) return undefined;
    return 'unknown';
  };
  const components = key.split('/');
  const parents = resolveParents(components.slice(0, -1), lookup, key);
  if (parents === null) return null;
  parents.push(components[components.length - 1] as string);
  return joinKey(parents);
}

/** Whether a name's `..` climbs above the root. */
function climbs(name: Buffer): boolean {
  let pinned = false;
  normalizeEntryName(name, () => (pinned = true));
  return pinned;
}
