/**
 * The flatten policies of issue 9 (DESIGN.md §3), in process: names pinned at the root, the
 * root entry, one entry per path on a restartable output, warnings, and a layer whose
 * failure turns out to be a damaged download.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DigestMismatchError, MalformedArchiveError } from '../../src/errors.js';
import {
  flattenLayers,
  FlattenRestart,
  type FlattenLayer,
  type FlattenLessons,
  type FlattenOptions,
  type FlattenWarning,
} from '../../src/flatten/flatten.js';
import { readTar } from '../../src/streams/tar/reader.js';
import type { TarHeader } from '../../src/streams/tar/types.js';
import { applyLayer, createFs, fixtureFromTar, normalisePath, snapshot } from '../helpers/fs-model.js';
import { buildTar, type FixtureEntry } from '../helpers/tar-fixture.js';

const file = (name: string, content = '', extra: Partial<FixtureEntry> = {}): FixtureEntry => ({
  name,
  type: 'file',
  mode: 0o644,
  mtime: 1_700_000_000,
  content,
  ...extra,
});
const dir = (name: string, extra: Partial<FixtureEntry> = {}): FixtureEntry => ({ name, type: 'dir', mode: 0o755, mtime: 1_700_000_000, ...extra });
const link = (name: string, target: string): FixtureEntry => ({ name, type: 'link', mode: 0o644, linkname: target });

interface OutEntry {
  header: TarHeader;
  body: Buffer;
}

interface Run {
  entries: OutEntry[];
  names: string[];
  warnings: FlattenWarning[];
  /** How many attempts it took (restartable runs). */
  attempts: number;
  restarts: FlattenRestart[];
}

async function* once(buf: Buffer): AsyncGenerator<Uint8Array> {
  yield buf;
}

function layersOf(stack: FixtureEntry[][], opens?: number[]): FlattenLayer[] {
  return stack.map((entries, index) => {
    const tar = buildTar(entries);
    return {
      index,
      name: `layer${index}`,
      open: () => {
        if (opens) opens[index] = (opens[index] ?? 0) + 1;
        return once(tar);
      },
    };
  });
}

async function parse(tar: Buffer): Promise<OutEntry[]> {
  const entries: OutEntry[] = [];
  for await (const entry of readTar(once(tar))) {
    const body: Buffer[] = [];
    for await (const chunk of entry.body()) body.push(Buffer.from(chunk));
    entries.push({ header: entry.header, body: Buffer.concat(body) });
  }
  return entries;
}

const nameOf = (header: TarHeader): string => normalisePath(header.name).join('/') || '.';

/**
 * Flattens as pullRootfs$ does: `restartable` attempts start over (on a new, empty output)
 * with the lessons of the last one, until one completes.
 */
async function run(layers: FlattenLayer[], options: FlattenOptions = {}): Promise<Run> {
  const warnings: FlattenWarning[] = [];
  const restarts: FlattenRestart[] = [];
  let lessons: FlattenLessons | undefined;
  for (let attempt = 1; attempt <= 5; attempt++) {
    const parts: Buffer[] = [];
    try {
      for await (const chunk of flattenLayers(layers, {
        ...options,
        ...(lessons === undefined ? {} : { lessons }),
        onWarning: (warning) => warnings.push(warning),
      })) {
        parts.push(Buffer.from(chunk));
      }
    } catch (error) {
      if (!(error instanceof FlattenRestart)) throw error;
      restarts.push(error);
      lessons = error.lessons;
      continue;
    }
    const entries = await parse(Buffer.concat(parts));
    return { entries, names: entries.map((e) => nameOf(e.header)), warnings, attempts: attempt, restarts };
  }
  throw new Error('no attempt completed');
}

/** The output extracts to the tree of applying the layers base first. */
function expectModel(stack: FixtureEntry[][], out: Run): void {
  const model = createFs();
  for (const layer of stack) applyLayer(model, layer);
  const flat = createFs();
  applyLayer(
    flat,
    out.entries.map((e) => fixtureFromTar(e.header, e.body)),
  );
  expect(snapshot(flat)).toEqual(snapshot(model));
}

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');
const at = (out: Run, name: string): OutEntry | undefined => out.entries[out.names.lastIndexOf(name)];

describe('names that climb above the root', () => {
  it.each(['../x', '/../x', 'a/../../x', '../../../x'])('writes %s as x at the root', async (name) => {
    const stack = [[dir('a'), file(name, 'pinned\n')]];
    const out = await run(layersOf(stack));
    expect(out.names).toContain('x');
    expect(at(out, 'x')?.body.toString()).toBe('pinned\n');
    expect(out.names.some((n) => n.includes('..'))).toBe(false);
    expectModel(stack, out);
  });

  it('warns once per layer with the count and the first example', async () => {
    const stack = [[file('../a', '1'), file('/../b', '2'), file('ok', '3')], [file('c/../../d', '4')], [file('fine', '5')]];
    const out = await run(layersOf(stack));
    const pinned = out.warnings.filter((w) => w.code === 'NAME_PINNED_AT_ROOT');
    expect(pinned.map((w) => w.layer).sort()).toEqual([0, 1]);
    const base = pinned.find((w) => w.layer === 0);
    expect(base?.message).toMatch(/^layer 0 \(layer0\): 2 entry names climb above the root and were pinned at it/);
    expect(base?.message).toContain('"../a" is written as "a"');
    expect(pinned.find((w) => w.layer === 1)?.message).toMatch(/layer 1 \(layer1\): an entry name climbs above the root and was pinned at it.*"c\/\.\.\/\.\.\/d" is written as "d"/);
    expectModel(stack, out);
  });

  it('pins a hardlink target that climbs above the root, and links to the file inside the root', async () => {
    const stack = [[dir('etc'), file('etc/passwd', 'root:x:0:0\n'), link('innocent', '../../etc/passwd')]];
    const out = await run(layersOf(stack));
    const linked = at(out, 'innocent');
    expect(linked?.header.type).toBe('link');
    expect(linked?.header.linkname.toString()).toBe('etc/passwd');
    expect(out.warnings.find((w) => w.code === 'NAME_PINNED_AT_ROOT')?.message).toContain('"../../etc/passwd" is written as "etc/passwd"');
    expectModel(stack, out);
  });

  it('gives no warning when no name climbs', async () => {
    const out = await run(layersOf([[dir('a'), file('a/../b', 'x')]]));
    expect(out.warnings).toEqual([]);
  });
});

describe('the root entry', () => {
  it('writes ./ as 0755 root:root with mtime 0, after the entries, when no layer has it', async () => {
    const out = await run(layersOf([[file('a/b', 'x', { uid: 5 })], [file('c', 'y')]]));
    const roots = out.entries.filter((e) => nameOf(e.header) === '.');
    expect(roots).toHaveLength(1);
    expect(roots[0]?.header.name.toString()).toBe('.');
    expect(roots[0]?.header).toMatchObject({ type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime: 0 });
    // with the implicit parents, at the end
    expect(out.names.slice(-2)).toEqual(['.', 'a']);
  });

  it('keeps the root entry of the highest layer that has one, once', async () => {
    const out = await run(layersOf([[dir('.', { mode: 0o700, mtime: 7 }), file('a')], [dir('./', { mode: 0o750, mtime: 9, uid: 3 }), file('b')]]));
    const roots = out.entries.filter((e) => nameOf(e.header) === '.');
    expect(roots).toHaveLength(1);
    expect(roots[0]?.header).toMatchObject({ mode: 0o750, mtime: 9, uid: 3 });
  });
});

describe('a path that one layer holds twice', () => {
  const stack = [[file('base', 'b')], [file('a', 'one'), file('b'), file('a', 'two', { mode: 0o600 })]];

  it('on a stream output, writes both copies in order and warns, naming the path', async () => {
    const out = await run(layersOf(stack));
    expect(out.entries.filter((e) => nameOf(e.header) === 'a').map((e) => e.body.toString())).toEqual(['one', 'two']);
    const warnings = out.warnings.filter((w) => w.code === 'DUPLICATE_PATH');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ layer: 1 });
    expect(warnings[0]?.message).toMatch(/^layer 1 \(layer1\): a path appears more than once in the layer \("a"\); the later copy wins: both are in the output/);
    expectModel(stack, out);
  });

  it('on a restartable output, starts over once and writes each path once, the later copy', async () => {
    const out = await run(layersOf(stack), { restartable: true });
    expect(out.attempts).toBe(2);
    expect(out.names.filter((n) => n === 'a')).toHaveLength(1);
    expect(at(out, 'a')?.body.toString()).toBe('two');
    expect(at(out, 'a')?.header.mode).toBe(0o600);
    expect([...(out.restarts[0]?.lessons.superseded.get(1) ?? [])]).toEqual([0]);
    expect(out.restarts[0]?.message).toMatch(/layer 1 \(layer1\) holds a path twice \("a"\).*starting over to write each path once/);
    expect(out.warnings.filter((w) => w.code === 'DUPLICATE_PATH')).toHaveLength(1);
    expectModel(stack, out);
  });

  it('learns the duplicates of every layer in one attempt, so one restart suffices', async () => {
    const many = [
      [dir('d'), file('d/x', '1'), dir('d', { mode: 0o700 }), file('y', 'old'), file('y', 'new')],
      [file('p', 'a'), file('q'), file('p', 'b'), file('p', 'c')],
      [file('top')],
    ];
    const out = await run(layersOf(many), { restartable: true });
    expect(out.attempts).toBe(2);
    const counts = new Map<string, number>();
    for (const n of out.names) counts.set(n, (counts.get(n) ?? 0) + 1);
    expect([...counts].filter(([, c]) => c > 1)).toEqual([]);
    expect(at(out, 'p')?.body.toString()).toBe('c');
    expect(at(out, 'd')?.header.mode).toBe(0o700);
    expectModel(many, out);
  });

  it('keeps the content of the hidden earlier copy for a hardlink made to it before the later copy', async () => {
    const withLink = [[file('base')], [file('a', 'old'), link('keep', 'a'), file('a', 'new')]];
    const out = await run(layersOf(withLink), { restartable: true });
    expect(out.names.filter((n) => n === 'a')).toHaveLength(1);
    expect(at(out, 'a')?.body.toString()).toBe('new');
    expect(at(out, 'keep')?.header.type).toBe('file');
    expect(at(out, 'keep')?.body.toString()).toBe('old');
    expectModel(withLink, out);
  });

  it('keeps that content past the hidden-body budget by reading the layer again', async () => {
    const withLink = [[file('base')], [file('a', 'old'.repeat(100)), link('keep', 'a'), file('a', 'new')]];
    const opens: number[] = [];
    const out = await run(layersOf(withLink, opens), { restartable: true, hiddenBodyBudget: 0 });
    expect(at(out, 'keep')?.body.toString()).toBe('old'.repeat(100));
    expect(out.names.filter((n) => n === 'a' || n === 'keep')).toHaveLength(2);
    expectModel(withLink, out);
  });

  it('links a higher-layer hardlink once, to the later copy', async () => {
    const withLink = [[file('a', 'one'), file('a', 'two')], [link('l', 'a')]];
    const out = await run(layersOf(withLink), { restartable: true });
    const counts = out.names.filter((n) => n === 'a' || n === 'l');
    expect(counts.sort()).toEqual(['a', 'l']);
    expect(at(out, 'a')?.body.toString()).toBe('two');
    expectModel(withLink, out);
  });

  it('writes no byte of the learning attempt: the restart is thrown before anything after the duplicate is yielded', async () => {
    const big = [[file('a', 'x'.repeat(100_000)), file('a', 'y'), file('z', 'z'.repeat(100_000))]];
    let bytes = 0;
    await expect(
      (async () => {
        for await (const chunk of flattenLayers(layersOf(big), { restartable: true })) bytes += chunk.length;
      })(),
    ).rejects.toBeInstanceOf(FlattenRestart);
    // the first copy of `a` may have gone out; `z` must not have
    expect(bytes).toBeLessThan(200_000);
  });
});

describe('a layer whose read fails', () => {
  const digest = `sha256:${sha('good')}`;
  const damaged = (cause: unknown): DigestMismatchError =>
    new DigestMismatchError('layer 0 (sha256:good)', digest, `sha256:${sha('bad')}`, 4, { cause, reason: "corrupted in transit or in the registry's storage" });

  /** A layer that fails to parse on its first `bad` opens, with an explanation of `explain`. */
  function flaky(bad: number, explain: (error: unknown) => unknown): { layer: FlattenLayer; opens: () => number; explained: unknown[] } {
    const good = buildTar([file('a', 'x')]);
    // The entry, then a header block of garbage (a bad checksum).
    const broken = Buffer.concat([good.subarray(0, 1024), Buffer.alloc(512, 0x41)]);
    let opens = 0;
    const explained: unknown[] = [];
    const layer: FlattenLayer = {
      index: 0,
      name: 'sha256:good',
      open: () => once(++opens <= bad ? broken : good),
      explainFailure: (error) => {
        explained.push(error);
        return Promise.resolve(explain(error));
      },
    };
    return { layer, opens: () => opens, explained };
  }

  it('reports what the layer source explains: a damaged download is an integrity error with the parse error as its cause', async () => {
    const { layer, explained } = flaky(1, damaged);
    const error = await run([layer]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DigestMismatchError);
    expect((error as Error).message).toMatch(/layer 0 \(sha256:good\) does not match its digest: corrupted in transit or in the registry's storage/);
    expect((error as Error).cause).toBe(explained[0]);
    expect(explained[0]).toBeInstanceOf(MalformedArchiveError);
  });

  it('reports malformed content when the bytes matched their digest', async () => {
    const { layer } = flaky(1, (error) => error);
    const error = await run([layer]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MalformedArchiveError);
  });

  it('on a restartable output, fetches a damaged layer again once and starts over', async () => {
    const { layer, opens } = flaky(1, damaged);
    const out = await run([layer], { restartable: true });
    expect(out.attempts).toBe(2);
    expect(opens()).toBe(2);
    expect(out.restarts[0]?.refetch).toMatchObject({ index: 0, name: 'sha256:good' });
    expect(out.restarts[0]?.message).toMatch(/does not match its digest.*fetching it again and starting over/);
    expect(at(out, 'a')?.body.toString()).toBe('x');
  });

  it('fails when the layer is damaged again after its one new fetch', async () => {
    const { layer, opens } = flaky(2, damaged);
    const error = await run([layer], { restartable: true }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DigestMismatchError);
    expect(opens()).toBe(2);
  });

  it('does not start over for malformed content, even on a restartable output', async () => {
    const { layer, opens } = flaky(1, (error) => error);
    await expect(run([layer], { restartable: true })).rejects.toBeInstanceOf(MalformedArchiveError);
    expect(opens()).toBe(1);
  });
});
