import { MalformedArchiveError } from '../errors.js';

/**
 * Paths inside the flattener are strings in which each char is one byte of the original
 * name (latin1), so names that are not UTF-8 keep their bytes and map keys stay cheap.
 * The root is the empty string.
 */
export type PathKey = string;

export const ROOT: PathKey = '';

/**
 * Lexically cleans a tar entry name as a path inside the root, as Docker (a layer applied in a
 * chroot) and containerd (root-bounded joins) do: `./a//b/` and `/a/b` become `a/b`, and `..`
 * at the root stays at the root (`../x`, `/../x`, `a/../../x` → `x`). `onPinned` is told when a
 * `..` was pinned there, so that the caller can warn: nothing is ever refused for it.
 */
export function normalizeEntryName(name: Buffer, onPinned?: () => void): string[] {
  const parts = name.toString('latin1').split('/');
  const out: string[] = [];
  let pinned = false;
  for (const part of parts) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length === 0) pinned = true;
      else out.pop();
      continue;
    }
    out.push(part);
  }
  if (pinned) onPinned?.();
  return out;
}

/**
 * Anything {@link normalizeKey} cannot take as it is: an empty, `.` or `..` component, a
 * leading slash, a trailing one (after the one we strip).
 */
const NEEDS_CLEANING = /\/\/|(?:^|\/)\.\.?(?:\/|$)|^\/|\/$/;

/**
 * {@link normalizeEntryName}, joined into a key. Names that need no cleaning (nearly all of
 * them, once a leading `./` and a trailing `/` are dropped) take no split and no join.
 */
export function normalizeKey(name: Buffer, onPinned?: () => void): PathKey {
  let key = name.toString('latin1');
  if (key.startsWith('./')) key = key.slice(2);
  if (key.endsWith('/')) key = key.slice(0, -1);
  if (!NEEDS_CLEANING.test(key)) return key;
  return normalizeEntryName(name, onPinned).join('/');
}

/** `parent/base`, or `base` at the root. */
export function childKey(parent: PathKey, base: string): PathKey {
  return parent === ROOT ? base : `${parent}/${base}`;
}

export function joinKey(components: readonly string[]): PathKey {
  return components.join('/');
}

export function keyToBuffer(key: PathKey): Buffer {
  return Buffer.from(key, 'latin1');
}

export function parentKey(key: PathKey): PathKey {
  const slash = key.lastIndexOf('/');
  return slash < 0 ? ROOT : key.slice(0, slash);
}

export function printable(key: PathKey): string {
  return key === ROOT ? '.' : Buffer.from(key, 'latin1').toString('utf8');
}

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';
const AUFS_META_PREFIX = '.wh..wh.';

export type WhiteoutKind =
  | { kind: 'none' }
  | { kind: 'whiteout'; name: string }
  | { kind: 'opaque' }
  | { kind: 'aufs-meta' };

/** What a base name means under the OCI whiteout rules. */
export function classifyName(base: string): WhiteoutKind {
  if (!base.startsWith(WHITEOUT_PREFIX)) return { kind: 'none' };
  if (base === OPAQUE_MARKER) return { kind: 'opaque' };
  if (base.startsWith(AUFS_META_PREFIX)) return { kind: 'aufs-meta' };
  const name = base.slice(WHITEOUT_PREFIX.length);
  if (name === '' || name === '.' || name === '..') {
    throw new MalformedArchiveError(`invalid whiteout entry "${base}"`);
  }
  return { kind: 'whiteout', name };
}

/** {@link isAufsMetaPath} for a key: a substring test first, as nearly no name has the prefix. */
export function isAufsMetaKey(key: PathKey): boolean {
  return key.includes(AUFS_META_PREFIX) && isAufsMetaPath(key.split('/'));
}

/** True when any component is aufs metadata (`.wh..wh.plnk/…`), which is never written. */
export function isAufsMetaPath(components: readonly string[]): boolean {
  return components.some((c) => c.startsWith(AUFS_META_PREFIX) && c !== OPAQUE_MARKER);
}
