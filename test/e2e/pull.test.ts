/**
 * End-to-end pulls against the real registry (DESIGN.md §3, §7): every test builds its image in
 * code with the raw tar fixture builder, pushes it under a repo of its own, pulls it through
 * `pullRootfs()` (a few through the CLI in dist/) and asserts on the listing of the produced
 * tar, read back with our reader: path, type, mode, owner, size, content hash, link target.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { OciRootfsError } from '../../src/errors.js';
import type { LayerDoneEvent, PullEvent } from '../../src/pull/events.js';
import { pullRootfs } from '../../src/pull/pull-rootfs.js';
import {
  listTar,
  sha256Hex,
  treeOfListing,
  type ListedEntry,
  type TreeEntry,
} from '../helpers/listing.js';
import { pushBlob, pushImage, pushIndex, pushManifest, sha256, type LayerInput } from '../helpers/push.js';
import { buildTar, type FixtureEntry } from '../helpers/tar-fixture.js';
import { runInProcess } from '../helpers/cli.js';

const registry = inject('registry');
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = join(ROOT, 'dist/cli/main.js');
const emptyConfigDir = await mkdtemp(join(tmpdir(), 'oci-rootfs-e2e-noconfig-'));
const workDir = await mkdtemp(join(tmpdir(), 'oci-rootfs-e2e-pull-'));

afterAll(async () => {
  await rm(emptyConfigDir, { recursive: true, force: true });
  await rm(workDir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Building, pushing and pulling

/** A repository name no other test (or earlier run against the same registry) uses. */
function uniqueRepo(what: string): string {
  return `e2e-pull/${what}-${randomBytes(4).toString('hex')}`;
}

type Layer = readonly FixtureEntry[] | { entries: readonly FixtureEntry[]; compression: 'gzip' | 'none' };

const isPlainList = (layer: Layer): layer is readonly FixtureEntry[] => Array.isArray(layer);

/** Pushes `layers` (base first; gzip unless told) as one image; returns its reference. */
async function pushLayers(what: string, layers: readonly Layer[], options: { config?: Record<string, unknown> } = {}): Promise<string> {
  const repo = uniqueRepo(what);
  const inputs: LayerInput[] = layers.map((layer) =>
    isPlainList(layer)
      ? { tar: buildTar(layer), compression: 'gzip' }
      : { tar: buildTar(layer.entries), compression: layer.compression },
  );
  await pushImage(registry, repo, 'v1', { layers: inputs, ...(options.config === undefined ? {} : { config: options.config }) });
  return `${registry}/${repo}:v1`;
}

type PullApiOptions = Parameters<typeof pullRootfs>[1];

/** The whole uncompressed tar the API produced for `reference`. */
async function pullBytes(reference: string, options: PullApiOptions = {}): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of pullRootfs(reference, { dockerConfigDir: emptyConfigDir, ...options })) {
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/**
 * The listing of what the API produced, after checking the archive as a whole: it ends with the
 * end-of-archive marker, and it extracts in one pass (every parent and hardlink target comes
 * before what needs it, no path twice).
 */
async function pullListing(reference: string, options: PullApiOptions = {}): Promise<ListedEntry[]> {
  const bytes = await pullBytes(reference, options);
  expect(bytes.subarray(-1024).equals(Buffer.alloc(1024)), 'the tar ends with the end-of-archive marker').toBe(true);
  const listing = await listTar(bytes);
  const paths = listing.map((entry) => entry.path);
  expect(paths.filter((path, i) => paths.indexOf(path) !== i), 'paths written twice').toEqual([]);
  treeOfListing(listing); // throws if a parent or hardlink target comes late
  // Every output has a root entry `./` (DESIGN.md §3); the cases below are about the rest.
  expect(listing.filter((entry) => entry.path === '.').map((entry) => entry.type), 'the root entry').toEqual(['dir']);
  return listing.filter((entry) => entry.path !== '.');
}

/** The error the API stream failed with (the test fails if it did not fail). */
async function pullError(reference: string, options: PullApiOptions = {}): Promise<OciRootfsError> {
  const outcome = await pullBytes(reference, options).then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(outcome, 'the pull must fail').toBeInstanceOf(OciRootfsError);
  return outcome as OciRootfsError;
}

const byPath = <T extends { path: string }>(list: readonly T[]): T[] =>
  [...list].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));

// ---------------------------------------------------------------------------------------------
// Fixture entries and expected listings

const fx = {
  dir: (name: string | Buffer, more: Partial<FixtureEntry> = {}): FixtureEntry => ({ name, type: 'dir', ...more }),
  file: (name: string | Buffer, content: string | Buffer, more: Partial<FixtureEntry> = {}): FixtureEntry => ({
    name,
    type: 'file',
    content,
    ...more,
  }),
  symlink: (name: string | Buffer, target: string | Buffer, more: Partial<FixtureEntry> = {}): FixtureEntry => ({
    name,
    type: 'symlink',
    linkname: target,
    mode: 0o777,
    ...more,
  }),
  link: (name: string, target: string): FixtureEntry => ({ name, type: 'link', linkname: target }),
  whiteout: (path: string): FixtureEntry => {
    const slash = path.lastIndexOf('/');
    return { name: `${path.slice(0, slash + 1)}.wh.${path.slice(slash + 1)}`, type: 'file', content: '' };
  },
  opaque: (dir: string): FixtureEntry => ({ name: `${dir}/.wh..wh..opq`, type: 'file', content: '' }),
};

type Meta = Partial<Pick<ListedEntry, 'mode' | 'uid' | 'gid' | 'mtime' | 'xattrs'>>;

const base = (path: string, meta: Meta): Omit<ListedEntry, 'type' | 'mode'> & Meta => ({
  path,
  uid: 0,
  gid: 0,
  size: 0,
  sha256: '',
  linkname: '',
  xattrs: {},
  device: '',
  mtime: 0,
  ...meta,
});

/** What the listing of the output should hold, one builder per entry type. */
const want = {
  dir: (path: string, meta: Meta = {}): ListedEntry => ({ type: 'dir', mode: '0755', ...base(path, meta) }),
  file: (path: string, content: string | Buffer, meta: Meta = {}): ListedEntry => ({
    type: 'file',
    mode: '0644',
    ...base(path, meta),
    size: Buffer.from(content).length,
    sha256: sha256Hex(Buffer.from(content)),
  }),
  symlink: (path: string, target: string, meta: Meta = {}): ListedEntry => ({
    type: 'symlink',
    mode: '0777',
    ...base(path, meta),
    linkname: target,
  }),
  hardlink: (path: string, target: string, meta: Meta = {}): ListedEntry => ({
    type: 'hardlink',
    mode: '0644',
    ...base(path, meta),
    linkname: target,
  }),
  char: (path: string, major: number, minor: number, meta: Meta = {}): ListedEntry => ({
    type: 'char',
    mode: '0666',
    ...base(path, meta),
    device: `${major},${minor}`,
  }),
  fifo: (path: string, meta: Meta = {}): ListedEntry => ({ type: 'fifo', mode: '0644', ...base(path, meta) }),
};

/** The expected tree (after extraction) of a regular file, for hardlink-group assertions. */
const treeFile = (path: string, content: string, hardlinkGroup = ''): Partial<TreeEntry> => ({
  path,
  type: 'file',
  sha256: sha256Hex(Buffer.from(content)),
  hardlinkGroup,
});

/** Path, type, content and hardlink group of every regular file of the extracted tree. */
const filesOf = (listing: readonly ListedEntry[]): Array<Partial<TreeEntry>> =>
  treeOfListing(listing)
    .filter((entry) => entry.type === 'file')
    .map(({ path, type, sha256, hardlinkGroup }) => ({ path, type, sha256, hardlinkGroup }));

// ---------------------------------------------------------------------------------------------
// The CLI

interface CliResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** The CLI program in this process (`runCli`, what the binary runs), with no Docker config of ours. */
function runCli(args: readonly string[], cwd = workDir): Promise<CliResult> {
  return runInProcess([...args], { cwd, env: { DOCKER_CONFIG: emptyConfigDir } });
}

/** The built binary, spawned: for what a shell sees of it. */
function spawnCli(args: readonly string[], cwd = workDir): Promise<CliResult> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (\`npm test\` does)`);
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd,
      env: { ...process.env, DOCKER_CONFIG: emptyConfigDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.on('error', reject);
    child.on('close', (code) =>
      resolvePromise({ code, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr).toString('utf8') }),
    );
  });
}

/** A fresh empty directory for one CLI run's output. */
const outDir = (): Promise<string> => mkdtemp(join(workDir, 'out-'));

/** GNU tar's opinion of `bytes` as an archive: its exit status. */
function gnuTarList(bytes: Buffer): Promise<number | null> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn('tar', ['-tf', '-'], { stdio: ['pipe', 'ignore', 'ignore'] });
    child.on('error', reject);
    child.on('close', (code) => resolvePromise(code));
    child.stdin.on('error', () => {}); // tar may stop reading early
    child.stdin.end(bytes);
  });
}

const stderrLines = (stderr: string): string[] => stderr.split('\n').filter((line) => line !== '');

// =============================================================================================

describe('pulling a simple image', () => {
  const layer: FixtureEntry[] = [
    fx.dir('etc'),
    fx.file('etc/hostname', 'box\n'),
    fx.dir('usr', { mode: 0o750 }),
    fx.dir('usr/bin'),
    fx.file('usr/bin/tool', '#!/bin/sh\necho hi\n', { mode: 0o755, uid: 1000, gid: 100, mtime: 1_700_000_000 }),
  ];
  const expected = [
    want.dir('etc'),
    want.file('etc/hostname', 'box\n'),
    want.dir('usr', { mode: '0750' }),
    want.dir('usr/bin'),
    want.file('usr/bin/tool', '#!/bin/sh\necho hi\n', { mode: '0755', uid: 1000, gid: 100, mtime: 1_700_000_000 }),
  ];

  it('writes every entry of a single gzip layer as it is', async () => {
    const ref = await pushLayers('gzip', [layer]);
    expect(byPath(await pullListing(ref))).toEqual(expected);
  });

  it('reads an uncompressed tar layer like a gzip one', async () => {
    const ref = await pushLayers('plain', [{ entries: layer, compression: 'none' }]);
    expect(byPath(await pullListing(ref))).toEqual(expected);
  });

  it('merges an uncompressed layer over a gzip one', async () => {
    const ref = await pushLayers('mixed', [
      layer,
      { entries: [fx.file('etc/hostname', 'other\n'), fx.file('etc/motd', 'hello\n')], compression: 'none' },
    ]);
    expect(byPath(await pullListing(ref))).toEqual(
      byPath([
        ...expected.filter((entry) => entry.path !== 'etc/hostname'),
        want.file('etc/hostname', 'other\n'),
        want.file('etc/motd', 'hello\n'),
      ]),
    );
  });

  it('writes the parents no layer declares as directories 0755 root:root', async () => {
    const ref = await pushLayers('implicit-parents', [[fx.file('a/b/c.txt', 'deep')]]);
    expect(byPath(await pullListing(ref))).toEqual([want.dir('a'), want.dir('a/b'), want.file('a/b/c.txt', 'deep')]);
  });
});

describe('whiteouts and opaque directories', () => {
  it('removes whited-out paths and subtrees, keeps the opaque directory and its same-layer children', async () => {
    const ref = await pushLayers('whiteouts', [
      [
        fx.dir('a'),
        fx.dir('a/keep'),
        fx.file('a/keep/k1', 'k1'),
        fx.file('a/gone', 'old a/gone'),
        fx.dir('d'),
        fx.file('d/old1', 'old1'),
        fx.dir('d/sub'),
        fx.file('d/sub/old2', 'old2'),
        fx.dir('x'),
        fx.dir('x/y'),
        fx.file('x/y/z', 'z'),
      ],
      [
        fx.whiteout('a/gone'),
        fx.whiteout('x/y'),
        fx.dir('d', { mode: 0o700 }),
        fx.file('d/new1', 'new1'), // before the marker
        fx.opaque('d'),
        fx.file('d/new2', 'new2'), // after the marker
        fx.dir('d/sub'),
        fx.file('d/sub/new3', 'new3'),
      ],
      [fx.file('a/gone', 'a/gone again'), fx.whiteout('d/new2')],
    ]);
    expect(byPath(await pullListing(ref))).toEqual([
      want.dir('a'),
      want.file('a/gone', 'a/gone again'),
      want.dir('a/keep'),
      want.file('a/keep/k1', 'k1'),
      want.dir('d', { mode: '0700' }),
      want.file('d/new1', 'new1'),
      want.dir('d/sub'),
      want.file('d/sub/new3', 'new3'),
      want.dir('x'),
    ]);
  });

  // As test/helpers/fs-model.ts decides: a marker in a directory that does not exist creates nothing.
  it('never writes whiteout markers, even for paths that never existed', async () => {
    const ref = await pushLayers('whiteout-nothing', [[fx.dir('etc'), fx.file('etc/a', 'a')], [fx.whiteout('etc/never'), fx.opaque('opt')]]);
    expect(byPath(await pullListing(ref))).toEqual([want.dir('etc'), want.file('etc/a', 'a')]);
  });
});

describe('type changes between layers', () => {
  it('replaces a lower directory with a file, and a lower file with a directory', async () => {
    const ref = await pushLayers('type-change', [
      [fx.dir('p'), fx.file('p/child', 'child'), fx.dir('p/deeper'), fx.file('p/deeper/x', 'x'), fx.file('q', 'q was a file')],
      [fx.file('p', 'p is a file now'), fx.dir('q', { mode: 0o711 }), fx.file('q/inner', 'inner')],
    ]);
    expect(byPath(await pullListing(ref))).toEqual([
      want.file('p', 'p is a file now'),
      want.dir('q', { mode: '0711' }),
      want.file('q/inner', 'inner'),
    ]);
  });

  it('replaces a lower directory that a layer deletes and recreates, without its old children', async () => {
    const ref = await pushLayers('whiteout-recreate', [
      [fx.dir('cache', { mode: 0o755 }), fx.file('cache/old', 'old'), fx.dir('cache/sub'), fx.file('cache/sub/older', 'older')],
      [fx.whiteout('cache'), fx.dir('cache', { mode: 0o700, uid: 33, gid: 33 }), fx.file('cache/new', 'new')],
    ]);
    expect(byPath(await pullListing(ref))).toEqual([
      want.dir('cache', { mode: '0700', uid: 33, gid: 33 }),
      want.file('cache/new', 'new'),
    ]);
  });

  it('replaces a lower directory with a symlink without keeping its children', async () => {
    const ref = await pushLayers('dir-to-symlink', [
      [fx.dir('opt'), fx.dir('opt/app'), fx.file('opt/app/bin', 'bin'), fx.dir('srv')],
      [fx.symlink('opt/app', '/srv')],
    ]);
    expect(byPath(await pullListing(ref))).toEqual([
      want.dir('opt'),
      want.symlink('opt/app', '/srv'),
      want.dir('srv'),
    ]);
  });
});

describe('hardlinks', () => {
  it('writes a link to a target in the same layer right after the target', async () => {
    const ref = await pushLayers('hl-same-layer', [[fx.dir('data'), fx.file('data/f', 'one'), fx.link('data/l', 'data/f')]]);
    const listing = await pullListing(ref);
    expect(byPath(listing)).toEqual([want.dir('data'), want.file('data/f', 'one'), want.hardlink('data/l', 'data/f')]);
    expect(listing.findIndex((e) => e.path === 'data/l')).toBeGreaterThan(listing.findIndex((e) => e.path === 'data/f'));
  });

  it('writes a link to a target in a lower layer after the target', async () => {
    const ref = await pushLayers('hl-lower-layer', [
      [fx.dir('t'), fx.file('t/target', 'target bytes')],
      [fx.link('t/link', 't/target'), fx.file('t/other', 'other')],
    ]);
    const listing = await pullListing(ref);
    expect(byPath(listing)).toEqual([
      want.dir('t'),
      want.hardlink('t/link', 't/target'),
      want.file('t/other', 'other'),
      want.file('t/target', 'target bytes'),
    ]);
    expect(listing.findIndex((e) => e.path === 't/link')).toBeGreaterThan(listing.findIndex((e) => e.path === 't/target'));
  });

  it('keeps the old content of a hardlink whose target a later layer overwrites, and keeps the group together', async () => {
    const ref = await pushLayers('hl-overwritten', [
      [fx.dir('h'), fx.file('h/orig', 'old content'), fx.link('h/l1', 'h/orig'), fx.link('h/l2', 'h/orig')],
      [fx.file('h/orig', 'new content')],
    ]);
    expect(filesOf(await pullListing(ref))).toEqual([
      treeFile('h/l1', 'old content', 'h/l1'),
      treeFile('h/l2', 'old content', 'h/l1'),
      treeFile('h/orig', 'new content'),
    ]);
  });

  it('keeps the old content of a hardlink whose target a later layer deletes', async () => {
    const ref = await pushLayers('hl-deleted', [
      [fx.dir('w'), fx.file('w/target', 'doomed content'), fx.link('w/link', 'w/target')],
      [fx.whiteout('w/target')],
    ]);
    expect(byPath(await pullListing(ref))).toEqual([want.dir('w'), want.file('w/link', 'doomed content')]);
  });

  it('takes the content from a lower layer for a link whose target is overwritten above the link', async () => {
    const ref = await pushLayers('hl-three-layers', [
      [fx.dir('m'), fx.file('m/t', 'base bytes'), fx.file('m/u', 'u base bytes')],
      [fx.link('m/link', 'm/t'), fx.link('m/link2', 'm/t'), fx.link('m/ulink', 'm/u')],
      [fx.file('m/t', 'top bytes'), fx.whiteout('m/u')],
    ]);
    expect(filesOf(await pullListing(ref))).toEqual([
      treeFile('m/link', 'base bytes', 'm/link'),
      treeFile('m/link2', 'base bytes', 'm/link'),
      treeFile('m/t', 'top bytes'),
      treeFile('m/ulink', 'u base bytes'),
    ]);
  });

  it('keeps a chain of links (a link naming another link) together when the first target is overwritten', async () => {
    const ref = await pushLayers('hl-chain', [
      [fx.dir('c'), fx.file('c/orig', 'chain old'), fx.link('c/l1', 'c/orig'), fx.link('c/l2', 'c/l1')],
      [fx.file('c/orig', 'chain new')],
    ]);
    expect(filesOf(await pullListing(ref))).toEqual([
      treeFile('c/l1', 'chain old', 'c/l1'),
      treeFile('c/l2', 'chain old', 'c/l1'),
      treeFile('c/orig', 'chain new'),
    ]);
  });

  it('keeps the old content of a link whose target a later layer hides by replacing its parent directory', async () => {
    const ref = await pushLayers('hl-parent-replaced', [
      [fx.dir('src'), fx.file('src/t', 'under src'), fx.dir('keep'), fx.link('keep/l', 'src/t')],
      [fx.file('src', 'src is a file')],
    ]);
    expect(filesOf(await pullListing(ref))).toEqual([treeFile('keep/l', 'under src'), treeFile('src', 'src is a file')]);
  });

  it('keeps the old content of a link whose target a later layer hides with an opaque directory', async () => {
    const ref = await pushLayers('hl-opaque', [
      [fx.dir('o'), fx.file('o/t', 'under o'), fx.dir('keep'), fx.link('keep/l', 'o/t')],
      [fx.opaque('o'), fx.file('o/new', 'new')],
    ]);
    expect(filesOf(await pullListing(ref))).toEqual([treeFile('keep/l', 'under o'), treeFile('o/new', 'new')]);
  });

  it('keeps a link made in the same layer before that layer deletes its lower target', async () => {
    const ref = await pushLayers('hl-link-then-whiteout', [
      [fx.dir('s'), fx.file('s/t', 'lower t')],
      [fx.link('s/l', 's/t'), fx.whiteout('s/t')],
    ]);
    expect(filesOf(await pullListing(ref))).toEqual([treeFile('s/l', 'lower t')]);
  });

  it('takes the content of an aufs hardlink into .wh..wh.plnk and never writes the aufs metadata', async () => {
    const ref = await pushLayers('hl-aufs', [
      [fx.dir('.wh..wh.plnk'), fx.file('.wh..wh.plnk/1234.5678', 'plnk content'), fx.dir('u'), fx.link('u/f', '.wh..wh.plnk/1234.5678')],
    ]);
    expect(byPath(await pullListing(ref))).toEqual([want.dir('u'), want.file('u/f', 'plnk content')]);
  });

  it('reads the layer again for a hidden target whose bytes did not fit the memory budget', async () => {
    const big = Buffer.alloc(300_000, 'b');
    const ref = await pushLayers('hl-refetch', [
      [fx.dir('r'), fx.file('r/big', big), fx.link('r/link', 'r/big'), fx.file('r/after', 'after')],
      [fx.file('r/big', 'replaced')],
    ]);
    const listing = await pullListing(ref, { hiddenBodyBudget: 0 });
    expect(byPath(listing)).toEqual([
      want.dir('r'),
      want.file('r/after', 'after'),
      want.file('r/big', 'replaced'),
      want.file('r/link', big),
    ]);
  });

  it('fails with ERR_HARDLINK_TARGET for a link to a path that never existed', async () => {
    const ref = await pushLayers('hl-missing', [[fx.dir('z'), fx.file('z/real', 'real')], [fx.link('z/link', 'z/nothing')]]);
    const error = await pullError(ref);
    expect(error.code).toBe('ERR_HARDLINK_TARGET');
    expect(error.exitCode).toBe(8);
    expect(error.message).toContain('z/link');
    expect(error.message).toContain('z/nothing');
  });

  it('fails with ERR_HARDLINK_TARGET for a link to a path a lower layer already deleted', async () => {
    const ref = await pushLayers('hl-deleted-below', [
      [fx.dir('k'), fx.file('k/t', 't')],
      [fx.whiteout('k/t')],
      [fx.link('k/link', 'k/t')],
    ]);
    const error = await pullError(ref);
    expect(error.code).toBe('ERR_HARDLINK_TARGET');
  });
});

describe('parents that are symlinks', () => {
  it('puts bin/x of a higher layer at usr/bin/x when a lower layer made bin a symlink to usr/bin', async () => {
    const ref = await pushLayers('usrmerge', [
      [
        fx.dir('usr'),
        fx.dir('usr/bin'),
        fx.file('usr/bin/sh', 'sh'),
        fx.dir('usr/lib'),
        fx.file('usr/lib/libfoo.so', 'foo'),
        fx.file('usr/lib/libbar.so', 'bar'),
        fx.dir('usr/sbin'),
        fx.symlink('bin', 'usr/bin'),
        fx.symlink('lib64', 'usr/lib'),
        fx.symlink('sbin', '/usr/sbin'),
        fx.symlink('up', '../../..'),
      ],
      [fx.file('bin/x', 'x'), fx.whiteout('lib64/libfoo.so'), fx.file('sbin/y', 'y'), fx.file('up/usr/z', 'z')],
    ]);
    expect(byPath(await pullListing(ref))).toEqual([
      want.symlink('bin', 'usr/bin'),
      want.symlink('lib64', 'usr/lib'),
      want.symlink('sbin', '/usr/sbin'),
      want.symlink('up', '../../..'),
      want.dir('usr'),
      want.dir('usr/bin'),
      want.file('usr/bin/sh', 'sh'),
      want.file('usr/bin/x', 'x'),
      want.dir('usr/lib'),
      want.file('usr/lib/libbar.so', 'bar'),
      want.dir('usr/sbin'),
      want.file('usr/sbin/y', 'y'),
      want.file('usr/z', 'z'),
    ]);
  });

  it('resolves a parent through a symlink made earlier in the same layer', async () => {
    const ref = await pushLayers('usrmerge-same-layer', [
      [fx.dir('usr'), fx.dir('usr/bin'), fx.symlink('bin', 'usr/bin'), fx.file('bin/sh', 'sh')],
    ]);
    expect(byPath(await pullListing(ref))).toEqual([
      want.symlink('bin', 'usr/bin'),
      want.dir('usr'),
      want.dir('usr/bin'),
      want.file('usr/bin/sh', 'sh'),
    ]);
  });

  it('resolves a hardlink target through a symlinked parent', async () => {
    const ref = await pushLayers('usrmerge-hardlink', [
      [fx.dir('usr'), fx.dir('usr/lib'), fx.file('usr/lib/libc.so', 'libc'), fx.symlink('lib', 'usr/lib')],
      [fx.dir('opt'), fx.link('opt/libc-copy', 'lib/libc.so')],
    ]);
    expect(filesOf(await pullListing(ref))).toEqual([
      treeFile('opt/libc-copy', 'libc', 'opt/libc-copy'),
      treeFile('usr/lib/libc.so', 'libc', 'opt/libc-copy'),
    ]);
  });
});

describe('metadata and names', () => {
  const capability = Buffer.from('0100000200200000000000000000000000000000', 'hex'); // cap_net_bind_service, has 0x00 bytes
  const long100 = `long/${'a'.repeat(60)}/${'b'.repeat(60)}.txt`; // > 100 bytes
  const long255 = `long/${'c'.repeat(120)}/${'d'.repeat(120)}/${'e'.repeat(40)}.txt`; // > 255 bytes
  const longTarget = `/${'t'.repeat(150)}`;
  const nonUtf8 = Buffer.concat([Buffer.from('names/bad-'), Buffer.from([0xff, 0xfe]), Buffer.from('.bin')]);

  it('keeps special modes, large ids, long and non-UTF-8 names, binary xattrs, symlinks, devices and fifos', async () => {
    const ref = await pushLayers('metadata', [
      [
        fx.dir('usr'),
        fx.dir('usr/bin'),
        fx.file('usr/bin/su', 'su', { mode: 0o4755 }),
        fx.file('usr/bin/wall', 'wall', { mode: 0o2755, gid: 5 }),
        fx.dir('shared', { mode: 0o2775, gid: 50 }),
        fx.dir('tmp', { mode: 0o1777 }),
        fx.file('usr/bin/ping', 'ping', { mode: 0o755, pax: { 'SCHILY.xattr.security.capability': capability } }),
        fx.dir('ids'),
        fx.file('ids/262144', 'a', { uid: 262_144, gid: 262_144 }),
        fx.file('ids/2097152', 'b', { uid: 2_097_152, gid: 2_097_152 }),
        fx.file('ids/4294967294', 'c', { uid: 4_294_967_294, gid: 4_294_967_294 }),
        fx.dir('long'),
        fx.file(long100, 'long100'),
        fx.file(long255, 'long255'),
        fx.symlink('long/target', longTarget),
        fx.dir('names'),
        fx.file('names/héllo wörld 日本語.txt', 'unicode'),
        fx.file(nonUtf8, 'not utf-8'),
        fx.dir('links'),
        fx.symlink('links/absolute', '/usr/bin/su'),
        fx.symlink('links/relative', '../usr/bin/su'),
        fx.symlink('links/dangling', 'nowhere/at/all'),
        fx.dir('dev'),
        { name: 'dev/null', type: 'char', mode: 0o666, devmajor: 1, devminor: 3 },
        { name: 'dev/initctl', type: 'fifo', mode: 0o600 },
      ],
      // A second layer, so everything above goes through the skip/merge path too.
      [fx.file('etc-marker', 'top')],
    ]);
    const listing = await pullListing(ref);
    const nonUtf8Shown = 'names/bad-\\xff\\xfe.bin';
    expect(byPath(listing)).toEqual(
      byPath([
        want.dir('usr'),
        want.dir('usr/bin'),
        want.file('usr/bin/su', 'su', { mode: '4755' }),
        want.file('usr/bin/wall', 'wall', { mode: '2755', gid: 5 }),
        want.dir('shared', { mode: '2775', gid: 50 }),
        want.dir('tmp', { mode: '1777' }),
        want.file('usr/bin/ping', 'ping', { mode: '0755', xattrs: { 'security.capability': capability.toString('hex') } }),
        want.dir('ids'),
        want.file('ids/262144', 'a', { uid: 262_144, gid: 262_144 }),
        want.file('ids/2097152', 'b', { uid: 2_097_152, gid: 2_097_152 }),
        want.file('ids/4294967294', 'c', { uid: 4_294_967_294, gid: 4_294_967_294 }),
        want.dir('long'),
        want.dir(long100.slice(0, long100.lastIndexOf('/'))),
        want.file(long100, 'long100'),
        want.dir(long255.slice(0, long255.indexOf('/', 5))),
        want.dir(long255.slice(0, long255.lastIndexOf('/'))),
        want.file(long255, 'long255'),
        want.symlink('long/target', longTarget),
        want.dir('names'),
        want.file('names/héllo wörld 日本語.txt', 'unicode'),
        want.file(nonUtf8Shown, 'not utf-8'),
        want.dir('links'),
        want.symlink('links/absolute', '/usr/bin/su'),
        want.symlink('links/relative', '../usr/bin/su'),
        want.symlink('links/dangling', 'nowhere/at/all'),
        want.dir('dev'),
        want.char('dev/null', 1, 3),
        want.fifo('dev/initctl', { mode: '0600' }),
        want.file('etc-marker', 'top'),
      ]),
    );
  });
});

describe('platforms', () => {
  async function pushTwoPlatforms(): Promise<string> {
    const repo = uniqueRepo('multiarch');
    const entries = [];
    for (const architecture of ['amd64', 'arm64']) {
      const image = await pushImage(registry, repo, architecture, {
        layers: [{ tar: buildTar([fx.file(`arch-${architecture}`, architecture)]), compression: 'gzip' }],
        platform: { os: 'linux', architecture },
      });
      entries.push({
        digest: image.manifestDigest,
        size: image.manifestSize,
        mediaType: image.manifestMediaType,
        platform: { os: 'linux', architecture },
      });
    }
    await pushIndex(registry, repo, 'multi', entries);
    return `${registry}/${repo}:multi`;
  }

  it('picks each platform of an index with the platform option', async () => {
    const ref = await pushTwoPlatforms();
    expect(await pullListing(ref, { platform: 'linux/amd64' })).toEqual([want.file('arch-amd64', 'amd64')]);
    expect(await pullListing(ref, { platform: 'linux/arm64' })).toEqual([want.file('arch-arm64', 'arm64')]);
  });

  it('picks each platform of an index with --platform on the command line', async () => {
    const ref = await pushTwoPlatforms();
    for (const architecture of ['amd64', 'arm64']) {
      const result = await runCli(['pull', ref, '--platform', `linux/${architecture}`, '-o', '-']);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect((await listTar(result.stdout)).filter((entry) => entry.path !== '.')).toEqual([want.file(`arch-${architecture}`, architecture)]);
    }
  });

  it('fails with ERR_PLATFORM_NOT_FOUND naming the available platforms for a platform the index lacks', async () => {
    const ref = await pushTwoPlatforms();
    const error = await pullError(ref, { platform: 'linux/s390x' });
    expect(error.code).toBe('ERR_PLATFORM_NOT_FOUND');
    expect(error.message).toContain('linux/amd64');
    expect(error.message).toContain('linux/arm64');

    const result = await runCli(['pull', ref, '--platform', 'linux/s390x', '-o', '-']);
    expect(result.code).toBe(3);
    expect(result.stdout.length).toBe(0);
    expect(stderrLines(result.stderr)).toEqual([expect.stringMatching(/^oci-rootfs: .*linux\/amd64.*linux\/arm64/)]);
  });
});

/**
 * A plain-HTTP proxy in front of the registry that flips the byte at `offset` of every response
 * body for blob `digest` (a registry verifies uploads, so a corrupt download needs this).
 */
async function tamperingProxy(digest: string, offset: number): Promise<{ host: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const upstream = httpRequest(
      { host: registry.split(':')[0], port: Number(registry.split(':')[1]), method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        if (!(req.url ?? '').endsWith(`/blobs/${digest}`)) {
          answer.pipe(res);
          return;
        }
        let seen = 0;
        answer.on('data', (chunk: Buffer) => {
          if (offset >= seen && offset < seen + chunk.length) {
            chunk = Buffer.from(chunk);
            chunk[offset - seen] = chunk[offset - seen]! ^ 0xff;
          }
          seen += chunk.length;
          res.write(chunk);
        });
        answer.on('end', () => res.end());
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolvePromise) => server.listen(0, '127.0.0.1', resolvePromise));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolvePromise) => {
        server.closeAllConnections();
        server.close(() => resolvePromise());
      }),
  };
}

describe('integrity', () => {
  /** Two layers; the base's diff_id in the config is wrong, so it fails after the top layer was written. */
  async function pushWrongDiffId(): Promise<string> {
    const repo = uniqueRepo('bad-diffid');
    const baseTar = buildTar([fx.dir('base'), fx.file('base/file', Buffer.alloc(200_000, 'x'))]);
    const topTar = buildTar([fx.dir('top'), fx.file('top/file', Buffer.alloc(200_000, 'y'))]);
    await pushImage(registry, repo, 'v1', {
      layers: [
        { tar: baseTar, compression: 'gzip' },
        { tar: topTar, compression: 'gzip' },
      ],
      config: { rootfs: { type: 'layers', diff_ids: [sha256(Buffer.from('not the base layer')), sha256(topTar)] } },
    });
    return `${registry}/${repo}:v1`;
  }

  /** One layer of `blob` (the stored bytes, for the uncompressed `tar`) whose descriptor states a size `delta` bytes off. */
  async function pushRawLayer(what: string, blob: Buffer, tar: Buffer, delta = 0): Promise<string> {
    const repo = uniqueRepo(what);
    const digest = await pushBlob(registry, repo, blob);
    const config = Buffer.from(
      JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256(tar)] } }),
    );
    const configDigest = await pushBlob(registry, repo, config);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest, size: blob.length + delta }],
      }),
    );
    await pushManifest(registry, repo, 'v1', 'application/vnd.oci.image.manifest.v1+json', manifest);
    return `${registry}/${repo}:v1`;
  }

  const sizeTar = buildTar([fx.file('f', Buffer.alloc(50_000, 'z'))]);
  const pushWrongSize = (delta: number): Promise<string> => pushRawLayer('bad-size', gzipSync(sizeTar), sizeTar, delta);

  it('fails with ERR_DIGEST_MISMATCH when a layer does not hash to its diff_id', async () => {
    const error = await pullError(await pushWrongDiffId());
    expect(error.code).toBe('ERR_DIGEST_MISMATCH');
    expect(error.exitCode).toBe(7);
  });

  it.each([
    ['larger', 1],
    ['smaller', -1],
  ])('fails with an integrity error when a layer descriptor states a %s size than the blob', async (_what, delta) => {
    const error = await pullError(await pushWrongSize(delta));
    expect(['ERR_SIZE_MISMATCH', 'ERR_DIGEST_MISMATCH']).toContain(error.code);
    expect(error.exitCode).toBe(7);
  });

  it('tolerates zero padding after the last gzip member', async () => {
    const tar = buildTar([fx.file('padded', 'padded')]);
    const ref = await pushRawLayer('gzip-zero-padding', Buffer.concat([gzipSync(tar), Buffer.alloc(1000)]), tar);
    expect(await pullListing(ref)).toEqual([want.file('padded', 'padded')]);
  });

  it('fails as malformed content for data after the last gzip member', async () => {
    const tar = buildTar([fx.file('trailing', 'trailing')]);
    const ref = await pushRawLayer('gzip-trailing-data', Buffer.concat([gzipSync(tar), Buffer.from('garbage')]), tar);
    const error = await pullError(ref);
    // The blob's digest matched: the registry served what was published, so this is malformed
    // content (exit 8), the same as what zlib reports for a broken member header right there.
    expect(error.code).toBe('ERR_MALFORMED_ARCHIVE');
    expect(error.exitCode).toBe(8);
    expect(error.message).toMatch(/gzip/);
  });

  it('fails with ERR_DIGEST_MISMATCH when the registry serves a blob with a flipped byte', async () => {
    const tar = buildTar([fx.dir('tampered'), fx.file('tampered/file', Buffer.alloc(100_000, 'q'))]);
    const repo = uniqueRepo('tampered');
    const image = await pushImage(registry, repo, 'v1', { layers: [{ tar, compression: 'none' }] });
    const proxy = await tamperingProxy(image.layers[0]!.digest, 60_000);
    try {
      const error = await pullError(`${proxy.host}/${repo}:v1`);
      expect(error.code).toBe('ERR_DIGEST_MISMATCH');
      expect(error.exitCode).toBe(7);
      const result = await runCli(['pull', `${proxy.host}/${repo}:v1`, '-o', '-']);
      expect(result.code).toBe(7);
      expect(await gnuTarList(result.stdout)).not.toBe(0);
    } finally {
      await proxy.close();
    }
  });

  it('exits 7 and leaves no file (nor temp file) behind when writing a corrupt image to a file', async () => {
    const ref = await pushWrongDiffId();
    for (const name of ['out.tar', 'out.tar.gz']) {
      const dir = await outDir();
      const result = await runCli(['pull', ref, '-o', join(dir, name)]);
      expect(result.code).toBe(7);
      expect(stderrLines(result.stderr)).toEqual([expect.stringMatching(/^oci-rootfs: .*digest/)]);
      expect(await readdir(dir)).toEqual([]);
    }
  });

  it('exits 7 for a wrong layer size and leaves no file behind', async () => {
    const ref = await pushWrongSize(1);
    const dir = await outDir();
    const result = await runCli(['pull', ref, '-o', join(dir, 'out.tar')]);
    expect(result.code).toBe(7);
    expect(await readdir(dir)).toEqual([]);
  });

  it('ends stdout without the end-of-archive marker and exits non-zero when a layer is corrupt', async () => {
    const result = await spawnCli(['pull', await pushWrongDiffId(), '-o', '-']);
    expect(result.code).toBe(7);
    expect(result.stdout.length % 512 === 0 && result.stdout.subarray(-1024).equals(Buffer.alloc(1024))).toBe(false);
    expect(await gnuTarList(result.stdout)).not.toBe(0);
  });
});

describe('names that climb above the root', () => {
  it('pins ../x at the root with a NAME_PINNED_AT_ROOT warning, as container runtimes do', async () => {
    const ref = await pushLayers('escape', [[fx.dir('ok'), fx.file('ok/file', 'fine')], [fx.file('../x', 'pinned')]]);
    const events: PullEvent[] = [];
    const listing = await pullListing(ref, { onEvent: (event) => events.push(event) });
    expect(listing.find((entry) => entry.path === 'x')).toMatchObject({ type: 'file', sha256: sha256Hex(Buffer.from('pinned')) });
    const warnings = events.filter((event) => event.type === 'warning');
    expect(warnings).toEqual([expect.objectContaining({ code: 'NAME_PINNED_AT_ROOT', message: expect.stringMatching(/^layer 1 .*"\.\.\/x" is written as "x"/) })]);
  });

  it('pins a/../../etc/passwd at etc/passwd inside the root', async () => {
    const ref = await pushLayers('escape-nested', [[fx.dir('a'), fx.file('a/../../etc/passwd', 'root::0:0')]]);
    const listing = await pullListing(ref);
    expect(listing.map((entry) => entry.path).sort()).toEqual(['a', 'etc', 'etc/passwd']);
  });
});

describe('not found', () => {
  it('exits 3 with one line on stderr for an unknown repository', async () => {
    const dir = await outDir();
    const result = await spawnCli(['pull', `${registry}/${uniqueRepo('never-pushed')}:v1`, '-o', join(dir, 'x.tar')]);
    expect(result.code).toBe(3);
    expect(stderrLines(result.stderr)).toEqual([expect.stringMatching(/^oci-rootfs: /)]);
    expect(await readdir(dir)).toEqual([]);
  });

  it('exits 3 with one line on stderr for an unknown tag of a known repository', async () => {
    const ref = await pushLayers('known', [[fx.file('f', 'f')]]);
    const result = await runCli(['pull', ref.replace(/:v1$/, ':no-such-tag'), '-o', '-']);
    expect(result.code).toBe(3);
    expect(result.stdout.length).toBe(0);
    expect(stderrLines(result.stderr)).toEqual([expect.stringMatching(/^oci-rootfs: /)]);
  });

  it('fails with ERR_NOT_FOUND through the API for an unknown tag', async () => {
    const ref = await pushLayers('known-api', [[fx.file('f', 'f')]]);
    const error = await pullError(ref.replace(/:v1$/, ':no-such-tag'));
    expect(error.code).toBe('ERR_NOT_FOUND');
    expect(error.exitCode).toBe(3);
  });
});

describe('events', () => {
  it('counts layer-done bytes per layer: stored bytes received for it, tar bytes written while it was read', async () => {
    const ref = await pushLayers('per-layer-bytes', [
      [fx.file('base', 'b'.repeat(40_000))],
      [fx.file('middle', 'm'.repeat(3_000))],
      [fx.file('top', 't'.repeat(10_000))],
    ]);
    const events: PullEvent[] = [];
    let finished = (): void => undefined;
    const doneSeen = new Promise<void>((resolve) => (finished = resolve));
    const tar = await pullBytes(ref, {
      onEvent: (event) => {
        events.push(event);
        if (event.type === 'done') finished();
      },
    });
    // The stream ends with its last byte; the `done` event follows it.
    await doneSeen;
    const resolved = events.find((event) => event.type === 'resolved');
    const done = events.filter((event): event is LayerDoneEvent => event.type === 'layer-done');
    const end = events[events.length - 1];
    if (resolved?.type !== 'resolved' || end?.type !== 'done') throw new Error('no resolved or done event');
    // Top first; each layer read once, so what came in for it is its blob, no more, no less.
    expect(done.map((event) => event.index)).toEqual([2, 1, 0]);
    for (const event of done) expect(event.bytesIn).toBe(resolved.layers[event.index]?.size);
    expect(done.reduce((sum, event) => sum + event.bytesIn, 0)).toBe(end.bytesIn);
    // Each layer's file header and body went out while that layer was read.
    const out = new Map(done.map((event) => [event.index, event.bytesOut]));
    expect(out.get(0)).toBeGreaterThanOrEqual(40_000);
    expect(out.get(0)).toBeLessThan(40_000 + 4096);
    expect(out.get(1)).toBeGreaterThanOrEqual(3_000);
    expect(out.get(1)).toBeLessThan(3_000 + 4096);
    expect(out.get(2)).toBeGreaterThanOrEqual(10_000);
    expect(out.get(2)).toBeLessThan(10_000 + 4096);
    expect(done.reduce((sum, event) => sum + event.bytesOut, 0)).toBeLessThanOrEqual(tar.length);
    expect(end.bytesOut).toBe(tar.length);
  });
});

describe('determinism', () => {
  const layers = [
    [fx.dir('etc'), fx.file('etc/a', 'a'), fx.file('etc/b', 'b'), fx.link('etc/c', 'etc/a'), fx.file('implicit/parent/f', 'f')],
    [fx.file('etc/a', 'a2'), fx.whiteout('etc/b'), fx.symlink('etc/d', 'a')],
  ];

  it('gives identical bytes when the same image is pulled twice through the API', async () => {
    const ref = await pushLayers('deterministic', layers);
    const first = await pullBytes(ref);
    const second = await pullBytes(ref);
    expect(first.length).toBeGreaterThan(1024);
    expect(second.equals(first)).toBe(true);
  });

  it('writes identical gzip files when the same image is pulled twice through the CLI', async () => {
    const ref = await pushLayers('deterministic-cli', layers);
    const dir = await outDir();
    const a = await runCli(['pull', ref, '-o', join(dir, 'a.tar.gz')]);
    const b = await runCli(['pull', ref, '-o', join(dir, 'b.tar.gz')]);
    expect([a.code, b.code, a.stderr, b.stderr]).toEqual([0, 0, '', '']);
    const [bytesA, bytesB] = await Promise.all([readFile(join(dir, 'a.tar.gz')), readFile(join(dir, 'b.tar.gz'))]);
    expect(bytesB.equals(bytesA)).toBe(true);
    // And the file is the same tar the API gives.
    expect(gunzipSync(bytesA).equals(await pullBytes(ref))).toBe(true);
    expect((await readdir(dir)).sort()).toEqual(['a.tar.gz', 'b.tar.gz']);
  });
});
