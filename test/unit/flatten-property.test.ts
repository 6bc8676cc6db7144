/**
 * The flattener against the model (DESIGN.md §7): random, realistic layer stacks are applied
 * base first to the in-memory filesystem model, and streamed top-down through
 * `flattenLayers()`; the output, applied as one layer onto an empty model, must give the same
 * snapshot. Paths come from a small alphabet so they collide (duplicates, replacements,
 * whiteouts that hit, symlinked parents such as `bin -> usr/bin`).
 *
 * Layers are generated valid: each candidate entry is tried on the model and dropped when the
 * model refuses it (a hardlink to nothing, a file used as a parent…), so nothing is discarded
 * and shrinking stays effective.
 *
 * `FC_NUM_RUNS` sets the number of runs (default 300), `FC_SEED` replays a failure.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { flattenLayers, FlattenRestart, type FlattenLayer, type FlattenLessons, type FlattenOptions } from '../../src/flatten/flatten.js';
import { readTar } from '../../src/streams/tar/reader.js';
import type { TarHeader } from '../../src/streams/tar/types.js';
import {
  applyEntryInLayer,
  applyLayer,
  beginLayer,
  cloneFs,
  createFs,
  fixtureFromTar,
  type FsModel,
  type LayerRecord,
  lookup,
  ModelError,
  normalisePath,
  show,
  snapshot,
} from '../helpers/fs-model.js';
import { buildTar, type FixtureEntry } from '../helpers/tar-fixture.js';

const NUM_RUNS = Number(process.env['FC_NUM_RUNS'] ?? 300);
const SEED = process.env['FC_SEED'] === undefined ? undefined : Number(process.env['FC_SEED']);

// ---------------------------------------------------------------------------------------
// Raw choices: what fast-check generates and shrinks

const NAMES = ['a', 'b', 'c', 'bin', 'usr', 'lib', 'd', 'e'] as const;

const pathArb = fc.oneof(
  { arbitrary: fc.array(fc.constantFrom(...NAMES), { minLength: 1, maxLength: 1 }), weight: 3 },
  { arbitrary: fc.array(fc.constantFrom(...NAMES), { minLength: 2, maxLength: 2 }), weight: 3 },
  { arbitrary: fc.array(fc.constantFrom(...NAMES), { minLength: 3, maxLength: 3 }), weight: 1 },
);

/** How an entry's name is spelt: all spellings mean the same path. */
const spellingArb = fc.oneof(
  { arbitrary: fc.constant('plain' as const), weight: 8 },
  { arbitrary: fc.constantFrom('dot' as const, 'slash' as const, 'double' as const, 'climb' as const), weight: 1 },
);
type Spelling = 'plain' | 'dot' | 'slash' | 'double' | 'climb';

const metaArb = fc.record({
  mode: fc.constantFrom(0o755, 0o644, 0o700, 0o600, 0o4755, 0o2755, 0o1777, 0o444),
  uid: fc.constantFrom(0, 0, 1000, 65534, 0o7777777 + 1, 4_294_967_294),
  gid: fc.constantFrom(0, 0, 1000, 3_000_000_000),
  mtime: fc.constantFrom(0, 1, 1_700_000_000),
  xattr: fc.oneof(
    { arbitrary: fc.constant(null), weight: 8 },
    { arbitrary: fc.constant(['security.capability', Buffer.from('0100000200200000000000000000000000000000', 'hex')] as const), weight: 1 },
    { arbitrary: fc.uint8Array({ minLength: 1, maxLength: 8 }).map((v) => ['user.k', Buffer.from(v)] as const), weight: 1 },
  ),
});

const contentArb = fc.oneof(
  { arbitrary: fc.constantFrom('', 'a', 'b', 'hello\n'), weight: 6 },
  { arbitrary: fc.nat({ max: 1300 }).map((n) => 'z'.repeat(n)), weight: 1 },
);

/** A symlink target: relative, absolute, climbing, dangling — all legal data in a rootfs. */
const targetArb = fc.oneof(
  fc.tuple(fc.constantFrom('', '/', '../', './'), pathArb).map(([prefix, p]) => prefix + p.join('/')),
  fc.constantFrom('usr/bin', '/usr/lib', 'nowhere/x', '.', '/'),
);

const opArb = fc.oneof(
  { arbitrary: fc.record({ k: fc.constant('file' as const), path: pathArb, spelling: spellingArb, meta: metaArb, content: contentArb }), weight: 8 },
  { arbitrary: fc.record({ k: fc.constant('dir' as const), path: pathArb, spelling: spellingArb, meta: metaArb }), weight: 5 },
  { arbitrary: fc.record({ k: fc.constant('symlink' as const), path: pathArb, spelling: spellingArb, meta: metaArb, target: targetArb }), weight: 3 },
  {
    arbitrary: fc.record({ k: fc.constant('link' as const), path: pathArb, spelling: spellingArb, target: fc.option(pathArb), pick: fc.nat() }),
    weight: 4,
  },
  { arbitrary: fc.record({ k: fc.constant('whiteout' as const), path: pathArb, pick: fc.option(fc.nat()) }), weight: 3 },
  { arbitrary: fc.record({ k: fc.constant('opaque' as const), path: fc.option(pathArb, { freq: 10 }), pick: fc.option(fc.nat()) }), weight: 1 },
  {
    arbitrary: fc.record({ k: fc.constant('special' as const), path: pathArb, type: fc.constantFrom('fifo' as const, 'char' as const, 'block' as const), meta: metaArb }),
    weight: 1,
  },
);
type Op = typeof opArb extends fc.Arbitrary<infer T> ? T : never;

const rawLayerArb = fc.record({
  /** As BuildKit and containerd write layers: every missing parent directory listed first. */
  listParents: fc.boolean(),
  ops: fc.array(opArb, { maxLength: 10 }),
});

// ---------------------------------------------------------------------------------------
// From raw choices to valid layers

function spell(path: readonly string[], spelling: Spelling): string {
  switch (spelling) {
    case 'plain':
      return path.join('/');
    case 'dot':
      return `./${path.join('/')}`;
    case 'slash':
      return `/${path.join('/')}`;
    case 'double':
      return path.join('//');
    case 'climb':
      // Pinned at the root (DESIGN.md §3): `../a/b` and `/../a/b` are `a/b`.
      return `${path.length % 2 === 0 ? '/' : ''}../${path.join('/')}`;
  }
}

type MetaChoice = typeof metaArb extends fc.Arbitrary<infer T> ? T : never;

function metaFields(meta: MetaChoice): Partial<FixtureEntry> {
  const fields: Partial<FixtureEntry> = {
    mode: meta.mode,
    uid: meta.uid,
    gid: meta.gid,
    uname: `u${meta.uid}`,
    gname: `g${meta.gid}`,
    mtime: meta.mtime,
  };
  if (meta.xattr !== null) fields.pax = { [`SCHILY.xattr.${meta.xattr[0]}`]: meta.xattr[1] };
  return fields;
}

/** Visible paths of the model, for picking existing ones (root excluded). */
function existing(fs: FsModel, type?: 'file' | 'dir'): string[][] {
  return snapshot(fs)
    .filter((e) => e.path !== '.' && (type === undefined || e.type === type))
    .map((e) => e.path.split('/'));
}

function isFile(fs: FsModel, path: string): boolean {
  try {
    return lookup(fs, path)?.inode.type === 'file';
  } catch (error) {
    if (error instanceof ModelError) return false;
    throw error;
  }
}

/** The entries one raw choice stands for, best first: the first the model accepts is kept. */
function candidates(op: Op, fs: FsModel): FixtureEntry[] {
  const pickFrom = (list: string[][], pick: number): string[] | undefined => list[pick % list.length];
  switch (op.k) {
    case 'file':
      return [{ name: spell(op.path, op.spelling), type: 'file', ...metaFields(op.meta), content: op.content }];
    case 'dir':
      return [{ name: spell(op.path, op.spelling), type: 'dir', ...metaFields(op.meta) }];
    case 'symlink':
      return [{ name: spell(op.path, op.spelling), type: 'symlink', ...metaFields(op.meta), mode: 0o777, linkname: op.target }];
    case 'special': {
      const device = op.type === 'char' ? { devmajor: 1, devminor: 3 } : op.type === 'block' ? { devmajor: 8, devminor: 1 } : {};
      return [{ name: op.path.join('/'), type: op.type, ...metaFields(op.meta), ...device }];
    }
    case 'link': {
      const out: FixtureEntry[] = [];
      const name = spell(op.path, op.spelling);
      // a random path (may resolve through symlinks), else an existing file. Only regular
      // files: a hardlink to a symlink or device is legal tar, but too exotic to be worth
      // the noise here.
      if (op.target !== null && isFile(fs, op.target.join('/'))) out.push({ name, type: 'link', linkname: op.target.join('/') });
      const file = pickFrom(existing(fs, 'file'), op.pick);
      if (file !== undefined) out.push({ name, type: 'link', linkname: file.join('/') });
      return out.filter((e) => normalisePath(Buffer.from(e.linkname as string)).join('/') !== normalisePath(Buffer.from(name)).join('/'));
    }
    case 'whiteout': {
      const victim = op.pick === null ? op.path : (pickFrom(existing(fs), op.pick) ?? op.path);
      return [{ name: [...victim.slice(0, -1), `.wh.${victim[victim.length - 1]!}`].join('/'), type: 'file', mode: 0o600 }];
    }
    case 'opaque': {
      const d = op.pick === null ? op.path : (pickFrom(existing(fs, 'dir'), op.pick) ?? op.path);
      return [{ name: [...(d ?? []), '.wh..wh..opq'].join('/'), type: 'file', mode: 0o600 }];
    }
  }
}

interface Stack {
  layers: FixtureEntry[][];
}

function describeEntry(e: FixtureEntry): string {
  const name = show(typeof e.name === 'string' ? Buffer.from(e.name) : e.name);
  const extra =
    e.type === 'link' || e.type === 'symlink'
      ? ` -> ${String(e.linkname)}`
      : e.type === 'file' && !name.includes('.wh.')
        ? ` ${JSON.stringify(String(e.content ?? '').slice(0, 12))}${String(e.content ?? '').length > 12 ? `…(${String(e.content).length})` : ''}`
        : '';
  const meta = e.type === 'link' || name.includes('.wh.') ? '' : ` ${(e.mode ?? 0).toString(8)} ${e.uid ?? 0}:${e.gid ?? 0} t${e.mtime ?? 0}${e.pax ? ' +xattr' : ''}`;
  return `${e.type} ${name}${extra}${meta}`;
}

function describeStack(layers: FixtureEntry[][]): string {
  return layers.map((l, i) => `layer ${i}:\n${l.map((e) => `  ${describeEntry(e)}`).join('\n') || '  (empty)'}`).join('\n');
}

/** Runs the raw choices through the model, keeping the entries it accepts. */
function buildStack(raw: Array<{ listParents: boolean; ops: Op[] }>): Stack {
  let fs = createFs();
  const layers: FixtureEntry[][] = [];
  for (const { listParents, ops } of raw) {
    let record = beginLayer(fs);
    const entries: FixtureEntry[] = [];
    const tryEntry = (entry: FixtureEntry): boolean => {
      const savedFs = cloneFs(fs);
      const savedRecord: LayerRecord = { landed: [...record.landed], implicit: [...record.implicit] };
      try {
        applyEntryInLayer(fs, entry, record);
        entries.push(entry);
        return true;
      } catch (error) {
        if (!(error instanceof ModelError)) throw error;
        fs = savedFs;
        record = savedRecord;
        return false;
      }
    };
    for (const op of ops) {
      const options = candidates(op, fs);
      if (listParents && options[0] !== undefined && op.k !== 'whiteout' && op.k !== 'opaque') {
        const components = normalisePath(Buffer.from(options[0].name as string));
        for (let n = 1; n < components.length; n++) {
          const prefix = components.slice(0, n).join('/');
          let missing: boolean;
          try {
            missing = lookup(fs, prefix) === undefined;
          } catch (error) {
            if (error instanceof ModelError) break; // a file in the way: the entry will be refused anyway
            throw error;
          }
          if (missing) tryEntry({ name: prefix, type: 'dir', mode: 0o755, mtime: 1, uname: 'u0', gname: 'g0' });
        }
      }
      for (const entry of options) if (tryEntry(entry)) break;
    }
    layers.push(entries);
  }
  const stack: Stack & fc.WithToStringMethod = {
    layers,
    [fc.toStringMethod]: () => `\n${describeStack(layers)}\n`,
  };
  return stack;
}

const stackArb = fc.array(rawLayerArb, { minLength: 1, maxLength: 5 }).map(buildStack);

/** Chunk sizes the layer bytes are cut into, cycled; `null` is a single chunk. */
const chunkingArb = fc.option(fc.array(fc.integer({ min: 1, max: 1100 }), { minLength: 1, maxLength: 6 }), { freq: 2 });

// ---------------------------------------------------------------------------------------
// Running the flattener

async function* chunked(buf: Buffer, sizes: readonly number[] | null): AsyncGenerator<Uint8Array> {
  if (sizes === null) {
    yield buf;
    return;
  }
  let offset = 0;
  for (let i = 0; offset < buf.length; i++) {
    const size = sizes[i % sizes.length]!;
    yield buf.subarray(offset, offset + size);
    offset += size;
  }
}

interface OutEntry {
  header: TarHeader;
  body: Buffer;
}

async function runFlatten(
  layers: FixtureEntry[][],
  sizes: readonly number[] | null,
  options: FlattenOptions = {},
): Promise<{ tar: Buffer; entries: OutEntry[] }> {
  const tars = layers.map((entries) => buildTar(entries));
  const input: FlattenLayer[] = tars.map((tar, index) => ({
    index,
    name: `layer${index}`,
    open: () => chunked(tar, sizes),
  }));
  let parts: Buffer[] = [];
  // A restartable flatten starts over with what the last attempt learnt: at most once for
  // the duplicates of the whole stack.
  let lessons: FlattenLessons | undefined;
  for (let attempt = 0; ; attempt++) {
    parts = [];
    try {
      for await (const chunk of flattenLayers(input, lessons === undefined ? options : { ...options, lessons })) parts.push(Buffer.from(chunk));
      break;
    } catch (error) {
      if (!(error instanceof FlattenRestart) || attempt > 0) throw error;
      lessons = error.lessons;
    }
  }
  const tar = Buffer.concat(parts);
  const entries: OutEntry[] = [];
  for await (const entry of readTar(chunked(tar, null))) {
    const body: Buffer[] = [];
    for await (const chunk of entry.body()) body.push(Buffer.from(chunk));
    entries.push({ header: entry.header, body: Buffer.concat(body) });
  }
  return { tar, entries };
}

const key = (name: Buffer): string => normalisePath(name).join('/') || '.';

/** All the checks on one stack; throws with a readable message on the first failure. */
async function checkStack(stack: Stack, sizes: readonly number[] | null, budget: number | undefined, restartable = false): Promise<void> {
  const model = createFs();
  const records = stack.layers.map((layer) => applyLayer(model, layer));
  const expected = snapshot(model);

  const options: FlattenOptions = { ...(budget === undefined ? {} : { hiddenBodyBudget: budget }), ...(restartable ? { restartable } : {}) };
  const { entries } = await runFlatten(stack.layers, sizes, options);
  const names = entries.map((e) => key(e.header.name));

  // no whiteout or aufs name ever reaches the output
  const marker = names.find((n) => n.split('/').some((c) => c.startsWith('.wh.')));
  expect(marker, 'a whiteout marker was written').toBeUndefined();

  // a path is written twice only where one input layer had it twice (a same-layer duplicate,
  // or a parent the layer created implicitly and then declared), or where hardlinks are
  // written again after a later same-layer duplicate of their target
  const counts = new Map<string, number>();
  for (const n of names) counts.set(n, (counts.get(n) ?? 0) + 1);
  const hasDuplicate = (r: (typeof records)[number]): boolean => new Set(r.landed).size < r.landed.length;
  for (const [name, count] of counts) {
    if (count < 2) continue;
    // a restartable output holds each path once, always (DESIGN.md §3)
    expect(restartable, `${show(name)} written ${count} times on a restartable output`).toBe(false);
    const explained =
      records.some((r) => [...r.landed, ...r.implicit].filter((p) => (p || '.') === name).length >= 2) ||
      records.some(hasDuplicate);
    expect(explained, `${show(name)} written ${count} times without a same-layer duplicate`).toBe(true);
  }

  // the output applied as one layer: every hardlink must come after its target
  const flat = createFs();
  try {
    applyLayer(
      flat,
      entries.map((e) => fixtureFromTar(e.header, e.body)),
    );
  } catch (error) {
    if (error instanceof ModelError) {
      throw new Error(`the output does not apply as one layer (${error.code}): ${error.message}\noutput:\n${describeOutput(entries)}`);
    }
    throw error;
  }
  expect(snapshot(flat), `output:\n${describeOutput(entries)}`).toEqual(expected);

  // names are carried: every non-link entry owned by a user carries that user's name
  for (const { header } of entries) {
    if (header.type === 'link' || header.uid === 0) continue;
    expect(header.uname.toString(), `uname of ${show(header.name)}`).toBe(`u${header.uid}`);
  }
}

function describeOutput(entries: OutEntry[]): string {
  return entries
    .map(({ header: h, body }) => {
      const link = h.type === 'link' || h.type === 'symlink' ? ` -> ${show(h.linkname)}` : '';
      const content = h.type === 'file' ? ` ${JSON.stringify(body.toString('latin1').slice(0, 12))}` : '';
      return `  ${h.type} ${show(h.name)}${link}${content} ${h.mode.toString(8)} ${h.uid}:${h.gid} t${h.mtime}`;
    })
    .join('\n');
}

// ---------------------------------------------------------------------------------------

describe('flattenLayers against the filesystem model', () => {
  it('gives the tree of applying every layer base first, for random layer stacks', async () => {
    await fc.assert(
      fc.asyncProperty(stackArb, chunkingArb, fc.constantFrom(undefined, undefined, 0, 8), async (stack, sizes, budget) => {
        await checkStack(stack, sizes, budget);
      }),
      { numRuns: NUM_RUNS, ...(SEED === undefined ? {} : { seed: SEED }) },
    );
  }, 120_000);

  it('writes each path once on a restartable output, with the same tree', async () => {
    await fc.assert(
      fc.asyncProperty(stackArb, chunkingArb, fc.constantFrom(undefined, 0), async (stack, sizes, budget) => {
        await checkStack(stack, sizes, budget, true);
      }),
      { numRuns: NUM_RUNS, ...(SEED === undefined ? {} : { seed: SEED }) },
    );
  }, 120_000);

  it('generates stacks that exercise the interesting cases', () => {
    // A guard on the generator itself: if a change made it stop producing the cases the
    // property is for, the property would pass while testing nothing.
    const seen = new Set<string>();
    for (const stack of fc.sample(stackArb, { numRuns: 300, seed: 42 })) {
      const model = createFs();
      for (const [i, layer] of stack.layers.entries()) {
        const before = cloneFs(model);
        const record = applyLayer(model, layer);
        for (const e of layer) {
          const name = typeof e.name === 'string' ? e.name : e.name.toString('latin1');
          const base = name.split('/').filter(Boolean).pop() ?? '';
          if (base === '.wh..wh..opq') seen.add('opaque');
          else if (base.startsWith('.wh.')) seen.add('whiteout');
          if (e.type === 'link') seen.add(i > 0 ? 'link' : 'link in base');
          if (e.type === 'symlink') seen.add('symlink');
          if (name.split('/').includes('..')) seen.add('pinned at the root');
        }
        // an entry that landed somewhere other than where it is spelt went through a symlink
        const spelt = layer.filter((e) => !String(e.name).includes('.wh.')).map((e) => normalisePath(Buffer.from(e.name as string)).join('/'));
        if (record.landed.some((p, j) => spelt[j] !== undefined && p !== spelt[j])) seen.add('through symlink');
        if (i > 0 && snapshot(before).some((b) => b.hardlinks && b.hardlinks.length > 1)) seen.add('hardlink group below');
        if (new Set(record.landed).size < record.landed.length) seen.add('same-layer duplicate');
      }
      // a hardlink that kept content its target path no longer has
      const snap = snapshot(model);
      const byPath = new Map(snap.map((e) => [e.path, e]));
      for (const layer of stack.layers) {
        for (const e of layer) {
          if (e.type !== 'link') continue;
          const target = byPath.get(normalisePath(Buffer.from(e.linkname as string)).join('/'));
          const self = byPath.get(normalisePath(Buffer.from(e.name as string)).join('/'));
          if (self && (!target || target.sha256 !== self.sha256)) seen.add('hardlink outlives target');
        }
      }
    }
    expect([...seen].sort()).toEqual(
      [
        'hardlink group below',
        'hardlink outlives target',
        'link',
        'link in base',
        'opaque',
        'pinned at the root',
        'same-layer duplicate',
        'symlink',
        'through symlink',
        'whiteout',
      ].sort(),
    );
  });
});
