/**
 * `oci-rootfs unpack` (issue 12) against a real unpacker: images built in code and pushed to
 * the real registry are unpacked by us and by `skopeo copy` + `umoci unpack` (as root), and by
 * us and `umoci unpack --rootless` as an unprivileged user (uid 65534, through setpriv); the
 * trees must be equal in path, type, mode, owner, size, content, link target, hardlink groups,
 * device numbers, xattrs and mtimes. Hostile layers (symlinks to `/` and `../../..`, entries,
 * hardlinks and whiteouts through them) must change nothing outside the target directory,
 * checked on a sentinel tree beside it. Runs as root; without skopeo/umoci/setpriv it fails
 * under CI and is reported as skipped (never silently) elsewhere.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { AbortError, DigestMismatchError, HardlinkTargetError, MalformedArchiveError } from '../../src/errors.js';
import type { PullEvent } from '../../src/pull/events.js';
import { unpackRootfs } from '../../src/unpack/unpack-rootfs.js';
import { diffTrees, listTar, listTree, sha256Hex, type TreeEntry } from '../helpers/listing.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { pushImage } from '../helpers/push.js';
import { buildTar, type FixtureEntry } from '../helpers/tar-fixture.js';
import { pullRootfs } from '../../src/pull/pull-rootfs.js';

const execFileAsync = promisify(execFile);
const registry = inject('registry');
const CLI = join(resolve(dirname(fileURLToPath(import.meta.url)), '../..'), 'dist/cli/main.js');

const TOOLS = ['/usr/bin/skopeo', '/usr/bin/umoci', '/usr/bin/setpriv', '/usr/bin/getfattr'];
const missing = TOOLS.filter((tool) => !existsSync(tool));
const isRoot = process.getuid?.() === 0;
if ((missing.length > 0 || !isRoot) && process.env['CI'] !== undefined) {
  throw new Error(`the unpack test needs root and ${missing.join(', ')}`);
}
if (missing.length > 0 || !isRoot) {
  console.warn(`unpack.test.ts skipped: ${missing.length > 0 ? `missing ${missing.join(', ')}` : 'not root'}`);
}
const run = missing.length === 0 && isRoot ? describe : describe.skip;

/** The unprivileged user of the rootless runs. */
const NOBODY = 65534;

// ---------------------------------------------------------------------------------------------
// Images

const T0 = 1_600_000_000;
const capability = Buffer.from('0100000200200000000000000000000000000000', 'hex');
const nonUtf8 = Buffer.concat([Buffer.from('names/bad-'), Buffer.from([0xff, 0xfe]), Buffer.from('.bin')]);
const nonUtf8Dir = Buffer.concat([Buffer.from('names/dir-'), Buffer.from([0xe9])]);

const dir = (name: string | Buffer, more: Partial<FixtureEntry> = {}): FixtureEntry => ({ name, type: 'dir', mode: 0o755, mtime: T0, ...more });
const file = (name: string | Buffer, content: string | Buffer, more: Partial<FixtureEntry> = {}): FixtureEntry => ({
  name,
  type: 'file',
  content,
  mode: 0o644,
  mtime: T0 + 1,
  ...more,
});
const symlink = (name: string, target: string, more: Partial<FixtureEntry> = {}): FixtureEntry => ({
  name,
  type: 'symlink',
  linkname: target,
  mode: 0o777,
  mtime: T0 + 2,
  ...more,
});
const link = (name: string, target: string): FixtureEntry => ({ name, type: 'link', linkname: target, mtime: T0 + 3 });
const whiteout = (path: string): FixtureEntry => {
  const slash = path.lastIndexOf('/');
  return { name: `${path.slice(0, slash + 1)}.wh.${path.slice(slash + 1)}`, type: 'file', content: '' };
};
const opaque = (path: string): FixtureEntry => ({ name: `${path}/.wh..wh..opq`, type: 'file', content: '' });

/** Every kind of entry and metadata an unpack must keep, over three layers. */
const FEATURES: FixtureEntry[][] = [
  [
    dir('.', { mode: 0o755, mtime: T0 - 5 }),
    dir('usr'),
    dir('usr/bin', { mtime: T0 + 10 }),
    file('usr/bin/sh', 'sh', { mode: 0o755 }),
    file('usr/bin/su', 'su', { mode: 0o4755 }),
    file('usr/bin/wall', 'wall', { mode: 0o2755, gid: 5 }),
    file('usr/bin/ping', 'ping', { mode: 0o755, pax: { 'SCHILY.xattr.security.capability': capability } }),
    file('usr/bin/tagged', 'tagged', { pax: { 'SCHILY.xattr.user.origin': Buffer.from([0x00, 0xff, 0x41]) } }),
    dir('usr/lib'),
    file('usr/lib/libfoo.so', 'foo'),
    file('usr/lib/libbar.so', 'bar', { uid: 1000, gid: 1000 }),
    symlink('bin', 'usr/bin'),
    symlink('lib64', 'usr/lib'),
    dir('etc'),
    symlink('etc/mtab', '/proc/mounts'),
    symlink('etc/owned-link', 'mtab', { uid: 7, gid: 8 }),
    dir('tmp', { mode: 0o1777 }),
    dir('shared', { mode: 0o2775, gid: 50, uid: 40 }),
    file('shared/f', 'shared', { uid: 40, gid: 0 }),
    dir('home', { mode: 0o755 }),
    dir('home/user', { mode: 0o700, uid: 1000, gid: 1000, mtime: T0 + 20 }),
    file('home/user/.profile', 'profile', { mode: 0o600, uid: 1000, gid: 1000 }),
    dir('ro', { mode: 0o555, mtime: T0 + 30 }),
    dir('ro/sub', { mode: 0o500, mtime: T0 + 31 }),
    file('ro/sub/file', 'in a read-only dir', { mode: 0o444 }),
    file('ro/file', 'also', { mode: 0o400 }),
    dir('names'),
    file('names/héllo wörld 日本語.txt', 'unicode'),
    file(nonUtf8, 'not utf-8'),
    dir(nonUtf8Dir),
    file(Buffer.concat([nonUtf8Dir, Buffer.from('/inner')]), 'inside a non-utf-8 dir'),
    dir('dev'),
    { name: 'dev/null', type: 'char', mode: 0o666, devmajor: 1, devminor: 3, mtime: T0 },
    { name: 'dev/sda', type: 'block', mode: 0o660, gid: 6, devmajor: 8, devminor: 0, mtime: T0 },
    { name: 'dev/initctl', type: 'fifo', mode: 0o600, mtime: T0 },
    dir('h'),
    file('h/orig', 'old content'),
    link('h/l1', 'h/orig'),
    link('h/l2', 'h/orig'),
    file('h/kept', 'kept content', { mode: 0o640 }),
    link('h/kept-link', 'h/kept'),
    dir('a'),
    file('a/gone', 'old a/gone'),
    dir('d'),
    file('d/old1', 'old1'),
    dir('d/sub'),
    file('d/sub/old2', 'old2'),
    dir('x'),
    dir('x/y'),
    file('x/y/z', 'z'),
    file('empty', ''),
    file('big', Buffer.alloc(3 * 1024 * 1024 + 17, 'abcdefgh')),
  ],
  [
    whiteout('a/gone'),
    whiteout('x/y'),
    dir('d', { mode: 0o750 }),
    file('d/new1', 'new1'),
    opaque('d'),
    dir('d/sub'),
    file('d/sub/new3', 'new3'),
    file('h/orig', 'new content'),
    file('bin/x', 'x', { mode: 0o755 }),
    whiteout('lib64/libfoo.so'),
    file('ro/sub/later', 'added to a read-only dir by a later layer', { mode: 0o644 }),
    // Children before their parent's entry (top-down order does this too).
    file('late/child', 'child first'),
    dir('late', { mode: 0o751, mtime: T0 + 40 }),
  ],
  [file('a/gone', 'a/gone again'), file('usr/bin/sh', 'new sh', { mode: 0o755 }), dir('usr/bin', { mode: 0o755, mtime: T0 + 50 })],
];

/**
 * Hostile layers: symlinks to `/` and `../../..` in the base and in the same layer, and
 * entries, hardlinks and whiteouts through them, in the same and in later layers.
 */
const HOSTILE: FixtureEntry[][] = [
  [
    symlink('root', '/'),
    symlink('up', '../../..'),
    symlink('etcl', '/etc'),
    dir('inside'),
    file('inside/f', 'inside'),
    file('root/base-through-root', 'base via root'),
  ],
  [
    file('root/sentinel/evil', 'through root'),
    file('up/escaped', 'through up'),
    file('etcl/passwd', 'root::0:0::/:/bin/sh\n'),
    link('up/hl', 'inside/f'),
    link('inside/hl2', 'root/inside/f'),
    whiteout('root/sentinel/victim'),
    whiteout('up/sentinel-victim'),
    symlink('same', '/'),
    file('same/same-layer', 'through a same-layer symlink'),
    symlink('deep', '../../../../../../..'),
    dir('deep/made-dir'),
    file('deep/made-dir/f', 'deep'),
  ],
  [whiteout('up/inside/f'), file('root/top', 'top through root'), link('root/top-link', 'up/escaped')],
];

// ---------------------------------------------------------------------------------------------
// Harness

let work: string;
const references: Record<'features' | 'hostile', string> = { features: '', hostile: '' };

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'oci-rootfs-unpack-'));
  await chmod(work, 0o755);
  const repo = `e2e-unpack/image-${randomBytes(4).toString('hex')}`;
  await pushImage(registry, repo, 'features', { layers: FEATURES.map((entries) => ({ tar: buildTar(entries), compression: 'gzip' })) });
  await pushImage(registry, repo, 'hostile', { layers: HOSTILE.map((entries) => ({ tar: buildTar(entries), compression: 'gzip' })) });
  references.features = `${registry}/${repo}:features`;
  references.hostile = `${registry}/${repo}:hostile`;
}, 60_000);

afterAll(async () => {
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI, as root or (with `user`) as that uid/gid through setpriv. */
function cli(args: string[], options: { user?: number; cwd?: string } = {}): Promise<Run> {
  const argv = [process.execPath, CLI, ...args];
  const command =
    options.user === undefined ? argv : ['setpriv', `--reuid=${options.user}`, `--regid=${options.user}`, '--clear-groups', ...argv];
  return new Promise((done) => {
    execFile(
      command[0]!,
      command.slice(1),
      { cwd: options.cwd ?? work, env: { ...process.env, DOCKER_CONFIG: work, HOME: work }, timeout: 120_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
        done({ code, stdout, stderr });
      },
    );
  });
}

/** A fresh directory owned by `user` (root when absent) to unpack into. */
async function place(name: string, user?: number): Promise<string> {
  const path = join(work, `${name}-${randomBytes(3).toString('hex')}`);
  await mkdir(path);
  if (user !== undefined) await chown(path, user, user);
  return path;
}

/** `skopeo copy` into an OCI layout (once per image), readable by everyone. */
const layouts = new Map<string, Promise<string>>();
function layoutOf(reference: string): Promise<string> {
  let layout = layouts.get(reference);
  if (layout === undefined) {
    layout = (async () => {
      const path = join(work, `layout-${randomBytes(3).toString('hex')}`);
      await execFileAsync('skopeo', ['--insecure-policy', 'copy', '--src-tls-verify=false', `docker://${reference}`, `oci:${path}:img`]);
      await execFileAsync('chmod', ['-R', 'a+rX', path]);
      return path;
    })();
    layouts.set(reference, layout);
  }
  return layout;
}

/** `umoci unpack` of the image (as `user` with `--rootless`); the rootfs path. */
async function umociUnpack(reference: string, user?: number): Promise<string> {
  const layout = await layoutOf(reference);
  const parent = await place('umoci', user);
  const bundle = join(parent, 'bundle');
  const args = ['unpack', ...(user === undefined ? [] : ['--rootless']), '--image', `${layout}:img`, bundle];
  const command = user === undefined ? ['umoci', ...args] : ['setpriv', `--reuid=${user}`, `--regid=${user}`, '--clear-groups', 'umoci', ...args];
  await execFileAsync(command[0]!, command.slice(1), { env: { ...process.env, HOME: parent } });
  return join(bundle, 'rootfs');
}

const at = (tree: readonly TreeEntry[], path: string): TreeEntry | undefined => tree.find((entry) => entry.path === path);

/** The mode, owner and mtime of each directory (diffTrees leaves directory mtimes out). */
async function directoryStamps(root: string, tree: readonly TreeEntry[]): Promise<string[]> {
  const stamps: string[] = [];
  const rootStats = await lstat(root);
  // umoci leaves the mtime of the rootfs directory itself alone: compared separately.
  stamps.push(`. ${(rootStats.mode & 0o7777).toString(8)} ${rootStats.uid}:${rootStats.gid}`);
  for (const entry of tree) if (entry.type === 'dir') stamps.push(`${entry.path} ${entry.mode} ${entry.uid}:${entry.gid} ${entry.mtime}`);
  return stamps;
}

// ---------------------------------------------------------------------------------------------

run('unpack as root equals skopeo copy + umoci unpack', () => {
  let ours: TreeEntry[];
  let umoci: TreeEntry[];
  let oursRoot: string;
  let umociRoot: string;
  let events: PullEvent[];

  beforeAll(async () => {
    oursRoot = join(await place('ours'), 'rootfs');
    events = [];
    [, umociRoot] = await Promise.all([
      unpackRootfs(references.features, { dir: oursRoot, dockerConfigDir: work, onEvent: (event) => events.push(event) }),
      umociUnpack(references.features),
    ]);
    [ours, umoci] = await Promise.all([listTree(oursRoot), listTree(umociRoot)]);
  }, 120_000);

  it('makes the same tree: types, modes, owners, contents, link targets, hardlink groups, devices, xattrs, mtimes', () => {
    expect(diffTrees(ours, umoci, ['ours', 'umoci'])).toEqual([]);
  });

  it('gives directories the modes and mtimes of their entries, after their children were written', async () => {
    expect(await directoryStamps(oursRoot, ours)).toEqual(await directoryStamps(umociRoot, umoci));
    expect(at(ours, 'ro')).toMatchObject({ mode: '0555', mtime: T0 + 30 });
    expect(at(ours, 'ro/sub')).toMatchObject({ mode: '0500', mtime: T0 + 31 });
    expect(at(ours, 'late')).toMatchObject({ mode: '0751', mtime: T0 + 40 });
    expect(at(ours, 'usr/bin')).toMatchObject({ mtime: T0 + 50 });
    expect(Math.floor((await lstat(oursRoot)).mtimeMs / 1000)).toBe(T0 - 5);
  });

  it('holds the cases under test (so a trivial tree cannot pass)', () => {
    const fileOf = (content: string, mode = '0644'): Partial<TreeEntry> => ({ type: 'file', mode, sha256: sha256Hex(Buffer.from(content)) });
    expect(at(ours, 'usr/bin/su')).toMatchObject(fileOf('su', '4755'));
    expect(at(ours, 'usr/bin/wall')).toMatchObject({ ...fileOf('wall', '2755'), gid: 5 });
    expect(at(ours, 'usr/bin/ping')?.xattrs).toEqual({ 'security.capability': capability.toString('hex') });
    expect(at(ours, 'usr/bin/tagged')?.xattrs).toEqual({ 'user.origin': '00ff41' });
    expect(at(ours, 'usr/lib/libbar.so')).toMatchObject({ uid: 1000, gid: 1000 });
    expect(at(ours, 'etc/owned-link')).toMatchObject({ type: 'symlink', uid: 7, gid: 8, mtime: T0 + 2 });
    expect(at(ours, 'etc/mtab')).toMatchObject({ type: 'symlink', linkname: '/proc/mounts' });
    expect(at(ours, 'tmp')).toMatchObject({ mode: '1777' });
    expect(at(ours, 'shared')).toMatchObject({ mode: '2775', uid: 40, gid: 50 });
    expect(at(ours, 'usr/bin/x')).toMatchObject(fileOf('x', '0755'));
    expect(at(ours, 'usr/lib/libfoo.so')).toBeUndefined();
    expect(at(ours, 'h/l1')).toMatchObject({ ...fileOf('old content'), hardlinkGroup: 'h/l1' });
    expect(at(ours, 'h/kept-link')).toMatchObject({ hardlinkGroup: 'h/kept' });
    expect(at(ours, 'h/orig')).toMatchObject({ ...fileOf('new content'), hardlinkGroup: '' });
    expect(at(ours, 'dev/null')).toMatchObject({ type: 'char', device: '1,3', mode: '0666' });
    expect(at(ours, 'dev/sda')).toMatchObject({ type: 'block', device: '8,0', gid: 6 });
    expect(at(ours, 'dev/initctl')).toMatchObject({ type: 'fifo', mode: '0600' });
    expect(at(ours, 'names/bad-\\xff\\xfe.bin')).toMatchObject(fileOf('not utf-8'));
    expect(at(ours, 'names/dir-\\xe9/inner')).toMatchObject(fileOf('inside a non-utf-8 dir'));
    expect(at(ours, 'ro/sub/later')).toMatchObject(fileOf('added to a read-only dir by a later layer'));
    expect(ours.filter((e) => e.path.startsWith('d/')).map((e) => e.path)).toEqual(['d/new1', 'd/sub', 'd/sub/new3']);
    expect(at(ours, 'x/y')).toBeUndefined();
    expect(at(ours, 'big')?.size).toBe(3 * 1024 * 1024 + 17);
  });

  it('reports the pull as pull does, ending with done once the tree is in place', () => {
    expect(events[0]?.type).toBe('resolved');
    expect(events.at(-1)).toMatchObject({ type: 'done', entries: expect.any(Number) as number });
    expect(events.filter((e) => e.type === 'warning')).toEqual([]);
  });
});

run('unpack as an unprivileged user equals umoci unpack --rootless', () => {
  let ours: TreeEntry[];
  let umoci: TreeEntry[];
  let result: Run;

  beforeAll(async () => {
    const parent = await place('rootless', NOBODY);
    const target = join(parent, 'rootfs');
    let umociRoot: string;
    [result, umociRoot] = await Promise.all([
      cli(['unpack', '--progress', 'none', references.features, target], { user: NOBODY }),
      umociUnpack(references.features, NOBODY),
    ]);
    expect(result.code, result.stderr).toBe(0);
    [ours, umoci] = await Promise.all([listTree(target), listTree(umociRoot)]);
  }, 120_000);

  it('makes the same tree, the original owners in user.rootlesscontainers byte for byte', () => {
    expect(diffTrees(ours, umoci, ['ours', 'umoci --rootless'])).toEqual([]);
    expect(at(ours, 'usr/lib/libbar.so')).toMatchObject({ uid: NOBODY, gid: NOBODY });
    // 1000:1000 as the proto message umoci writes: field 1 and 2, varints.
    expect(at(ours, 'usr/lib/libbar.so')?.xattrs).toEqual({ 'user.rootlesscontainers': '08e80710e807' });
    expect(at(ours, 'usr/bin/wall')?.xattrs).toEqual({ 'user.rootlesscontainers': '08ffffffff0f1005' });
    expect(at(ours, 'usr/bin/tagged')?.xattrs).toEqual({ 'user.origin': '00ff41' });
  });

  it('makes device nodes empty files and gets files into read-only directories', () => {
    expect(at(ours, 'dev/null')).toMatchObject({ type: 'file', size: 0, mode: '0666' });
    expect(at(ours, 'dev/initctl')).toMatchObject({ type: 'fifo' });
    expect(at(ours, 'ro')).toMatchObject({ mode: '0555' });
    expect(at(ours, 'ro/sub/file')).toMatchObject({ type: 'file', mode: '0444' });
    expect(at(ours, 'usr/bin/su')).toMatchObject({ mode: '4755' });
  });

  it('says once per kind what it could not keep', () => {
    const warnings = result.stderr.split('\n').filter((line) => line.includes('warning'));
    expect(warnings).toEqual([
      'oci-rootfs: warning: 2 device nodes were created as empty regular files (creating device nodes needs privilege), e.g. dev/null',
      'oci-rootfs: warning: 1 xattr was not set: a rootless unpack cannot set security.* or trusted.* xattrs, e.g. security.capability on usr/bin/ping',
      expect.stringMatching(/^oci-rootfs: warning: the owner of 1 entry could not be recorded in user.rootlesscontainers .* e\.g\. etc\/owned-link$/),
    ]);
  });
});

run('unpack never touches anything outside its directory', () => {
  /** A tree beside the target that a hostile image aims at; hashed before and after. */
  async function sentinel(parent: string): Promise<string> {
    const path = join(parent, 'sentinel');
    await mkdir(join(path, 'sub'), { recursive: true });
    await writeFile(join(path, 'victim'), 'must survive');
    await writeFile(join(path, 'sub', 'file'), 'must survive too');
    await writeFile(join(parent, 'sentinel-victim'), 'also next to the target');
    return path;
  }
  async function hashTree(path: string): Promise<string> {
    const tree = await listTree(path);
    return createHash('sha256').update(JSON.stringify(tree)).digest('hex');
  }

  for (const mode of ['root', 'rootless'] as const) {
    it(`keeps every entry of symlinks to / and ../../.. inside the target (${mode})`, async () => {
      const user = mode === 'rootless' ? NOBODY : undefined;
      const parent = await place(`hostile-${mode}`, user);
      await sentinel(parent);
      const before = await hashTree(parent);
      const target = join(parent, 'rootfs');
      const result = await cli(['unpack', '--progress', 'none', references.hostile, target], user === undefined ? {} : { user });
      expect(result.code, result.stderr).toBe(0);
      const tree = await listTree(target);
      // The only change beside the target is the target itself.
      await rm(target, { recursive: true });
      expect(await hashTree(parent)).toBe(before);
      expect(await readFile('/etc/passwd', 'utf8')).not.toContain('root::0:0::/:/bin/sh');
      const paths = tree.map((entry) => `${entry.path} ${entry.type}${entry.linkname === '' ? '' : ` -> ${entry.linkname}`}`);
      expect(paths).toEqual([
        'base-through-root file',
        'deep symlink -> ../../../../../../..',
        'escaped file',
        'etc dir',
        'etc/passwd file',
        'etcl symlink -> /etc',
        'hl file',
        'inside dir',
        'inside/hl2 file',
        'made-dir dir',
        'made-dir/f file',
        'root symlink -> /',
        'same symlink -> /',
        'same-layer file',
        'sentinel dir',
        'sentinel/evil file',
        'top file',
        'top-link file',
        'up symlink -> ../../..',
      ]);
      expect(at(tree, 'top-link')?.hardlinkGroup).toBe('escaped');
    });
  }
});

run('unpack refuses what it must and leaves nothing behind', () => {
  it('exits 2 when the directory is not empty, and 2 when it is a file, touching neither', async () => {
    const parent = await place('usage');
    const full = join(parent, 'full');
    await mkdir(full);
    await writeFile(join(full, 'keep'), 'mine');
    const full$ = await cli(['unpack', references.features, full]);
    expect(full$.code).toBe(2);
    expect(full$.stderr).toBe(`oci-rootfs: cannot unpack into ${full}: the directory is not empty\n`);
    await writeFile(join(parent, 'plain'), 'a file');
    const plain$ = await cli(['unpack', references.features, join(parent, 'plain')]);
    expect(plain$.code).toBe(2);
    expect(plain$.stderr).toContain('it exists and is not a directory');
    expect((await readdir(parent)).sort()).toEqual(['full', 'plain']);
    expect(await readdir(full)).toEqual(['keep']);
  });

  it('unpacks into an existing empty directory', async () => {
    const target = await place('empty-target');
    const result = await cli(['unpack', '--progress', 'none', references.hostile, target]);
    expect(result.code, result.stderr).toBe(0);
    expect((await readdir(target)).length).toBeGreaterThan(5);
  });

  it('removes the partial tree when a layer fails after entries were written (exit 8)', async () => {
    const repo = `e2e-unpack/broken-${randomBytes(4).toString('hex')}`;
    // The top layer is fine and written first; the base layer's tar is cut in a body.
    const base = buildTar([dir('a'), file('a/big', Buffer.alloc(64 * 1024, 1))]).subarray(0, 512 * 40);
    await pushImage(registry, repo, 'v1', {
      layers: [
        { tar: base, compression: 'gzip' },
        { tar: buildTar([file('top', 'top')]), compression: 'gzip' },
      ],
    });
    const parent = await place('broken');
    const target = join(parent, 'rootfs');
    await expect(unpackRootfs(`${registry}/${repo}:v1`, { dir: target, dockerConfigDir: work })).rejects.toBeInstanceOf(MalformedArchiveError);
    expect(await readdir(parent)).toEqual([]);
    const result = await cli(['unpack', `${registry}/${repo}:v1`, target]);
    expect(result.code).toBe(8);
    expect(await readdir(parent)).toEqual([]);
  });

  it('exits 3 for a tag that does not exist, before any layer, leaving nothing', async () => {
    const parent = await place('missing');
    const result = await cli(['unpack', `${references.features}-no-such-tag`, join(parent, 'r')]);
    expect(result.code, result.stderr).toBe(3);
    expect(await readdir(parent)).toEqual([]);
  });

  it('refuses a hardlink to a path that does not exist, leaving nothing', async () => {
    const repo = `e2e-unpack/badlink-${randomBytes(4).toString('hex')}`;
    await pushImage(registry, repo, 'v1', { layers: [{ tar: buildTar([file('f', 'f'), link('l', 'nowhere')]), compression: 'gzip' }] });
    const parent = await place('badlink');
    await expect(unpackRootfs(`${registry}/${repo}:v1`, { dir: join(parent, 'r'), dockerConfigDir: work })).rejects.toBeInstanceOf(
      HardlinkTargetError,
    );
    expect(await readdir(parent)).toEqual([]);
  });

  it('stops on abort and removes the partial tree, read-only directories included (rootless)', async () => {
    const parent = await place('abort');
    const controller = new AbortController();
    const unpacked = unpackRootfs(references.features, {
      dir: join(parent, 'r'),
      dockerConfigDir: work,
      rootless: true,
      signal: controller.signal,
      onEvent: (event) => {
        if (event.type === 'layer-done') controller.abort();
      },
    });
    await expect(unpacked).rejects.toBeInstanceOf(AbortError);
    expect(await readdir(parent)).toEqual([]);
  });

  it('on SIGINT exits 130 and leaves no partial directory', async () => {
    const parent = await place('sigint');
    const child = spawn(process.execPath, [CLI, 'unpack', '--progress', 'json', references.features, join(parent, 'r')], {
      env: { ...process.env, DOCKER_CONFIG: work },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      // Interrupt once the first layer is being written.
      if (stderr.includes('"layer-start"') && !child.killed) child.kill('SIGINT');
    });
    const code = await new Promise<number | null>((done) => child.on('exit', (status) => done(status)));
    expect(code).toBe(130);
    expect(await readdir(parent)).toEqual([]);
  });
});

// The tar from `pull` and the tree from `unpack` are one flatten: the same entries.
run('unpack writes what pull streams', () => {
  it('has a path on disk for every entry of the pulled tar, with its type', async () => {
    const chunks: Buffer[] = [];
    for await (const chunk of pullRootfs(references.features, { dockerConfigDir: work })) chunks.push(chunk as Buffer);
    const listed = (await listTar(Buffer.concat(chunks))).filter((entry) => entry.path !== '.' && entry.path !== '');
    const target = join(await place('same'), 'rootfs');
    await unpackRootfs(references.features, { dir: target, dockerConfigDir: work });
    const tree = await listTree(target);
    const typeOf = (type: string): string => (type === 'hardlink' ? 'file' : type);
    expect(tree.map((entry) => `${entry.path} ${entry.type}`).sort()).toEqual(listed.map((entry) => `${entry.path} ${typeOf(entry.type)}`).sort());
    expect(tree.length).toBeGreaterThan(40);
  });
});

// The tree is a restartable output, as a file is (DESIGN.md §3): each path once, and a layer
// damaged in transit fetched once more, through an emptied partial directory.
run('unpack starts over as pull -o FILE does', () => {
  const FAST = { retryBaseDelayMs: 1, retryMaxDelayMs: 5, plainHttp: true } as const;
  // Uncompressed, so a flipped byte in the second header is what the tar reader meets first.
  const damaged = [file('a', Buffer.alloc(1000, 0x61)), file('b', 'bee\n'), file('c', Buffer.alloc(100_000, 0x63))];
  const SECOND_HEADER = 3 * 512 + 20;

  it('writes a path a layer holds twice once, the later copy, after one retry of the output', async () => {
    const repo = `e2e-unpack/dup-${randomBytes(4).toString('hex')}`;
    await pushImage(registry, repo, 'v1', {
      layers: [
        { tar: buildTar([file('base', 'base\n')]), compression: 'gzip' },
        {
          tar: buildTar([file('etc/motd', 'first\n', { mode: 0o644 }), file('keep', 'k\n'), file('etc/motd', 'second\n', { mode: 0o600, mtime: T0 + 9 })]),
          compression: 'gzip',
        },
      ],
    });
    const parent = await place('dup');
    const target = join(parent, 'rootfs');
    const events: PullEvent[] = [];
    const result = await unpackRootfs(`${registry}/${repo}:v1`, { dir: target, dockerConfigDir: work, ...FAST, onEvent: (event) => events.push(event) });
    const tree = await listTree(target);
    expect(tree.map((entry) => entry.path).sort()).toEqual(['base', 'etc', 'etc/motd', 'keep']);
    expect(at(tree, 'etc/motd')).toMatchObject({ type: 'file', mode: '0600', mtime: T0 + 9, sha256: sha256Hex(Buffer.from('second\n')) });
    // One entry per path, the root directory included (a stream would carry etc/motd twice).
    expect(result.entries).toBe(5);
    const retries = events.filter((event) => event.type === 'retry');
    expect(retries).toHaveLength(1);
    expect(retries[0]).toMatchObject({ what: 'output', attempt: 1 });
    // Not the stream's "both are in the output" warning: the tree holds the later copy only.
    const duplicates = events.filter((event) => event.type === 'warning' && event.code === 'DUPLICATE_PATH');
    expect(duplicates.map((event) => event.type === 'warning' && event.message).join('\n')).not.toMatch(/both are in the output/);
    expect(events.filter((event) => event.type === 'done')).toHaveLength(1);
    expect(await readdir(parent)).toEqual(['rootfs']);
  });

  it('fetches a layer damaged in transit once more and unpacks it whole (2 GETs, a retry event)', async () => {
    const repo = `e2e-unpack/damaged-${randomBytes(4).toString('hex')}`;
    const image = await pushImage(registry, repo, 'v1', {
      layers: [
        { tar: buildTar([file('base', 'base\n')]), compression: 'gzip' },
        { tar: buildTar(damaged), compression: 'none' },
      ],
    });
    const proxy = await startFaultProxy({ upstream: registry });
    try {
      const blob = new RegExp(`/blobs/${image.layers[1]?.digest}$`);
      proxy.add({ path: blob, fault: { type: 'corrupt', offset: SECOND_HEADER }, times: 1 });
      const parent = await place('damaged');
      const target = join(parent, 'rootfs');
      const events: PullEvent[] = [];
      await unpackRootfs(`${proxy.host}/${repo}:v1`, { dir: target, dockerConfigDir: work, ...FAST, onEvent: (event) => events.push(event) });
      const tree = await listTree(target);
      expect(tree.map((entry) => `${entry.path} ${entry.sha256 ?? ''}`).sort()).toEqual([
        `a ${sha256Hex(Buffer.alloc(1000, 0x61))}`,
        `b ${sha256Hex(Buffer.from('bee\n'))}`,
        `base ${sha256Hex(Buffer.from('base\n'))}`,
        `c ${sha256Hex(Buffer.alloc(100_000, 0x63))}`,
      ]);
      expect(proxy.faultsInjected).toBe(1);
      expect(proxy.requests(blob).filter((request) => request.method === 'GET')).toHaveLength(2);
      const retries = events.filter((event) => event.type === 'retry');
      expect(retries).toHaveLength(1);
      expect(retries[0]).toMatchObject({ what: `layer 1 (${image.layers[1]?.digest})`, attempt: 1 });
      expect(await readdir(parent)).toEqual(['rootfs']);
    } finally {
      await proxy.close();
    }
  });

  it('fails when the layer is damaged again: a digest error, exit 7 through the CLI, nothing left', async () => {
    const repo = `e2e-unpack/damaged-twice-${randomBytes(4).toString('hex')}`;
    const image = await pushImage(registry, repo, 'v1', {
      layers: [
        { tar: buildTar([file('base', 'base\n')]), compression: 'gzip' },
        { tar: buildTar(damaged), compression: 'none' },
      ],
    });
    const proxy = await startFaultProxy({ upstream: registry });
    try {
      proxy.add({ path: new RegExp(`/blobs/${image.layers[1]?.digest}$`), fault: { type: 'corrupt', offset: SECOND_HEADER }, times: Infinity });
      const parent = await place('damaged-twice');
      await expect(unpackRootfs(`${proxy.host}/${repo}:v1`, { dir: join(parent, 'r'), dockerConfigDir: work, ...FAST })).rejects.toBeInstanceOf(
        DigestMismatchError,
      );
      expect(proxy.faultsInjected).toBe(2);
      expect(await readdir(parent)).toEqual([]);
      const result = await cli(['unpack', '--plain-http', '--retries', '1', `${proxy.host}/${repo}:v1`, join(parent, 'r')]);
      expect(result.code, result.stderr).toBe(7);
      expect(result.stderr).toMatch(/^oci-rootfs: layer 1 \(sha256:[0-9a-f]{64}\) does not match its digest: corrupted in transit or in the registry's storage/);
      expect(proxy.faultsInjected).toBe(4);
      expect(await readdir(parent)).toEqual([]);
    } finally {
      await proxy.close();
    }
  });
});
