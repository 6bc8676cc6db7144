/**
 * `unpack` against the filesystem model (DESIGN.md §7): random layer stacks are applied base
 * first to the in-memory model, and flattened top-down into the disk writer (in process, a
 * temp dir per run); the tree on disk must be the model's snapshot: paths, types, modes,
 * owners, mtimes (directories included), contents, symlink targets, hardlink groups, xattrs.
 * Paths come from a small alphabet so they collide (duplicates, replacements, whiteouts that
 * hit, symlinked parents such as `bin -> usr/bin`, symlinks to `/` and `..`).
 *
 * Layers are generated valid: each candidate entry is tried on the model and dropped when the
 * model refuses it. `FC_NUM_RUNS` sets the number of runs (default 25: each run is real file
 * system work), `FC_SEED` replays a failure. Runs as root (owners).
 */
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { flattenLayers, type FlattenLayer } from '../../src/flatten/flatten.js';
import { createDiskSink } from '../../src/unpack/disk-sink.js';
import { parseGetfattr } from '../helpers/listing.js';
import {
  applyEntryInLayer,
  applyLayer,
  beginLayer,
  cloneFs,
  createFs,
  ModelError,
  show,
  snapshot,
  type FsModel,
  type LayerRecord,
  type SnapshotEntry,
} from '../helpers/fs-model.js';
import { buildTar, type FixtureEntry } from '../helpers/tar-fixture.js';

const execFileAsync = promisify(execFile);
const NUM_RUNS = Number(process.env['FC_NUM_RUNS'] ?? 25);
const SEED = process.env['FC_SEED'] === undefined ? undefined : Number(process.env['FC_SEED']);
const isRoot = process.getuid?.() === 0;
if (!isRoot && process.env['CI'] !== undefined) throw new Error('unpack-property.test.ts must run as root (owners)');
if (!isRoot) console.warn('unpack-property.test.ts skipped: not root');

/** A valid file capability (the kernel refuses malformed ones): cap_net_raw, effective. */
const CAPABILITY = Buffer.from('0100000200200000000000000000000000000000', 'hex');
const NAMES = ['a', 'b', 'bin', 'usr', 'd'] as const;
const pathArb = fc.array(fc.constantFrom(...NAMES), { minLength: 1, maxLength: 3 });
const metaArb = fc.record({
  mode: fc.constantFrom(0o755, 0o644, 0o700, 0o4755, 0o2755, 0o1777, 0o555, 0o444),
  uid: fc.constantFrom(0, 0, 1000, 4_294_967_294),
  gid: fc.constantFrom(0, 0, 1000, 3_000_000_000),
  mtime: fc.constantFrom(0, 1, 1_700_000_000),
  xattr: fc.option(fc.constantFrom('user.k', 'security.capability'), { freq: 5 }),
});
type MetaChoice = typeof metaArb extends fc.Arbitrary<infer T> ? T : never;
const targetArb = fc.oneof(
  pathArb.map((p) => p.join('/')),
  fc.constantFrom('/', '../..', '/usr', 'usr', '../../etc', 'nowhere'),
);
const opArb = fc.oneof(
  { arbitrary: fc.record({ k: fc.constant('file' as const), path: pathArb, meta: metaArb, content: fc.constantFrom('', 'x', 'hello\n', 'z'.repeat(700)) }), weight: 6 },
  { arbitrary: fc.record({ k: fc.constant('dir' as const), path: pathArb, meta: metaArb }), weight: 5 },
  { arbitrary: fc.record({ k: fc.constant('symlink' as const), path: pathArb, target: targetArb }), weight: 3 },
  { arbitrary: fc.record({ k: fc.constant('link' as const), path: pathArb, target: pathArb }), weight: 3 },
  { arbitrary: fc.record({ k: fc.constant('whiteout' as const), path: pathArb }), weight: 2 },
  { arbitrary: fc.record({ k: fc.constant('opaque' as const), path: pathArb }), weight: 1 },
  { arbitrary: fc.record({ k: fc.constant('fifo' as const), path: pathArb, meta: metaArb }), weight: 1 },
);
type Op = typeof opArb extends fc.Arbitrary<infer T> ? T : never;

function meta(choice: MetaChoice): Partial<FixtureEntry> {
  return {
    mode: choice.mode,
    uid: choice.uid,
    gid: choice.gid,
    mtime: choice.mtime,
    ...(choice.xattr === null ? {} : { pax: { [`SCHILY.xattr.${choice.xattr}`]: choice.xattr === 'user.k' ? Buffer.from([0, 0xff, choice.mode & 0xff]) : CAPABILITY } }),
  };
}

function entryOf(op: Op): FixtureEntry {
  const name = op.path.join('/');
  switch (op.k) {
    case 'file':
      return { name, type: 'file', content: op.content, ...meta(op.meta) };
    case 'dir':
      return { name, type: 'dir', ...meta(op.meta) };
    case 'symlink':
      return { name, type: 'symlink', linkname: op.target, mode: 0o777, mtime: 5 };
    case 'link':
      return { name, type: 'link', linkname: op.target.join('/') };
    case 'fifo':
      // Linux keeps no user.* xattrs on fifos (a warning, tested elsewhere).
      return { name, type: 'fifo', ...meta({ ...op.meta, xattr: null }) };
    case 'whiteout':
      return { name: [...op.path.slice(0, -1), `.wh.${op.path[op.path.length - 1]!}`].join('/'), type: 'file', content: '' };
    case 'opaque':
      return { name: `${name}/.wh..wh..opq`, type: 'file', content: '' };
  }
}

/** The raw choices as valid layers: what the model refuses is dropped. */
function buildStack(raw: Op[][]): FixtureEntry[][] {
  let fs: FsModel = createFs();
  return raw.map((ops) => {
    let record: LayerRecord = beginLayer(fs);
    const entries: FixtureEntry[] = [];
    for (const op of ops) {
      const entry = entryOf(op);
      const savedFs = cloneFs(fs);
      const savedRecord: LayerRecord = { landed: [...record.landed], implicit: [...record.implicit] };
      try {
        applyEntryInLayer(fs, entry, record);
        entries.push(entry);
      } catch (error) {
        if (!(error instanceof ModelError)) throw error;
        fs = savedFs;
        record = savedRecord;
      }
    }
    return entries;
  });
}

const stackArb = fc
  .array(fc.array(opArb, { maxLength: 10 }), { minLength: 1, maxLength: 4 })
  .map(buildStack)
  .map((layers) => Object.assign(layers, { [fc.toStringMethod]: () => describeStack(layers) }));

function describeStack(layers: FixtureEntry[][]): string {
  return layers
    .map((layer, i) => `layer ${i}:\n${layer.map((e) => `  ${e.type} ${String(e.name)}${e.linkname === undefined ? '' : ` -> ${String(e.linkname)}`} ${(e.mode ?? 0).toString(8)} ${e.uid ?? 0}:${e.gid ?? 0}`).join('\n')}`)
    .join('\n');
}

/** The tree under `root` in the model's snapshot form (root as `.`). */
async function diskSnapshot(root: string): Promise<SnapshotEntry[]> {
  const { stdout } = await execFileAsync('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '.'], { cwd: root, encoding: 'buffer' });
  const xattrs = parseGetfattr(stdout as unknown as Buffer);
  const nodes: Array<{ path: string; entry: SnapshotEntry; ino: bigint }> = [];
  const walk = async (dir: Buffer, rel: string): Promise<void> => {
    const stats = await lstat(dir, { bigint: true });
    const type = stats.isDirectory() ? 'dir' : stats.isFile() ? 'file' : stats.isSymbolicLink() ? 'symlink' : stats.isFIFO() ? 'fifo' : stats.isCharacterDevice() ? 'char' : 'block';
    const entry: SnapshotEntry = {
      path: show(rel),
      type,
      // Linux keeps no mode for symlinks; the model keeps what the entry said (0777 here).
      mode: (Number(stats.mode) & 0o7777).toString(8).padStart(4, '0'),
      uid: Number(stats.uid),
      gid: Number(stats.gid),
      mtime: Number(stats.mtimeMs / 1000n),
      xattrs: xattrs.get(rel === '.' ? '.' : rel) ?? {},
    };
    if (type === 'file') {
      const content = await readFile(dir);
      entry.size = content.length;
      entry.sha256 = createHash('sha256').update(content).digest('hex');
    }
    if (type === 'symlink') entry.target = show((await readlink(dir, { encoding: 'buffer' })) as Buffer);
    nodes.push({ path: rel, entry, ino: type === 'dir' ? -1n : stats.ino });
    if (type === 'dir') {
      for (const name of (await readdir(dir, { encoding: 'buffer' })) as Buffer[]) {
        await walk(Buffer.concat([dir, Buffer.from('/'), name]), rel === '.' ? name.toString('latin1') : `${rel}/${name.toString('latin1')}`);
      }
    }
  };
  await walk(Buffer.from(root), '.');
  const groups = new Map<bigint, string[]>();
  for (const node of nodes) if (node.ino !== -1n) groups.set(node.ino, [...(groups.get(node.ino) ?? []), node.path]);
  const byBytes = (a: string, b: string): number => Buffer.compare(Buffer.from(a, 'latin1'), Buffer.from(b, 'latin1'));
  return nodes
    .sort((a, b) => byBytes(a.path, b.path))
    .map(({ entry, ino }) => (ino === -1n ? entry : { ...entry, hardlinks: groups.get(ino)!.sort(byBytes).map(show) }));
}

async function unpackStack(layers: FixtureEntry[][], root: string): Promise<void> {
  const input: FlattenLayer[] = layers.map((entries, index) => {
    const tar = buildTar(entries);
    return { index, name: `layer${index}`, open: () => Readable.from([tar]) };
  });
  const sink = createDiskSink(root, { rootless: false });
  await pipeline(Readable.from(flattenLayers(input)), sink.stream);
}

const run = isRoot && existsSync('/usr/bin/getfattr') ? describe : describe.skip;

run('unpack against the filesystem model', () => {
  it('makes the tree of applying every layer base first, for random layer stacks', async () => {
    const work = await mkdtemp(join(tmpdir(), 'oci-rootfs-unpack-property-'));
    try {
      let n = 0;
      await fc.assert(
        fc.asyncProperty(stackArb, async (layers) => {
          const model = createFs();
          for (const layer of layers) applyLayer(model, layer);
          const root = join(work, `run-${n++}`);
          await mkdir(root, { mode: 0o700 });
          await unpackStack(layers, root);
          const expected = snapshot(model).map((e) => (e.type === 'symlink' ? { ...e, mode: '0777' } : e));
          expect(await diskSnapshot(root)).toEqual(expected);
        }),
        { numRuns: NUM_RUNS, ...(SEED === undefined ? {} : { seed: SEED }) },
      );
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }, 300_000);
});
