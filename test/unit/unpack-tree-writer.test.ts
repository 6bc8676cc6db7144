/**
 * The disk side of `unpack` on its own: entries crafted here (not from the flattener, so the
 * writer's own rules are what is tested) are written by TreeWriter into a temp dir. It must
 * refuse to reach outside the root whatever the stream says, let a later copy of a path win,
 * keep sparse files sparse, give directories their metadata after their children, and record
 * rootless owners exactly as umoci does.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HardlinkTargetError, UnsafeEntryError, UsageError } from '../../src/errors.js';
import { paxKey } from '../../src/streams/tar/pax-key.js';
import type { TarEntry, TarEntryType, TarHeader } from '../../src/streams/tar/types.js';
import { entryXattrs, rootlessOwnerRecord } from '../../src/unpack/policy.js';
import { createPartialDirectory, emptyDirectory, removeTree } from '../../src/unpack/partial-directory.js';
import { SpecialFiles } from '../../src/unpack/special-files.js';
import { TreeWriter, entryKey, type UnpackWarning } from '../../src/unpack/tree-writer.js';
import { checkUnpackSupported } from '../../src/unpack/unpack-rootfs.js';
import { tarHeader } from '../helpers/tar-fixture.js';

const T0 = 1_600_000_000;

function header(name: string | Buffer, type: TarEntryType, more: Partial<TarHeader> = {}): TarHeader {
  return tarHeader({
    name: typeof name === 'string' ? Buffer.from(name) : name,
    type,
    mode: type === 'directory' ? 0o755 : 0o644,
    mtime: T0,
    ...more,
  });
}

let ordinal = 0;
function entry(h: TarHeader, chunks: Buffer[] = []): TarEntry {
  let read = false;
  const body = async function* (): AsyncGenerator<Buffer> {
    if (read) throw new Error('body read twice');
    read = true;
    yield* chunks;
  };
  return { header: h, ordinal: ordinal++, body, storedBody: body };
}
const file = (name: string | Buffer, content: string, more: Partial<TarHeader> = {}): TarEntry =>
  entry(header(name, 'file', { size: Buffer.byteLength(content), ...more }), content === '' ? [] : [Buffer.from(content)]);
const dir = (name: string, more: Partial<TarHeader> = {}): TarEntry => entry(header(name, 'directory', more));
const symlink = (name: string, target: string): TarEntry => entry(header(name, 'symlink', { mode: 0o777, linkname: Buffer.from(target) }));
const hardlink = (name: string, target: string): TarEntry => entry(header(name, 'link', { linkname: Buffer.from(target) }));

/** One xattr's value as getfattr (the attr package, as in native-fs.test.ts) reads it. */
function getfattrValue(path: string, name: string): string {
  const result = spawnSync('getfattr', ['-h', '--absolute-names', '--only-values', '-n', name, path], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`getfattr failed: ${result.stderr}`);
  return result.stdout;
}

let work: string;
let root: string;
let sentinel: string;
let warnings: UnpackWarning[];

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'oci-rootfs-tree-writer-'));
  root = join(work, 'root');
  sentinel = join(work, 'sentinel');
  await mkdir(root, { mode: 0o700 });
  await mkdir(join(sentinel, 'sub'), { recursive: true });
  await writeFile(join(sentinel, 'victim'), 'must survive');
  warnings = [];
});

afterEach(async () => {
  await removeTree(work);
});

async function unpack(entries: TarEntry[], rootless = false): Promise<TreeWriter> {
  const writer = new TreeWriter(root, { rootless, onWarning: (warning) => warnings.push(warning) });
  try {
    for (const e of entries) await writer.write(e);
    await writer.finish();
  } finally {
    await writer.close();
  }
  return writer;
}

async function sentinelState(): Promise<string> {
  const names = (await readdir(sentinel, { recursive: true })).sort();
  return JSON.stringify([names, await readFile(join(sentinel, 'victim'), 'utf8')]);
}

describe('never outside the root', () => {
  it('refuses an entry whose parent is a symlink on disk, writing nothing through it', async () => {
    const before = await sentinelState();
    for (const target of [sentinel, '../sentinel', '/']) {
      await rm(root, { recursive: true, force: true });
      await mkdir(root);
      await expect(unpack([symlink('evil', target), file('evil/victim', 'overwritten')])).rejects.toThrow(UnsafeEntryError);
      await expect(unpack([file('evil/sub/new', 'x')])).rejects.toThrow(/parent "evil" is a symlink/);
      await expect(unpack([dir('evil/sub')])).rejects.toThrow(UnsafeEntryError);
    }
    expect(await sentinelState()).toBe(before);
  });

  it('refuses a hardlink whose target lies through a symlink, and one to a missing path', async () => {
    const before = await sentinelState();
    await expect(unpack([symlink('evil', sentinel), hardlink('stolen', 'evil/victim')])).rejects.toThrow(UnsafeEntryError);
    await expect(unpack([hardlink('none', 'does/not/exist')])).rejects.toThrow(UnsafeEntryError);
    await expect(unpack([hardlink('none', 'missing')])).rejects.toThrow(HardlinkTargetError);
    expect(await sentinelState()).toBe(before);
    expect(await readdir(root)).toEqual(['evil']);
  });

  it('replaces a symlink at the path of a file instead of writing through it', async () => {
    const before = await sentinelState();
    await unpack([symlink('f', join(sentinel, 'victim')), file('f', 'mine'), symlink('d', sentinel), dir('d'), file('d/x', 'x')]);
    expect(await sentinelState()).toBe(before);
    expect(await readFile(join(root, 'f'), 'utf8')).toBe('mine');
    expect((await lstat(join(root, 'd'))).isDirectory()).toBe(true);
    expect(await readFile(join(root, 'd/x'), 'utf8')).toBe('x');
  });

  it('refuses names and hardlink targets with ".." and cleans the rest to keys below the root', () => {
    expect(() => entryKey(Buffer.from('a/../../etc/passwd'), 'entry')).toThrow(UnsafeEntryError);
    expect(() => entryKey(Buffer.from('..'), 'entry')).toThrow(UnsafeEntryError);
    expect(entryKey(Buffer.from('./a//b/'), 'entry')).toBe('a/b');
    expect(entryKey(Buffer.from('/abs/path'), 'entry')).toBe('abs/path');
    expect(entryKey(Buffer.from('./'), 'entry')).toBe('');
    expect(entryKey(Buffer.from('a/..b/c.'), 'entry')).toBe('a/..b/c.');
    expect(entryKey(Buffer.from([0x61, 0xff, 0x2f, 0x62]), 'entry')).toBe('a\xff/b');
  });
});

describe('what the stream says, in order', () => {
  it('writes every kind of entry straight after the directories it lies in, while those may still be on their way to disk', async () => {
    const big = Buffer.alloc(300 * 1024, 7);
    const before = await sentinelState();
    await unpack([
      dir('a', { mode: 0o555 }),
      dir('a/b'),
      symlink('a/b/link', '../../elsewhere'),
      dir('a/c'),
      file('a/c/small', 'small'),
      hardlink('a/c/hard', 'a/c/small'),
      dir('a/d'),
      entry(header('a/d/big', 'file', { size: big.length }), [big.subarray(0, 1000), big.subarray(1000)]),
      dir('a/e'),
      entry(header('a/e/fifo', 'fifo')),
      dir('a/f'),
      file('a/f/x', 'pax', { pax: [[paxKey('SCHILY.xattr.user.test'), Buffer.from('v')]] }),
      symlink('g', sentinel),
      dir('g'),
      file('g/victim', 'inside'),
    ]);
    expect(await readlink(join(root, 'a/b/link'))).toBe('../../elsewhere');
    expect((await stat(join(root, 'a/c/hard'))).ino).toBe((await stat(join(root, 'a/c/small'))).ino);
    expect((await readFile(join(root, 'a/d/big'))).equals(big)).toBe(true);
    expect((await lstat(join(root, 'a/e/fifo'))).isFIFO()).toBe(true);
    expect(await readFile(join(root, 'a/f/x'), 'utf8')).toBe('pax');
    expect(getfattrValue(join(root, 'a/f/x'), 'user.test')).toBe('v');
    expect((await lstat(join(root, 'a'))).mode & 0o7777).toBe(0o555);
    expect((await lstat(join(root, 'g'))).isDirectory()).toBe(true);
    expect(await readFile(join(root, 'g/victim'), 'utf8')).toBe('inside');
    expect(await sentinelState()).toBe(before);
  });

  it('lets the later copy of a path win, whatever the types', async () => {
    await unpack([
      file('f', 'first'),
      file('f', 'second', { mode: 0o600 }),
      dir('d'),
      file('d/inner', 'inner'),
      file('d', 'a file now'),
      symlink('s', 'somewhere'),
      file('s', 'a file over a symlink'),
      file('t', 'a file'),
      symlink('t', 'a symlink now'),
    ]);
    expect(await readFile(join(root, 'f'), 'utf8')).toBe('second');
    expect((await stat(join(root, 'f'))).mode & 0o7777).toBe(0o600);
    expect(await readFile(join(root, 'd'), 'utf8')).toBe('a file now');
    expect(await readFile(join(root, 's'), 'utf8')).toBe('a file over a symlink');
    expect(await readlink(join(root, 't'))).toBe('a symlink now');
  });

  it('keeps the old inode for a hardlink made before its target path was replaced', async () => {
    await unpack([file('t', 'old'), hardlink('l', 't'), file('t', 'new')]);
    expect(await readFile(join(root, 'l'), 'utf8')).toBe('old');
    expect(await readFile(join(root, 't'), 'utf8')).toBe('new');
  });

  it('links to a symlink itself, not to what it points at', async () => {
    await unpack([symlink('s', '/etc/passwd'), hardlink('l', 's')]);
    expect((await lstat(join(root, 'l'))).isSymbolicLink()).toBe(true);
    expect((await lstat(join(root, 'l'))).ino).toBe((await lstat(join(root, 's'))).ino);
  });

  it('creates parents that come after their children, and gives them their entry later', async () => {
    await unpack([file('a/b/c', 'deep'), dir('a/b', { mode: 0o711, mtime: T0 + 7 }), dir('a', { mode: 0o750, mtime: T0 + 8 })]);
    expect(await readFile(join(root, 'a/b/c'), 'utf8')).toBe('deep');
    expect(await stat(join(root, 'a/b'))).toMatchObject({ mode: 0o40711, mtimeMs: (T0 + 7) * 1000 });
    expect(await stat(join(root, 'a'))).toMatchObject({ mode: 0o40750, mtimeMs: (T0 + 8) * 1000 });
  });

  it('gives directories their mode and mtime after their children, read-only ones included (rootless too)', async () => {
    for (const rootless of [false, true]) {
      await rm(root, { recursive: true, force: true });
      await mkdir(root);
      await unpack(
        [
          dir('.', { mtime: T0 - 1 }),
          dir('ro', { mode: 0o555, mtime: T0 + 1 }),
          dir('ro/inner', { mode: 0o500, mtime: T0 + 2 }),
          file('ro/inner/f', 'f', { mode: 0o400, mtime: T0 + 3 }),
          file('ro/g', 'g', { mtime: T0 + 4 }),
        ],
        rootless,
      );
      expect(await stat(join(root, 'ro'))).toMatchObject({ mode: 0o40555, mtimeMs: (T0 + 1) * 1000 });
      expect(await stat(join(root, 'ro/inner'))).toMatchObject({ mode: 0o40500, mtimeMs: (T0 + 2) * 1000 });
      expect(await stat(join(root, 'ro/inner/f'))).toMatchObject({ mode: 0o100400, mtimeMs: (T0 + 3) * 1000, atimeMs: (T0 + 3) * 1000 });
      expect((await stat(root)).mtimeMs).toBe((T0 - 1) * 1000);
      await chmod(join(root, 'ro'), 0o755);
      await chmod(join(root, 'ro/inner'), 0o755);
    }
  });

  it('applies a fractional PAX mtime, and the mtime of a symlink itself', async () => {
    await unpack([
      file('f', 'f', { pax: [[paxKey('mtime'), Buffer.from('1600000000.25')]] }),
      entry(header('s', 'symlink', { linkname: Buffer.from('f'), mtime: T0 + 9 })),
    ]);
    expect((await lstat(join(root, 'f'))).mtimeMs).toBe(1_600_000_000_250);
    expect((await lstat(join(root, 's'))).mtimeMs).toBe((T0 + 9) * 1000);
  });

  it('keeps setuid, setgid and sticky bits and numeric owners, chmod after chown', async () => {
    if (process.getuid?.() !== 0) return expect.fail('this test needs root (chown)');
    await unpack([
      file('su', 'su', { mode: 0o4755, uid: 1234, gid: 5678 }),
      file('sg', 'sg', { mode: 0o2711, uid: 0, gid: 42 }),
      dir('tmp', { mode: 0o1777, uid: 99, gid: 98 }),
    ]);
    expect(await stat(join(root, 'su'))).toMatchObject({ mode: 0o104755, uid: 1234, gid: 5678 });
    expect(await stat(join(root, 'sg'))).toMatchObject({ mode: 0o102711, uid: 0, gid: 42 });
    expect(await stat(join(root, 'tmp'))).toMatchObject({ mode: 0o41777, uid: 99, gid: 98 });
  });
});

describe('sparse files (contract B)', () => {
  it('writes the segments at their offsets and leaves the rest as holes', async () => {
    const size = 64 * 1024 * 1024;
    const a = Buffer.alloc(4096, 'a');
    const b = Buffer.alloc(8192, 'b');
    const sparse = entry(header('sparse', 'file', { size, sparse: { segments: [[0, 4096], [32 * 1024 * 1024, 8192]] } }), [
      // The stored bytes, cut across the segment boundary.
      Buffer.concat([a, b.subarray(0, 100)]),
      b.subarray(100),
    ]);
    const hole = entry(header('all-hole', 'file', { size: 1 << 20, sparse: { segments: [] } }));
    await unpack([sparse, hole]);
    const stats = await stat(join(root, 'sparse'));
    expect(stats.size).toBe(size);
    // Allocated: the two segments, not 64 MiB (a few blocks of slack for the file system).
    expect(stats.blocks * 512).toBeLessThan(1024 * 1024);
    const content = await readFile(join(root, 'sparse'));
    const expected = Buffer.alloc(size);
    a.copy(expected, 0);
    b.copy(expected, 32 * 1024 * 1024);
    expect(createHash('sha256').update(content).digest('hex')).toBe(createHash('sha256').update(expected).digest('hex'));
    expect(await stat(join(root, 'all-hole'))).toMatchObject({ size: 1 << 20, blocks: 0 });
  });
});

describe('rootless', () => {
  it('records the owner as the rootless-containers proto umoci writes, nothing for root:root', () => {
    // Test vectors of umoci's oci/layer/utils_test.go (TestUnmapRootless).
    expect(rootlessOwnerRecord(0, 0)).toBeUndefined();
    expect(rootlessOwnerRecord(521, 0)?.toString('hex')).toBe('08890410ffffffff0f');
    expect(rootlessOwnerRecord(0, 942)?.toString('hex')).toBe('08ffffffff0f10ae07');
    expect(rootlessOwnerRecord(333, 825)?.toString('hex')).toBe('08cd0210b906');
    expect(rootlessOwnerRecord(4_294_967_294, 1)?.toString('hex')).toBe('08feffffff0f1001');
  });

  it('turns device nodes into empty files and says so once, with a count', async () => {
    await unpack(
      [
        entry(header('null', 'character-device', { mode: 0o666, devmajor: 1, devminor: 3 })),
        entry(header('sda', 'block-device', { mode: 0o660, devmajor: 8, devminor: 0 })),
      ],
      true,
    );
    expect(await stat(join(root, 'null'))).toMatchObject({ mode: 0o100666, size: 0 });
    expect(await stat(join(root, 'sda'))).toMatchObject({ mode: 0o100660, size: 0 });
    expect(warnings).toEqual([
      {
        code: 'UNPACK_DEVICES_AS_FILES',
        message: '2 device nodes were created as empty regular files (creating device nodes needs privilege), e.g. null',
      },
    ]);
  });
});

describe('xattrs of a header', () => {
  it('reads SCHILY records as raw bytes, the first of a name winning, and leaves LIBARCHIVE records alone as the runtimes do', () => {
    const h = header('f', 'file', {
      pax: [
        [paxKey('SCHILY.xattr.security.capability'), Buffer.from([1, 0, 0, 2])],
        [paxKey('LIBARCHIVE.xattr.user.na%3Dme'), Buffer.from(Buffer.from([0xff, 0]).toString('base64'))],
        [paxKey('SCHILY.xattr.security.capability'), Buffer.from('AAAA', 'latin1')],
        [Buffer.concat([paxKey('SCHILY.xattr.user.'), Buffer.from([0xe9, 0xff])]), Buffer.from('v')],
        [paxKey('atime'), Buffer.from('1')],
      ],
    });
    expect(entryXattrs(h).map(([name, value]) => [name.toString('latin1'), value.toString('hex')])).toEqual([
      ['security.capability', '01000002'],
      ['user.\xe9\xff', '76'],
    ]);
  });
});

describe('the partial directory', () => {
  it('is emptied for an attempt that starts over, read-only directories and non-UTF-8 names included, and stays 0700', async () => {
    const partial = await createPartialDirectory(join(work, 'again'));
    const base = Buffer.from(partial.path);
    await mkdir(join(partial.path, 'ro/sub'), { recursive: true });
    await writeFile(join(partial.path, 'ro/sub/f'), 'f');
    await chmod(join(partial.path, 'ro/sub'), 0o500);
    await chmod(join(partial.path, 'ro'), 0o555);
    await writeFile(Buffer.concat([base, Buffer.from('/bad-'), Buffer.from([0xff, 0xfe])]), 'x');
    await emptyDirectory(partial.path);
    expect(await readdir(partial.path)).toEqual([]);
    expect(lstatSync(partial.path).mode & 0o7777).toBe(0o700);
    await partial.remove();
  });

  it('is created 0700 beside the target, renamed onto it, and refuses a non-empty target', async () => {
    const target = join(work, 'rootfs');
    const partial = await createPartialDirectory(target);
    expect(partial.path).toMatch(/\/rootfs\.partial-[0-9a-f]{8}$/);
    expect(lstatSync(partial.path).mode & 0o777).toBe(0o700);
    await writeFile(join(partial.path, 'f'), 'f');
    await partial.commit();
    expect(await readdir(target)).toEqual(['f']);
    await expect(createPartialDirectory(target)).rejects.toThrow(/the directory is not empty/);
    await expect(createPartialDirectory(join(work, 'no/such/parent'))).rejects.toThrow(/parent directory .* does not exist/);
  });
});

describe('where unpack cannot keep Unix metadata', () => {
  it('refuses on Windows and macOS with a pointer to pull and wsl --import', () => {
    expect(() => checkUnpackSupported('win32')).toThrow(UsageError);
    expect(() => checkUnpackSupported('win32')).toThrow(/oci-rootfs pull IMAGE -o rootfs\.tar.*wsl --import/);
    expect(() => checkUnpackSupported('darwin')).toThrow(UsageError);
    expect(() => checkUnpackSupported('linux')).not.toThrow();
  });

  it('names both fixes, python3 or the native addon, when an entry needs one and neither is there', async () => {
    const writer = new TreeWriter(root, { rootless: false, specialFiles: new SpecialFiles({ python: 'no-such-python3', native: null }) });
    try {
      await writer.write(file('plain', 'no helper needed'));
      await expect(writer.write(entry(header('fifo', 'fifo')))).rejects.toThrow(/no-such-python3 is needed to set extended attributes and create device nodes and fifos, and was not found: install python3, or build oci-rootfs's native addon/);
    } finally {
      await writer.close();
    }
  });
});
