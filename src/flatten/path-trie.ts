import { growableArray, grown } from './growable-array.js';
import { ROOT, type PathKey } from './paths.js';

/** What {@link PathTrie.find} returns for a path it does not hold. */
export const NO_NODE = -1;
/** The root's node. */
export const ROOT_NODE = 0;

const INITIAL_NODES = 1024;
/**
 * Small steps: the arrays grow in place (growable-array.ts), so a step costs only the pages it
 * adds, and the room grown but not yet used stays under a quarter.
 */
const GROWTH = 1.25;

/**
 * Every distinct path the flatten met, as a tree of numbered nodes held in typed arrays
 * (DESIGN.md §1: "one small record per distinct path"; issue 10: a million paths must not cost
 * hundreds of megabytes). A node is its parent's number and its last component's bytes, kept
 * in one byte arena; the children of all nodes are found through one open-addressing hash
 * table keyed by (parent, name). No object, string or map per path: about 40 bytes for a path
 * with a 20-byte last component, with the slack of growing arrays. Nodes are never removed; whoever needs fields per path
 * keeps them in arrays indexed by node number (see {@link onGrow}).
 *
 * Components are latin1 strings ({@link PathKey}): one char per byte of the tar name.
 */
export class PathTrie {
  private parents = growableArray(Int32Array, INITIAL_NODES);
  private nameStarts = growableArray(Uint32Array, INITIAL_NODES);
  private names = growableArray(Uint8Array, INITIAL_NODES * 16);
  private namesEnd = 0;
  /** Node numbers + 1 (0: empty slot), at hash(parent, name). Its length is a power of two. */
  private slots = new Int32Array(INITIAL_NODES * 2);
  private count = 1;
  /** Told the new capacity whenever the node arrays grow, so per-node fields can follow. */
  private readonly growListeners: Array<(capacity: number) => void> = [];

  constructor() {
    this.parents[ROOT_NODE] = NO_NODE;
  }

  /** Number of nodes, the root included. */
  get size(): number {
    return this.count;
  }

  /** Current capacity of the node arrays; `listener` is called with every new one. */
  onGrow(listener: (capacity: number) => void): number {
    this.growListeners.push(listener);
    return this.parents.length;
  }

  parentOf(node: number): number {
    return this.parents[node] as number;
  }

  /**
   * The child of `parent` named `key.slice(start, end)` (no slice is made), made if `create`;
   * {@link NO_NODE} when absent and not made.
   */
  child(parent: number, key: string, start: number, end: number, create: boolean): number {
    let hash = Math.imul(parent ^ 0x2f2f2f2f, 0x9e3779b1) ^ 0x811c9dc5;
    for (let i = start; i < end; i++) hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193);
    hash ^= hash >>> 15;
    const slots = this.slots;
    const mask = slots.length - 1;
    const length = end - start;
    for (let slot = hash & mask; ; slot = (slot + 1) & mask) {
      const entry = slots[slot] as number;
      if (entry === 0) break;
      const node = entry - 1;
      if (this.parents[node] === parent && this.nameLength(node) === length && this.sameName(node, key, start)) return node;
    }
    if (!create) return NO_NODE;
    const node = this.add(parent, key, start, end);
    this.insert(node, hash);
    return node;
  }

  /** The node of `key`, made with its ancestors if missing. */
  ensure(key: PathKey): number {
    let node = ROOT_NODE;
    if (key === ROOT) return node;
    for (let start = 0; ; ) {
      const slash = key.indexOf('/', start);
      const end = slash < 0 ? key.length : slash;
      node = this.child(node, key, start, end, true);
      if (slash < 0) return node;
      start = slash + 1;
    }
  }

  /** The node of `key`, or {@link NO_NODE}. */
  find(key: PathKey): number {
    let node = ROOT_NODE;
    if (key === ROOT) return node;
    for (let start = 0; ; ) {
      const slash = key.indexOf('/', start);
      const end = slash < 0 ? key.length : slash;
      node = this.child(node, key, start, end, false);
      if (node === NO_NODE || slash < 0) return node;
      start = slash + 1;
    }
  }

  /** The last component of `node`'s path. */
  nameOf(node: number): string {
    const start = this.nameStarts[node] as number;
    return latin1(this.names, start, start + this.nameLength(node));
  }

  /** The path of `node`. */
  keyOf(node: number): PathKey {
    const parts: string[] = [];
    for (let n = node; n !== ROOT_NODE; n = this.parents[n] as number) parts.push(this.nameOf(n));
    return parts.reverse().join('/');
  }

  /** Names are appended in node order: a name ends where the next node's begins. */
  private nameLength(node: number): number {
    const next = node + 1 === this.count ? this.namesEnd : (this.nameStarts[node + 1] as number);
    return next - (this.nameStarts[node] as number);
  }

  private sameName(node: number, key: string, start: number): boolean {
    const names = this.names;
    let at = this.nameStarts[node] as number;
    const length = this.nameLength(node);
    for (let i = 0; i < length; i++) if (names[at++] !== key.charCodeAt(start + i)) return false;
    return true;
  }

  private add(parent: number, key: string, start: number, end: number): number {
    if (this.count === this.parents.length) this.growNodes();
    const length = end - start;
    if (this.namesEnd + length > this.names.length) {
      this.names = grown(this.names, Math.max(Math.ceil(this.names.length * GROWTH), this.namesEnd + length));
    }
    const names = this.names;
    let at = this.namesEnd;
    for (let i = start; i < end; i++) names[at++] = key.charCodeAt(i);
    const node = this.count++;
    this.parents[node] = parent;
    this.nameStarts[node] = this.namesEnd;
    this.namesEnd = at;
    // Two thirds full at most: probes stay short.
    if (this.count * 3 > this.slots.length * 2) this.rehash();
    return node;
  }

  private insert(node: number, hash: number): void {
    const slots = this.slots;
    const mask = slots.length - 1;
    let slot = hash & mask;
    while (slots[slot] !== 0) slot = (slot + 1) & mask;
    slots[slot] = node + 1;
  }

  private rehash(): void {
    this.slots = new Int32Array(this.slots.length * 2);
    // The node being added is inserted by the caller.
    for (let node = 1; node < this.count - 1; node++) this.insert(node, this.hashOf(node));
  }

  private hashOf(node: number): number {
    let hash = Math.imul((this.parents[node] as number) ^ 0x2f2f2f2f, 0x9e3779b1) ^ 0x811c9dc5;
    const names = this.names;
    const start = this.nameStarts[node] as number;
    const end = start + this.nameLength(node);
    for (let i = start; i < end; i++) hash = Math.imul(hash ^ (names[i] as number), 0x01000193);
    return hash ^ (hash >>> 15);
  }

  private growNodes(): void {
    const capacity = Math.ceil(this.parents.length * GROWTH);
    this.parents = grown(this.parents, capacity);
    this.nameStarts = grown(this.nameStarts, capacity);
    for (const listener of this.growListeners) listener(capacity);
  }
}

function latin1(bytes: Uint8Array, start: number, end: number): string {
  let out = '';
  for (let i = start; i < end; i += 4096) {
    out += String.fromCharCode(...bytes.subarray(i, Math.min(end, i + 4096)));
  }
  return out;
}
