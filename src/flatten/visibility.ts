import { ROOT, type PathKey } from './paths.js';

/**
 * What the layers above have decided about each path, for the top-down walk. Layers are
 * visited newest first, so the first layer to set a field is the highest one, and "hidden for
 * layer j" means "set by a layer above j". Whatever layer j itself adds, deletes or makes
 * opaque is recorded with j and so applies from j-1 down.
 *
 * One node per distinct path (DESIGN.md §1: "one small record per distinct path"), so the
 * node stays small: numbers and a children map only for directories.
 */
interface VisibilityNode {
  children: Map<string, VisibilityNode> | undefined;
  /** Highest layer that wrote this path. */
  writtenBy: number;
  /** Whether the last write of `writtenBy` was a directory. */
  writtenDir: boolean;
  /** Some entry that survives to the top needs this path as its parent directory. */
  needed: boolean;
  /** The newest layer that wrote anything below this path (same-layer replacement checks). */
  descendantWrittenBy: number;
  /** The highest layer that wrote anything below this path. */
  descendantFirstWrittenBy: number;
  /** This path is hidden for layers below this one (whiteout). */
  selfHiddenBelow: number;
  /** Everything under this path is hidden for layers below this one (whiteout, opaque, non-directory). */
  descendantsHiddenBelow: number;
}

const NONE = -1;
const NO_ANCESTORS: readonly VisibilityNode[] = [];

function newNode(): VisibilityNode {
  return {
    children: undefined,
    writtenBy: NONE,
    writtenDir: false,
    needed: false,
    descendantWrittenBy: NONE,
    descendantFirstWrittenBy: NONE,
    selfHiddenBelow: NONE,
    descendantsHiddenBelow: NONE,
  };
}

export type Verdict = 'visible' | 'hidden' | 'shadowed';

/**
 * Every entry is judged with one walk: {@link enter} finds (or makes) the nodes from the root
 * to the entry, judges it and marks its parents needed; the `current*` methods then act on
 * that walk. Consecutive entries nearly always share their parent directory, so the parent
 * chain of the last walk is kept and reused (nodes are never removed, so a chain stays right;
 * their fields are read afresh on every entry).
 */
export class Visibility {
  private readonly root = newNode();
  /** Nodes from the root to the parent of the entered path, root first. */
  private ancestors: readonly VisibilityNode[] = NO_ANCESTORS;
  /** The parent key `chain` was built for. */
  private chainKey: PathKey | undefined;
  private chain: VisibilityNode[] = [];
  /** The entered path's node; undefined when an ancestor hides it. */
  private current: VisibilityNode | undefined;

  /**
   * Enters the path `parent/base` (`base` undefined: the root) of layer `layer` and judges it
   * against the layers above: `shadowed` when a higher layer wrote the same path, `hidden`
   * when a higher layer deleted it or covers an ancestor. When `needsParents`, the parents
   * that survive to the top are marked needed: base first, an entry of `layer` makes its
   * parents (implicitly if no layer declares them) until a higher layer deletes them.
   */
  enter(parent: PathKey, base: string | undefined, layer: number, needsParents: boolean): Verdict {
    let ancestors: readonly VisibilityNode[] = NO_ANCESTORS;
    if (base !== undefined) {
      if (parent !== this.chainKey) this.buildChain(parent);
      ancestors = this.chain;
    }
    this.ancestors = ancestors;
    this.current = undefined;
    let marking = needsParents;
    for (let i = 0; i < ancestors.length; i++) {
      const node = ancestors[i] as VisibilityNode;
      if (marking && i > 0) {
        if (node.selfHiddenBelow > layer) marking = false;
        else node.needed = true;
      }
      if (node.descendantsHiddenBelow > layer) return 'hidden';
    }
    const node = base === undefined ? this.root : this.child(ancestors[ancestors.length - 1] as VisibilityNode, base);
    this.current = node;
    if (node.selfHiddenBelow > layer) return 'hidden';
    if (node.writtenBy > layer) return 'shadowed';
    return 'visible';
  }

  /** Whether some layer wrote the root entry `./`. */
  rootWritten(): boolean {
    return this.root.writtenBy !== NONE;
  }

  /** Whether a layer above `layer` wrote something below the entered path. */
  currentHasHigherDescendants(layer: number): boolean {
    const node = this.current;
    return node !== undefined && node.descendantFirstWrittenBy > layer;
  }

  /** The highest layer that wrote the entered path so far (-1: none, or hidden). */
  currentWrittenBy(): number {
    return this.current === undefined ? NONE : this.current.writtenBy;
  }

  /** The entered path, if `layer` itself wrote it or below it (same-layer duplicates). */
  currentWrittenInLayer(layer: number): { dir: boolean; hasChildren: boolean } | undefined {
    const node = this.current;
    if (!node) return undefined;
    const hasChildren = node.descendantWrittenBy === layer;
    if (node.writtenBy !== layer && !hasChildren) return undefined;
    return { dir: node.writtenBy === layer && node.writtenDir, hasChildren };
  }

  /** `layer` writes the entered path (it must not be hidden). */
  recordCurrentWrite(layer: number, isDir: boolean): void {
    const node = this.current as VisibilityNode;
    const ancestors = this.ancestors;
    for (let i = 0; i < ancestors.length; i++) {
      const above = ancestors[i] as VisibilityNode;
      above.descendantWrittenBy = layer;
      if (above.descendantFirstWrittenBy === NONE) above.descendantFirstWrittenBy = layer;
    }
    if (node.writtenBy === NONE) node.writtenBy = layer;
    if (node.writtenBy === layer) node.writtenDir = isDir;
    if (!isDir && node.descendantsHiddenBelow === NONE) node.descendantsHiddenBelow = layer;
  }

  /**
   * A non-directory of `layer` at the entered path that the output will not show (a higher
   * layer wrote its path) still replaced whatever lower layers had below it.
   */
  recordCurrentCover(layer: number): void {
    const node = this.current as VisibilityNode;
    if (node.descendantsHiddenBelow === NONE) node.descendantsHiddenBelow = layer;
  }

  recordWhiteout(key: PathKey, layer: number): void {
    const node = this.ensure(key);
    if (node.selfHiddenBelow === NONE) node.selfHiddenBelow = layer;
    if (node.descendantsHiddenBelow === NONE) node.descendantsHiddenBelow = layer;
  }

  recordOpaque(key: PathKey, layer: number): void {
    const node = this.ensure(key);
    if (node.descendantsHiddenBelow === NONE) node.descendantsHiddenBelow = layer;
  }

  /**
   * Paths that survive as parents of something but that no visible entry wrote: the
   * implicit parents, parents first.
   */
  *implicitParents(): Generator<PathKey> {
    const stack: Array<[VisibilityNode, string]> = [[this.root, '']];
    while (stack.length > 0) {
      const [node, key] = stack.pop() as [VisibilityNode, string];
      if (!node.children) continue;
      const names = [...node.children.keys()].sort().reverse();
      for (const name of names) {
        const child = node.children.get(name) as VisibilityNode;
        if (!child.needed) continue;
        const childKey = key === '' ? name : `${key}/${name}`;
        if (child.writtenBy === NONE) yield childKey;
        stack.push([child, childKey]);
      }
    }
  }

  /** Makes `chain` the nodes from the root to `parent`, reusing the last chain's common start. */
  private buildChain(parent: PathKey): void {
    const previous = this.chainKey;
    let chain: VisibilityNode[];
    let start: number;
    if (previous !== undefined && previous !== ROOT && parent.length > previous.length && parent.startsWith(previous) && parent.charCodeAt(previous.length) === 0x2f) {
      // Going down from the last parent: keep its nodes.
      chain = this.chain.slice();
      start = previous.length + 1;
    } else {
      chain = [this.root];
      start = 0;
    }
    if (parent !== ROOT) {
      let node = chain[chain.length - 1] as VisibilityNode;
      for (;;) {
        const slash = parent.indexOf('/', start);
        node = this.child(node, slash < 0 ? parent.slice(start) : parent.slice(start, slash));
        chain.push(node);
        if (slash < 0) break;
        start = slash + 1;
      }
    }
    this.chain = chain;
    this.chainKey = parent;
  }

  private ensure(key: PathKey): VisibilityNode {
    let node = this.root;
    if (key === ROOT) return node;
    for (const component of key.split('/')) node = this.child(node, component);
    return node;
  }

  private child(node: VisibilityNode, name: string): VisibilityNode {
    let children = node.children;
    if (!children) node.children = children = new Map();
    let child = children.get(name);
    if (!child) children.set(name, (child = newNode()));
    return child;
  }
}
