/**
 * One example per rule of DESIGN.md §3, each checked two ways: what the output tar holds
 * (entries, order, bytes), and that it extracts to the tree the model builds by applying the
 * layers base first.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { flattenLayers, type FlattenLayer, type FlattenOptions } from '../../src/flatten/flatten.js';
import { readTar } from '../../src/streams/tar/reader.js';
import type { TarHeader } from '../../src/streams/tar/types.js';
import { applyLayer, createFs, fixtureFromTar, normalisePath, snapshot } from '../helpers/fs-model.js';
import { buildTar, type FixtureEntry, listRawHeaders, paxRecords } from '../helpers/tar-fixture.js';

const file = (name: string | Buffer, content = '', extra: Partial<FixtureEntry> = {}): FixtureEntry => ({
  name,
  type: 'file',
  mode: 0o644,
  mtime: 1_700_000_000,
  content,
  ...extra,
});
const dir = (name: string, extra: Partial<FixtureEntry> = {}): FixtureEntry => ({ name, type: 'dir', mode: 0o755, mtime: 1_700_000_000, ...extra });
const symlink = (name: string, target: string): FixtureEntry => ({ name, type: 'symlink', mode: 0o777, linkname: target });
const link = (name: string, target: string): FixtureEntry => ({ name, type: 'link', mode: 0o644, linkname: target });
const wh = (name: string): FixtureEntry => ({ name, type: 'file', mode: 0o600 });

interface OutEntry {
  header: TarHeader;
  body: Buffer;
}

interface Flattened {
  tar: Buffer;
  entries: OutEntry[];
  /** Normalised output names, in order. */
  names: string[];
  /** How many times each layer (by index) was opened. */
  opens: number[];
}

async function* once(buf: Buffer): AsyncGenerator<Uint8Array> {
  yield buf;
}

async function flatten(layers: FixtureEntry[][] | Buffer[], options: FlattenOptions = {}): Promise<Flattened> {
  const tars = layers.map((l) => (Buffer.isBuffer(l) ? l : buildTar(l)));
  const opens = tars.map(() => 0);
  const input: FlattenLayer[] = tars.map((tar, index) => ({
    index,
    name: `layer${index}`,
    open: () => {
      opens[index]!++;
      return once(tar);
    },
  }));
  const parts: Buffer[] = [];
  for await (const chunk of flattenLayers(input, options)) parts.push(Buffer.from(chunk));
  const tar = Buffer.concat(parts);
  const entries: OutEntry[] = [];
  for await (const entry of readTar(once(tar))) {
    const body: Buffer[] = [];
    for await (const chunk of entry.body()) body.push(Buffer.from(chunk));
    entries.push({ header: entry.header, body: Buffer.concat(body) });
  }
  return { tar, entries, names: entries.map((e) => normalisePath(e.header.name).join('/') || '.'), opens };
}

/** Flattens, and checks the output extracts to the tree of applying the layers base first. */
async function flattenAndCompare(layers: FixtureEntry[][], options: FlattenOptions = {}): Promise<Flattened> {
  const model = createFs();
  for (const layer of layers) applyLayer(model, layer);
  const out = await flatten(layers, options);
  const flat = createFs();
  applyLayer(
    flat,
    out.entries.map((e) => fixtureFromTar(e.header, e.body)),
  );
  expect(snapshot(flat)).toEqual(snapshot(model));
  return out;
}

const entryAt = (out: Flattened, name: string): OutEntry | undefined => {
  const i = out.names.lastIndexOf(name);
  return i === -1 ? undefined : out.entries[i];
};
const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

async function failure(layers: FixtureEntry[][] | Buffer[], options: FlattenOptions = {}): Promise<{ code?: string; message: string }> {
  try {
    await flatten(layers, options);
  } catch (error) {
    return error as { code?: string; message: string };
  }
  throw new Error('expected flattenLayers to fail');
}

describe('flattenLayers: output framing', () => {
  it('ends the output with the end-of-archive marker', async () => {
    const out = await flattenAndCompare([[file('a', 'x')]]);
    expect(out.tar.length % 512).toBe(0);
    expect(out.tar.subarray(-1024).every((b) => b === 0)).toBe(true);
  });

  it('flattens an empty layer stack member to nothing but what the others hold', async () => {
    const out = await flattenAndCompare([[], [file('a', 'x')], []]);
    expect(out.names.filter((n) => n !== '.')).toEqual(['a']);
  });

  it('opens each layer once when every parent is settled (no pre-pass)', async () => {
    const out = await flattenAndCompare([
      [dir('usr'), dir('usr/bin'), file('usr/bin/sh', 'sh')],
      [dir('usr'), dir('usr/bin'), file('usr/bin/ls', 'ls'), dir('etc'), file('etc/motd', 'hi')],
    ]);
    expect(out.opens).toEqual([1, 1]);
  });
});

describe('flattenLayers: whiteouts and opaque directories', () => {
  it('hides a lower file and a lower subtree behind .wh. markers, and never writes the marker', async () => {
    const out = await flattenAndCompare([
      [file('a', 'a'), dir('d'), file('d/x'), dir('d/y'), file('d/y/z'), file('keep')],
      [wh('.wh.a'), wh('.wh.d')],
    ]);
    expect(out.names.filter((n) => n !== '.')).toEqual(['keep']);
  });

  it('keeps what the whiting-out layer itself wrote at that path', async () => {
    const out = await flattenAndCompare([[file('a', 'low')], [file('a', 'high'), wh('.wh.a')]]);
    expect(entryAt(out, 'a')?.body.toString()).toBe('high');
  });

  it('hides lower descendants of an opaque directory and keeps the same layer children, wherever the marker sits', async () => {
    const lower = [dir('d', { mode: 0o700 }), file('d/old'), dir('d/sub'), file('d/sub/old2'), file('other')];
    for (const upper of [
      [dir('d', { mode: 0o750 }), wh('d/.wh..wh..opq'), file('d/new'), dir('d/sub'), file('d/sub/new2')],
      [dir('d', { mode: 0o750 }), file('d/new'), dir('d/sub'), file('d/sub/new2'), wh('d/.wh..wh..opq')],
    ]) {
      const out = await flattenAndCompare([lower, upper]);
      expect(out.names.filter((n) => n !== '.').sort()).toEqual(['d', 'd/new', 'd/sub', 'd/sub/new2', 'other']);
      expect(entryAt(out, 'd')?.header.mode).toBe(0o750);
    }
  });

  it('resolves a whiteout parent through a symlink: lib64/.wh.libfoo.so deletes usr/lib/libfoo.so', async () => {
    const out = await flattenAndCompare([
      [dir('usr'), dir('usr/lib'), file('usr/lib/libfoo.so', 'foo'), file('usr/lib/libbar.so', 'bar'), symlink('lib64', 'usr/lib')],
      [wh('lib64/.wh.libfoo.so')],
    ]);
    expect(out.names).not.toContain('usr/lib/libfoo.so');
    expect(out.names).toContain('usr/lib/libbar.so');
    expect(entryAt(out, 'lib64')?.header.type).toBe('symlink');
  });

  it('refuses a bare .wh. marker', async () => {
    const error = await failure([[file('a')], [wh('d/.wh.')]]);
    expect(['ERR_UNSAFE_ENTRY', 'ERR_MALFORMED_ARCHIVE']).toContain(error.code);
  });

  it('drops aufs metadata, and gives a hardlink into .wh..wh.plnk that file’s content', async () => {
    const out = await flattenAndCompare([
      [dir('.wh..wh.plnk'), file('.wh..wh.plnk/1234.5678', 'plink'), wh('.wh..wh.aufs'), dir('.wh..wh.orph'), link('bin/a', '.wh..wh.plnk/1234.5678')],
    ]);
    expect(out.names.some((n) => n.includes('.wh.'))).toBe(false);
    expect(entryAt(out, 'bin/a')).toMatchObject({ header: { type: 'file' } });
    expect(entryAt(out, 'bin/a')?.body.toString()).toBe('plink');
  });
});

describe('flattenLayers: replacing paths', () => {
  it('lets a higher file replace a lower directory and hide its subtree', async () => {
    const out = await flattenAndCompare([[dir('d'), dir('d/x'), file('d/x/y', 'y'), file('d/z')], [file('d', 'now a file')]]);
    expect(out.names.filter((n) => n !== '.')).toEqual(['d']);
    expect(entryAt(out, 'd')?.header.type).toBe('file');
  });

  it('takes a directory over a directory with the higher attributes, children merged', async () => {
    const cap = { 'SCHILY.xattr.user.low': 'low' };
    const out = await flattenAndCompare([
      [dir('d', { mode: 0o700, uid: 1, gid: 1, mtime: 10, pax: cap }), file('d/low')],
      [dir('d', { mode: 0o1777, uid: 2, gid: 3, mtime: 20 }), file('d/high')],
    ]);
    expect(entryAt(out, 'd')?.header).toMatchObject({ type: 'directory', mode: 0o1777, uid: 2, gid: 3, mtime: 20, pax: [] });
    expect(out.names.filter((n) => n.startsWith('d/')).sort()).toEqual(['d/high', 'd/low']);
    expect(out.names.filter((n) => n === 'd')).toHaveLength(1);
  });

  it('replaces a lower file with a higher directory', async () => {
    const out = await flattenAndCompare([[file('a', 'x')], [dir('a'), file('a/b')]]);
    expect(entryAt(out, 'a')?.header.type).toBe('directory');
  });

  it('writes both copies of a path duplicated within one layer, in order, the later winning', async () => {
    const out = await flattenAndCompare([[file('base')], [file('a', 'one'), file('b'), file('a', 'two', { mode: 0o600 })]]);
    const copies = out.entries.filter((e) => normalisePath(e.header.name).join('/') === 'a');
    expect(copies.map((e) => e.body.toString())).toEqual(['one', 'two']);
  });

  it('refuses a directory replaced by a non-directory within one layer', async () => {
    await expect(flatten([[dir('a'), file('a/x'), file('a', 'file')]])).rejects.toThrow();
  });
});

describe('flattenLayers: parents resolve through symlinks', () => {
  it('puts bin/x of a higher layer at usr/bin/x when a lower layer made bin -> usr/bin', async () => {
    const out = await flattenAndCompare([[dir('usr'), dir('usr/bin'), file('usr/bin/sh', 'sh'), symlink('bin', 'usr/bin')], [file('bin/x', 'x')]]);
    expect(out.names).toContain('usr/bin/x');
    expect(out.names).not.toContain('bin/x');
    expect(entryAt(out, 'bin')?.header).toMatchObject({ type: 'symlink' });
    expect(entryAt(out, 'bin')?.header.linkname.toString()).toBe('usr/bin');
    // the symlink is written before anything could create a directory bin/
    expect(out.names.filter((n) => n === 'bin')).toHaveLength(1);
  });

  it('resolves through a symlink the same layer wrote earlier', async () => {
    const out = await flattenAndCompare([[file('base')], [dir('usr'), dir('usr/bin'), symlink('bin', 'usr/bin'), file('bin/x', 'x')]]);
    expect(out.names).toContain('usr/bin/x');
  });

  it('resolves pending entries through symlinks several layers down, absolute and climbing targets clamped', async () => {
    await flattenAndCompare([
      [dir('usr'), dir('usr/lib'), symlink('lib', '/usr/lib'), symlink('usr/up', '../../../..')],
      [file('other')],
      [file('lib/libc.so', 'c'), file('usr/up/etc/x', 'clamped')],
    ]);
  });

  it('writes parents no layer declares as 0755 root directories with mtime 0', async () => {
    const out = await flattenAndCompare([[file('a/b/c', 'x', { uid: 5 })]]);
    for (const name of ['a', 'a/b']) {
      const e = entryAt(out, name);
      expect(e, `${name} is written`).toBeDefined();
      expect(e?.header).toMatchObject({ type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime: 0 });
    }
  });

  it('accepts a root entry', async () => {
    await flattenAndCompare([[dir('./', { mode: 0o755, mtime: 0 }), file('./a', 'a')], [dir('.', { mode: 0o755, mtime: 0 }), file('b')]]);
  });

  it('pins at the root an entry whose .. climbs above it, as container runtimes do', async () => {
    const out = await flattenAndCompare([[file('a')], [file('../../etc/passwd', 'pinned'), file('b/../../c', 'c')]]);
    expect(entryAt(out, 'etc/passwd')?.body.toString()).toBe('pinned');
    expect(entryAt(out, 'c')?.body.toString()).toBe('c');
    expect(out.names.filter((n) => n.includes('..'))).toEqual([]);
  });

  it('writes symlink targets as they are', async () => {
    const out = await flattenAndCompare([[symlink('abs', '/etc/../usr//lib'), symlink('rel', '../../x')]]);
    expect(entryAt(out, 'abs')?.header.linkname.toString()).toBe('/etc/../usr//lib');
    expect(entryAt(out, 'rel')?.header.linkname.toString()).toBe('../../x');
  });
});

describe('flattenLayers: hardlinks', () => {
  const linkAfterTarget = (out: Flattened, linkName: string): void => {
    const i = out.names.indexOf(linkName);
    const e = out.entries[i]!;
    if (e.header.type !== 'link') return;
    const target = normalisePath(e.header.linkname).join('/');
    const t = out.names.indexOf(target);
    expect(t, `target ${target} of ${linkName}`).toBeGreaterThanOrEqual(0);
    expect(t).toBeLessThan(i);
  };

  it('case 1: writes a link after its visible target, in the same layer', async () => {
    const out = await flattenAndCompare([[file('a', 'data'), link('b', 'a')]]);
    expect(entryAt(out, 'b')?.header.type).toBe('link');
    linkAfterTarget(out, 'b');
  });

  it('case 1: holds a link whose visible target comes from a lower layer until the target is written', async () => {
    const out = await flattenAndCompare([[file('usr/bin/a', 'data')], [link('b', 'usr/bin/a')]]);
    linkAfterTarget(out, 'b');
  });

  it('case 1: resolves the link target through a symlinked parent', async () => {
    await flattenAndCompare([[dir('usr'), dir('usr/lib'), file('usr/lib/l.so', 'L'), symlink('lib', 'usr/lib')], [link('x', 'lib/l.so')]]);
  });

  it('case 2: keeps the old content when a higher layer overwrites a same-layer target', async () => {
    const out = await flattenAndCompare([[file('a', 'old'), link('b', 'a')], [file('a', 'new')]]);
    expect(entryAt(out, 'a')?.body.toString()).toBe('new');
    expect(entryAt(out, 'b')).toMatchObject({ header: { type: 'file' } });
    expect(entryAt(out, 'b')?.body.toString()).toBe('old');
  });

  it('case 2: keeps the old content when a higher layer deletes a lower-layer target', async () => {
    const out = await flattenAndCompare([[file('a', 'old', { mode: 0o4755, uid: 7 })], [link('b', 'a'), link('c', 'a')], [wh('.wh.a')]]);
    expect(out.names).not.toContain('a');
    const b = entryAt(out, 'b')!;
    const c = entryAt(out, 'c')!;
    const [first, second] = out.names.indexOf('b') < out.names.indexOf('c') ? [b, c] : [c, b];
    expect(first.header).toMatchObject({ type: 'file', mode: 0o4755, uid: 7 });
    expect(first.body.toString()).toBe('old');
    expect(second.header.type).toBe('link');
  });

  it('case 2: re-fetches the layer for a same-layer hidden target past the body budget', async () => {
    const big = 'B'.repeat(5000);
    const out = await flattenAndCompare([[file('base')], [file('a', big), link('b', 'a')], [file('a', 'new')]], { hiddenBodyBudget: 0 });
    expect(sha(entryAt(out, 'b')!.body)).toBe(sha(big));
    expect(out.opens[1]).toBeGreaterThanOrEqual(2);
  });

  it('case 2: keeps the content a link had when the target was overwritten in the link’s own layer', async () => {
    await flattenAndCompare([[file('a', 'v1')], [link('b', 'a'), file('a', 'v2')], [link('c', 'a')]]);
  });

  it('case 3: refuses a link to a target that never existed', async () => {
    const error = await failure([[file('x')], [link('b', 'missing')]]);
    expect(error.code).toBe('ERR_HARDLINK_TARGET');
    expect(error.message).toContain('missing');
    expect(error.message).toContain('b');
  });

  it('case 3: refuses a link to a target a lower layer already deleted', async () => {
    const error = await failure([[file('a')], [wh('.wh.a')], [link('b', 'a')]]);
    expect(error.code).toBe('ERR_HARDLINK_TARGET');
  });
});

describe('flattenLayers: bytes and attributes are kept', () => {
  it('keeps a non-UTF-8 name byte for byte, short and long', async () => {
    const short = Buffer.from([0x63, 0x61, 0x66, 0xe9]);
    const long = Buffer.concat([Buffer.alloc(150, 0x64), Buffer.from('/'), Buffer.from([0xff, 0xfe, 0x80])]);
    const linkName = Buffer.from([0x6c, 0xe9]);
    const out = await flattenAndCompare([[file(short, 's'), file(long, 'l'), { name: linkName, type: 'symlink', linkname: short }]]);
    const names = out.entries.map((e) => e.header.name);
    expect(names.some((n) => n.equals(short))).toBe(true);
    expect(names.some((n) => n.equals(long))).toBe(true);
    expect(out.entries.find((e) => e.header.name.equals(linkName))?.header.linkname.equals(short)).toBe(true);
  });

  it('keeps a binary xattr byte for byte', async () => {
    const cap = Buffer.from('0100000200200000000000000000000000000000', 'hex');
    const bin = Buffer.from([0x00, 0xff, 0x0a, 0x3d, 0x80]);
    const out = await flattenAndCompare([[file('usr/bin/ping', 'elf', { pax: { 'SCHILY.xattr.security.capability': cap, 'SCHILY.xattr.user.bin': bin } })]]);
    const pax = new Map(entryAt(out, 'usr/bin/ping')!.header.pax.map(([k, v]) => [k.toString('latin1'), v]));
    expect(pax.get('SCHILY.xattr.security.capability')?.equals(cap)).toBe(true);
    expect(pax.get('SCHILY.xattr.user.bin')?.equals(bin)).toBe(true);
  });

  it('keeps uids and gids above the ustar range, and user and group names', async () => {
    const out = await flattenAndCompare([[file('a', 'x', { uid: 4_294_967_294, gid: 0o7777777 + 1, uname: 'nobody', gname: 'g'.repeat(40) })]]);
    expect(entryAt(out, 'a')?.header).toMatchObject({ uid: 4_294_967_294, gid: 0o7777777 + 1 });
    expect(entryAt(out, 'a')?.header.uname.toString()).toBe('nobody');
    expect(entryAt(out, 'a')?.header.gname.toString()).toBe('g'.repeat(40));
  });

  it('keeps setuid, setgid and sticky bits, mtimes, devices and fifos', async () => {
    const out = await flattenAndCompare([
      [
        dir('tmp', { mode: 0o1777, mtime: 42 }),
        file('bin/su', 'su', { mode: 0o4755, mtime: 43 }),
        dir('srv', { mode: 0o2775 }),
        { name: 'dev/null', type: 'char', mode: 0o666, devmajor: 1, devminor: 3 },
        { name: 'dev/sda', type: 'block', mode: 0o660, devmajor: 8, devminor: 0 },
        { name: 'run/fifo', type: 'fifo', mode: 0o600 },
      ],
    ]);
    expect(entryAt(out, 'tmp')?.header).toMatchObject({ mode: 0o1777, mtime: 42 });
    expect(entryAt(out, 'bin/su')?.header).toMatchObject({ mode: 0o4755, mtime: 43 });
    expect(entryAt(out, 'dev/null')?.header).toMatchObject({ type: 'character-device', devmajor: 1, devminor: 3 });
    expect(entryAt(out, 'dev/sda')?.header).toMatchObject({ type: 'block-device', devmajor: 8, devminor: 0 });
    expect(entryAt(out, 'run/fifo')?.header.type).toBe('fifo');
  });

  it('keeps per-entry PAX records such as atime', async () => {
    const out = await flattenAndCompare([[file('a', 'x', { pax: { atime: '1700000000.5', 'LIBARCHIVE.xattr.user.k': 'dg==' } })]]);
    const pax = new Map(entryAt(out, 'a')!.header.pax.map(([k, v]) => [k.toString('latin1'), v]));
    expect(pax.get('atime')?.toString()).toBe('1700000000.5');
  });

  it('drops global PAX headers', async () => {
    const global: FixtureEntry = { name: 'pax_global_header', type: 'file', rawTypeflag: 'g', content: paxRecords({ comment: 'built by someone' }) };
    const out = await flattenAndCompare([[global, file('a', 'x')], [global, file('b', 'y')]]);
    expect(listRawHeaders(out.tar).map((h) => h.typeflag)).not.toContain('g');
    expect(out.names.filter((n) => n !== '.').sort()).toEqual(['a', 'b']);
  });

  it('writes long names through PAX so that they come back whole', async () => {
    const long = `${'x'.repeat(60)}/${'y'.repeat(60)}/${'z'.repeat(120)}`;
    const out = await flattenAndCompare([[file(long, 'long'), symlink('s', long)]]);
    expect(entryAt(out, long)?.body.toString()).toBe('long');
    expect(entryAt(out, 's')?.header.linkname.toString()).toBe(long);
  });
});
