import { growableArray, grown } from './growable-array.js';
import { NO_NODE, PathTrie, ROOT_NODE } from './path-trie.js';
import { ROOT, type PathKey } from './paths.js';

/**
 * What the layers above have decided about each path, for the top-down walk. Layers are
 * visited newest first, so the first layer to set a field is the highest one, and "hidden for
 * layer j" means "set by a layer above j". Whatever layer j itself adds, deletes or makes
 * opaque is recorded with j and so applies from j-1 down.
 *
 * One node of a {@link PathTrie} per distinct path (DESIGN.md §1: "one small record per
 * distinct path"), its fields in typed arrays indexed by node number (layer indices fit 16
 * bits: see {@link MAX_LAYERS}):
 * - `writtenBy`: highest layer that wrote this path;
 * - `DIR` flag: whether the last write of `writtenBy` was a directory;
 * - `NEEDED` flag: some entry that survives to the top needs this path as its parent directory;
 * - `descendantWrittenBy`: the newest layer that wrote anything below this path (same-layer
 *   replacement checks); `descendantFirstWrittenBy`: the highest one;
 * - `selfHiddenBelow`: this path is hidden for layers below this one (whiteout);
 * - `descendantsHiddenBelow`: everything under it is (whiteout, opaque, non-directory).
 */
export const MAX_LAYERS = 0x7fff;

const NONE = -1;
const DIR = 1;
const NEEDED = 2;
const NO_ANCESTORS: readonly number[] = [];

export type Verdict = 'visible' | 'hidden' | 'shadowed';

/**
 * Every entry is judged with one walk: {@link enter} finds (or makes) the nodes from the root
 * to the entry, judges it and marks its parents needed; the `current*` methods then act on
 * that walk. Consecutive entries nearly always share their parent directory, so the parent
 * chain of the last walk is kept and reused (nodes are never removed, so a chain stays right;
 * their fields are read afresh on every entry).
 */
export class Visibility {
  readonly trie = new PathTrie();
  private writtenBy: Int16Array;
  private flags: Uint8Array;
  private descendantWrittenBy: Int16Array;
  private descendantFirstWrittenBy: Int16Array;
  private selfHiddenBelow: Int16Array;
  private descendantsHiddenBelow: Int16Array;
  /** Nodes from the root to the parent of the entered path, root first. */
  private ancestors: readonly number[] = NO_ANCESTORS;
  /** The parent key `chain` was built for. */
  private chainKey: PathKey | undefined;
  private chain: number[] = [];
  /** The entered path's node (made even when hidden: its layer keeps a record of it). */
  private current = NO_NODE;
  /** Whether an ancestor hides the entered path. */
  private currentHidden = false;

  constructor() {
    const capacity = this.trie.onGrow((next) => {
      this.writtenBy = grown(this.writtenBy, next, NONE);
      this.flags = grown(this.flags, next);
      this.descendantWrittenBy = grown(this.descendantWrittenBy, next, NONE);
      this.descendantFirstWrittenBy = grown(this.descendantFirstWrittenBy, next, NONE);
      this.selfHiddenBelow = grown(this.selfHiddenBelow, next, NONE);
      this.descendantsHiddenBelow = grown(this.descendantsHiddenBelow, next, NONE);
    });
    this.writtenBy = growableArray(Int16Array, capacity, NONE);
    this.flags = growableArray(Uint8Array, capacity);
    this.descendantWrittenBy = growableArray(Int16Array, capacity, NONE);
    this.descendantFirstWrittenBy = growableArray(Int16Array, capacity, NONE);
    this.selfHiddenBelow = growableArray(Int16Array, capacity, NONE);
    this.descendantsHiddenBelow = growableArray(Int16Array, capacity, NONE);
  }

  /** The node {@link enter} entered last. */
  get currentNode(): number {
    return this.current;
  }

  /**
   * Enters the path `parent/base` (`base` undefined: the root) of layer `layer` and judges it
   * against the layers above: `shadowed` when a higher layer wrote the same path, `hidden`
   * when a higher layer deleted it or covers an ancestor. When `needsParents`, the parents
   * that survive to the top are marked needed: base first, an entry of `layer` makes its
   * parents (implicitly if no layer declares them) until a higher layer deletes them.
   */
  enter(parent: PathKey, base: string | undefined, layer: number, needsParents: boolean): Verdict {
    let ancestors: readonly number[] = NO_ANCESTORS;
    if (base !== undefined) {
      if (parent !== this.chainKey) this.buildChain(parent);
      ancestors = this.chain;
    }
    this.ancestors = ancestors;
    const node =
      base === undefined
        ? ROOT_NODE
        : this.trie.child(ancestors[ancestors.length - 1] as number, base, 0, base.length, true);
    this.current = node;
    this.currentHidden = true;
    let marking = needsParents;
    for (let i = 0; i < ancestors.length; i++) {
      const above = ancestors[i] as number;
      if (marking && i > 0) {
        if ((this.selfHiddenBelow[above] as number) > layer) marking = false;
        else this.flags[above] = (this.flags[above] as number) | NEEDED;
      }
      if ((this.descendantsHiddenBelow[above] as number) > layer) return 'hidden';
    }
    this.currentHidden = false;
    if ((this.selfHiddenBelow[node] as number) > layer) return 'hidden';
    if ((this.writtenBy[node] as number) > layer) return 'shadowed';
    return 'visible';
  }

  /** Whether some layer wrote the root entry `./`. */
  rootWritten(): boolean {
    return this.writtenBy[ROOT_NODE] !== NONE;
  }

  /** Whether a layer above `layer` wrote something below the entered path. */
  currentHasHigherDescendants(layer: number): boolean {
    return !this.currentHidden && (this.descendantFirstWrittenBy[this.current] as number) > layer;
  }

  /** The highest layer that wrote the entered path so far (-1: none, or hidden). */
  currentWrittenBy(): number {
    return this.currentHidden ? NONE : (this.writtenBy[this.current] as number);
  }

  /** The entered path, if `layer` itself wrote it or below it (same-layer duplicates). */
  currentWrittenInLayer(layer: number): { dir: boolean; hasChildren: boolean } | undefined {
    if (this.currentHidden) return undefined;
    const node = this.current;
    const hasChildren = this.descendantWrittenBy[node] === layer;
    const own = this.writtenBy[node] === layer;
    if (!own && !hasChildren) return undefined;
    return { dir: own && ((this.flags[node] as number) & DIR) !== 0, hasChildren };
  }

  /** `layer` writes the entered path (it must not be hidden). */
  recordCurrentWrite(layer: number, isDir: boolean): void {
    const node = this.current;
    const ancestors = this.ancestors;
    for (let i = 0; i < ancestors.length; i++) {
      const above = ancestors[i] as number;
      this.descendantWrittenBy[above] = layer;
      if (this.descendantFirstWrittenBy[above] === NONE) this.descendantFirstWrittenBy[above] = layer;
    }
    if (this.writtenBy[node] === NONE) this.writtenBy[node] = layer;
    if (this.writtenBy[node] === layer) this.flags[node] = isDir ? (this.flags[node] as number) | DIR : (this.flags[node] as number) & ~DIR;
    if (!isDir && this.descendantsHiddenBelow[node] === NONE) this.descendantsHiddenBelow[node] = layer;
  }

  /**
   * A non-directory of `layer` at the entered path that the output will not show (a higher
   * layer wrote its path) still replaced whatever lower layers had below it.
   */
  recordCurrentCover(layer: number): void {
    const node = this.current;
    if (this.descendantsHiddenBelow[node] === NONE) this.descendantsHiddenBelow[node] = layer;
  }

  recordWhiteout(key: PathKey, layer: number): void {
    const node = this.trie.ensure(key);
    if (this.selfHiddenBelow[node] === NONE) this.selfHiddenBelow[node] = layer;
    if (this.descendantsHiddenBelow[node] === NONE) this.descendantsHiddenBelow[node] = layer;
  }

  recordOpaque(key: PathKey, layer: number): void {
    const node = this.trie.ensure(key);
    if (this.descendantsHiddenBelow[node] === NONE) this.descendantsHiddenBelow[node] = layer;
  }

  /**
   * Paths that survive as parents of something but that no visible entry wrote: the
   * implicit parents, parents first (in the order of their components, as a sorted walk of
   * the tree gives; the parent of a needed path is needed).
   */
  *implicitParents(): Generator<PathKey> {
    const found: string[][] = [];
    for (let node = 1; node < this.trie.size; node++) {
      if (((this.flags[node] as number) & NEEDED) === 0 || this.writtenBy[node] !== NONE) continue;
      const parts: string[] = [];
      for (let n = node; n !== ROOT_NODE; n = this.trie.parentOf(n)) parts.push(this.trie.nameOf(n));
      found.push(parts.reverse());
    }
    found.sort(compareComponents);
    for (const parts of found) yield parts.join('/');
  }

  /** Makes `chain` the nodes from the root to `parent`, reusing the last chain's common start. */
  private buildChain(parent: PathKey): void {
    const previous = this.chainKey;
    let chain: number[];
    let start: number;
    if (previous !== undefined && previous !== ROOT && parent.length > previous.length && parent.startsWith(previous) && parent.charCodeAt(previous.length) === 0x2f) {
      // Going down from the last parent: keep its nodes.
      chain = this.chain.slice();
      start = previous.length + 1;
    } else {
      chain = [ROOT_NODE];
      start = 0;
    }
    if (parent !== ROOT) {
      let node = chain[chain.length - 1] as number;
      for (;;) {
        const slash = parent.indexOf('/', start);
        const end = slash < 0 ? parent.length : slash;
        node = this.trie.child(node, parent, start, end, true);
        chain.push(node);
        if (slash < 0) break;
        start = slash + 1;
      }
    }
    this.chain = chain;
    this.chainKey = parent;
  }
}

function compareComponents(a: readonly string[], b: readonly string[]): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a[i] as string;
    const y = b[i] as string;
    if (x !== y) return x < y ? -1 : 1;
  }
  return a.length - b.length;
}
