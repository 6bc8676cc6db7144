/**
 * An unpack is all or nothing: the tree is built in a sibling `DIR.partial-XXXXXX` that only
 * we can enter (0700), renamed to `DIR` on success and removed on any failure, so a reader of
 * `DIR` never sees half a rootfs and a failed unpack leaves nothing behind.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, lstatSync, readdirSync } from 'node:fs';
import { chmod, lstat, mkdir, readdir, rename, rm, rmdir } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { UsageError } from '../errors.js';

export interface PartialDirectory {
  /** Where the tree is being built. */
  readonly path: string;
  /** Where it goes on success. */
  readonly target: string;
  /** Moves the finished tree to `target` (replacing it if it is an empty directory). */
  commit(): Promise<void>;
  /** Removes the partial tree, read-only directories included; never throws. */
  remove(): Promise<void>;
}

/**
 * Checks that `dir` does not exist or is an empty directory (a usage error otherwise) and
 * creates the partial directory beside it.
 */
export async function createPartialDirectory(dir: string): Promise<PartialDirectory> {
  const target = resolve(dir);
  await checkTarget(target);
  const parent = dirname(target);
  const stats = await lstat(parent).catch(() => undefined);
  if (stats === undefined || !stats.isDirectory()) {
    throw new UsageError(`cannot unpack into ${dir}: its parent directory ${parent} does not exist`);
  }
  const path = join(parent, `${basename(target)}.partial-${randomBytes(4).toString('hex')}`);
  await mkdir(path, { mode: 0o700 });
  // A umask cannot widen 0700, but a default ACL on the parent could: make sure.
  await chmod(path, 0o700);
  return {
    path,
    target,
    async commit() {
      // Checked again: something may have appeared in the target meanwhile, and rename(2)
      // over a non-empty directory fails with a less helpful message.
      await checkTarget(target);
      await rename(path, target);
    },
    remove: () => removeTree(path),
  };
}

async function checkTarget(target: string): Promise<void> {
  const stats = await lstat(target).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (stats === undefined) return;
  if (!stats.isDirectory()) throw new UsageError(`cannot unpack into ${target}: it exists and is not a directory`);
  if ((await readdir(target)).length > 0) throw new UsageError(`cannot unpack into ${target}: the directory is not empty`);
}

/**
 * `rm -rf` that also gets through directories a rootless unpack already made read-only:
 * on EACCES each directory is made 0700 before its entries are removed. Never follows a
 * symlink (rm and lstat do not).
 */
export async function removeTree(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true });
    return;
  } catch {
    // Fall through: make every directory writable, then try again.
  }
  try {
    makeWritable(path);
    await rm(path, { recursive: true, force: true });
  } catch {
    // Best effort: whatever is left is inside our own partial directory.
    await rmdir(path).catch(() => undefined);
  }
}

/**
 * Removes everything inside `path` (a partial directory being started over) but keeps the
 * directory itself, so its 0700 mode and ownership stay as created. Entries are named as
 * Buffers: a name that is not UTF-8 would not survive a string.
 */
export async function emptyDirectory(path: string): Promise<void> {
  const base = Buffer.from(path);
  for (const name of await readdir(base, { encoding: 'buffer' })) {
    const child = Buffer.concat([base, SLASH, name]);
    try {
      await rm(child, { recursive: true, force: true });
    } catch {
      // A rootless attempt may have made directories read-only already.
      makeWritable(child);
      await rm(child, { recursive: true, force: true });
    }
  }
}

function makeWritable(path: Buffer | string): void {
  const stats = lstatSync(path, { throwIfNoEntry: false });
  if (stats === undefined || !stats.isDirectory()) return;
  try {
    // Synchronous on purpose: a short walk, done only after a failure.
    chmodSync(path, 0o700);
  } catch {
    return;
  }
  // Buffers: a name that is not UTF-8 would not survive a round trip through a string.
  const base = typeof path === 'string' ? Buffer.from(path) : path;
  for (const name of readdirSync(base, { encoding: 'buffer' })) makeWritable(Buffer.concat([base, SLASH, name]));
}

const SLASH = Buffer.from('/');
