import type { TarHeader } from '../streams/tar/types.js';
import { classifyName, isAufsMetaPath, joinKey, normalizeEntryName, type PathKey } from './paths.js';
import { resolveParents, type ParentKind } from './resolve.js';

/** Where an entry (and its hardlink target) really lands, when that differs from its name. */
export interface Resolution {
  path?: string[];
  linkTarget?: string[];
}

/** Per layer, per entry ordinal: resolutions learnt by the pre-pass. */
export class Resolutions {
  private readonly byLayer = new Map<number, Map<number, Resolution>>();

  set(layer: number, ordinal: number, resolution: Resolution): void {
    let layerMap = this.byLayer.get(layer);
    if (!layerMap) this.byLayer.set(layer, (layerMap = new Map()));
    layerMap.set(ordinal, resolution);
  }

  get(layer: number, ordinal: number): Resolution | undefined {
    return this.byLayer.get(layer)?.get(ordinal);
  }
}

interface SkeletonNode {
  kind: ParentKind;
  /** The layer that created or last replaced this node. */
  layer: number;
  children: Map<string, SkeletonNode> | undefined;
}

/**
 * A header-only, base-first model of the layers below a pending entry: which paths are
 * directories and where symlinks point, so every parent can be resolved exactly. Holds one
 * small node per path; file contents never enter it.
 */
export class Skeleton {
  private readonly root: SkeletonNode = { kind: { kind: 'dir' }, layer: -1, children: new Map() };
  readonly resolutions = new Resolutions();

  /** Applies one entry of layer `layer`, in tar order, and records where it lands. */
  apply(layer: number, ordinal: number, header: TarHeader): void {
    const components = normalizeEntryName(header.name);
    const lookup = (key: PathKey): ParentKind | undefined => this.find(key)?.kind;
    const parents = resolveParents(components.slice(0, -1), lookup, joinKey(components)) ?? [];
    const base = components[components.length - 1];
    const resolution: Resolution = {};
    if (!sameComponents(parents, components.slice(0, -1))) {
      resolution.path = base === undefined ? parents : [...parents, base];
    }

    let linkTarget: string[] | undefined;
    if (header.type === 'link') {
      const target = normalizeEntryName(header.linkname);
      const targetParents = resolveParents(target.slice(0, -1), lookup, joinKey(target)) ?? [];
      const targetBase = target[target.length - 1];
      linkTarget = targetBase === undefined ? targetParents : [...targetParents, targetBase];
      if (!sameComponents(linkTarget, target)) resolution.linkTarget = linkTarget;
    }
    if (resolution.path || resolution.linkTarget) this.resolutions.set(layer, ordinal, resolution);

    if (base === undefined || isAufsMetaPath(components)) return;
    const parent = this.ensureDirs(parents, layer);
    const meaning = classifyName(base);
    if (meaning.kind === 'aufs-meta') return;
    if (meaning.kind === 'opaque') {
      deleteLowerDescendants(parent, layer);
      return;
    }
    if (meaning.kind === 'whiteout') {
      const victim = parent.children?.get(meaning.name);
      if (victim && deleteLower(victim, layer)) parent.children?.delete(meaning.name);
      return;
    }

    const existing = parent.children?.get(base);
    if (header.type === 'directory') {
      if (existing?.kind.kind === 'dir') existing.layer = layer;
      else parent.children?.set(base, { kind: { kind: 'dir' }, layer, children: new Map() });
      return;
    }
    let kind: ParentKind = { kind: 'other' };
    if (header.type === 'symlink') kind = { kind: 'symlink', target: header.linkname.toString('latin1') };
    if (header.type === 'link' && linkTarget) {
      const target = this.find(joinKey(linkTarget));
      if (target?.kind.kind === 'symlink') kind = target.kind;
    }
    parent.children?.set(base, { kind, layer, children: undefined });
  }

  private find(key: PathKey): SkeletonNode | undefined {
    if (key === '') return this.root;
    let node: SkeletonNode | undefined = this.root;
    for (const component of key.split('/')) {
      node = node?.children?.get(component);
      if (!node) return undefined;
    }
    return node;
  }

  /** Walks resolved parents, making the missing ones implicit directories. */
  private ensureDirs(parents: readonly string[], layer: number): SkeletonNode {
    let node = this.root;
    for (const component of parents) {
      let child = node.children?.get(component);
      if (!child || child.kind.kind !== 'dir') {
        child = { kind: { kind: 'dir' }, layer, children: new Map() };
        node.children?.set(component, child);
      }
      node = child;
    }
    return node;
  }
}

function sameComponents(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((c, i) => c === b[i]);
}

/** Deletes what lower layers put in `node`'s subtree; returns true when `node` itself goes. */
function deleteLower(node: SkeletonNode, layer: number): boolean {
  deleteLowerDescendants(node, layer);
  return node.layer < layer && (node.children === undefined || node.children.size === 0);
}

function deleteLowerDescendants(node: SkeletonNode, layer: number): void {
  if (!node.children) return;
  for (const [name, child] of node.children) {
    if (deleteLower(child, layer)) node.children.delete(name);
  }
}
