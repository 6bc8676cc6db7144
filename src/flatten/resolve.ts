import { MalformedArchiveError } from '../errors.js';
import { joinKey, printable, type PathKey } from './paths.js';

/** What a path is at some point of the base-first application, as far as parents care. */
export type ParentKind =
  | { kind: 'dir' }
  | { kind: 'symlink'; target: string }
  | { kind: 'other' };

/**
 * Answers what a path is: a kind, `undefined` when nothing is there (an implicit directory
 * will be made), or `'unknown'` when the answer depends on layers not read yet.
 */
export type ParentLookup = (key: PathKey) => ParentKind | undefined | 'unknown';

const MAX_SYMLINK_HOPS = 40;

/**
 * Resolves the parent directories of an entry through symlinks, inside the root, as a real
 * filesystem would: absolute targets restart at the root and `..` clamps there (as
 * securejoin does). The last component is never followed: an entry replaces what is there.
 * Returns the resolved parent components, or `null` when a parent is not settled yet.
 */
export function resolveParents(
  parents: readonly string[],
  lookup: ParentLookup,
  entryKey: PathKey,
): string[] | null {
  const out: string[] = [];
  const queue = [...parents];
  let hops = 0;
  while (queue.length > 0) {
    const component = queue.shift() as string;
    if (component === '' || component === '.') continue;
    if (component === '..') {
      out.pop();
      continue;
    }
    out.push(component);
    const found = lookup(joinKey(out));
    if (found === 'unknown') return null;
    if (found === undefined || found.kind === 'dir') continue;
    if (found.kind === 'other') {
      throw new MalformedArchiveError(
        `entry "${printable(entryKey)}": parent "${printable(joinKey(out))}" is not a directory`,
      );
    }
    if (++hops > MAX_SYMLINK_HOPS) {
      throw new MalformedArchiveError(
        `entry "${printable(entryKey)}": too many levels of symbolic links`,
      );
    }
    out.pop();
    if (found.target.startsWith('/')) out.length = 0;
    queue.unshift(...found.target.split('/'));
  }
  return out;
}
