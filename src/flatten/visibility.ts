import type { PathKey } from './paths.js';

/**
 * What the layers above have decided about each path, for the top-down walk. Layers are
 * visited newest first, so the first layer to set a field is the highest one, and "hidden for
 * layer j" means "set by a layer above j". Whatever layer j itself adds, deletes or makes
 * opaque is recorded with j and so applies from j-1 down.
 */
interface VisibilityNode {
  children: Map<string, VisibilityNode> | undefined;
  /** Highest layer that wrote this path. */
  writtenBy: number;
  /** Whether the last write of `writtenBy` was a directory. */
  writtenDir: boolean;
  /** The newest layer that wrote anything below this path (same-layer replacement checks). */
  descendantWrittenBy: number;
  /** The highest layer that wrote anything below this path. */
  descendantFirstWrittenBy: number;
  /** This path is hidden for layers below this one (whiteout). */
  selfHiddenBelow: number;
  /** Everything under this path is hidden for layers below this one (whiteout, opaque, non-directory). */
  descendantsHiddenBelow: number;
  /** Some entry that survives to the top needs this path as its parent directory. */
  needed: boolean;
}

const NONE = -1;

function newNode(): VisibilityNode {
  return {
    children: undefined,
    writtenBy: NONE,
    writtenDir: false,
    descendantWrittenBy: NONE,
    descendantFirstWrittenBy: NONE,
    selfHiddenBelow: NONE,
    descendantsHiddenBelow: NONE,
    needed: false,
  };
}

export type Verdict = 'visible' | 'hidden' | 'shadowed';

export class Visibility {
  private readonly root = newNode();

  /**
   * Judges a path of layer `layer` against the layers above: `shadowed` when a higher layer
   * wrote the same path, `hidden` when a higher layer deleted it or covers an ancestor.
   */
  judge(components: readonly string[], layer: number): Verdict {
    let node: VisibilityNode | undefined = this.root;
    const last = components.length;
    for (let i = 0; i < last; i++) {
      if (node.descendantsHiddenBelow > layer) return 'hidden';
      node = node.children?.get(components[i] as string);
      if (!node) return 'visible';
    }
    if (node.selfHiddenBelow > layer) return 'hidden';
    if (node.writtenBy > layer) return 'shadowed';
    return 'visible';
  }

  /** The node of a path if it was written by `layer` itself (same-layer duplicates). */
  writtenInLayer(components: readonly string[], layer: number): { dir: boolean; hasChildren: boolean } | undefined {
    const node = this.find(components);
    if (!node) return undefined;
    const hasChildren = node.descendantWrittenBy === layer;
    if (node.writtenBy !== layer && !hasChildren) return undefined;
    return { dir: node.writtenBy === layer && node.writtenDir, hasChildren };
  }

  recordWrite(components: readonly string[], layer: number, isDir: boolean): void {
    let node = this.root;
    for (const component of components) {
      node.descendantWrittenBy = layer;
      if (node.descendantFirstWrittenBy === NONE) node.descendantFirstWrittenBy = layer;
      node = this.child(node, component);
    }
    if (node.writtenBy === NONE) node.writtenBy = layer;
    if (node.writtenBy === layer) node.writtenDir = isDir;
    if (!isDir && node.descendantsHiddenBelow === NONE) node.descendantsHiddenBelow = layer;
  }

  /**
   * A non-directory of `layer` that the output will not show (a higher layer wrote its path)
   * still replaced whatever lower layers had below it.
   */
  recordCover(components: readonly string[], layer: number): void {
    const node = this.ensure(components);
    if (node.descendantsHiddenBelow === NONE) node.descendantsHiddenBelow = layer;
  }

  /** Whether a layer above `layer` wrote something below this path. */
  hasHigherDescendants(components: readonly string[], layer: number): boolean {
    const node = this.find(components);
    return node !== undefined && node.descendantFirstWrittenBy > layer;
  }

  recordWhiteout(components: readonly string[], layer: number): void {
    const node = this.ensure(components);
    if (node.selfHiddenBelow === NONE) node.selfHiddenBelow = layer;
    if (node.descendantsHiddenBelow === NONE) node.descendantsHiddenBelow = layer;
  }

  recordOpaque(components: readonly string[], layer: number): void {
    const node = this.ensure(components);
    if (node.descendantsHiddenBelow === NONE) node.descendantsHiddenBelow = layer;
  }

  /**
   * An entry of `layer` needs its parents: base-first they exist from `layer` on, made
   * implicitly if no layer declares them, until a higher layer deletes them. Marks the
   * parents that survive to the top.
   */
  markParentsNeeded(parents: readonly string[], layer: number): void {
    let node = this.root;
    for (const component of parents) {
      if (node.descendantsHiddenBelow > layer) return;
      const child = this.child(node, component);
      if (child.selfHiddenBelow > layer) return;
      child.needed = true;
      node = child;
    }
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

  private find(components: readonly string[]): VisibilityNode | undefined {
    let node: VisibilityNode | undefined = this.root;
    for (const component of components) {
      node = node.children?.get(component);
      if (!node) return undefined;
    }
    return node;
  }

  private ensure(components: readonly string[]): VisibilityNode {
    let node = this.root;
    for (const component of components) node = this.child(node, component);
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
