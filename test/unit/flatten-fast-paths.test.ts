/**
 * The flattener's performance paths (DESIGN.md §8): compact per-path records (a written entry
 * keeps no header: a group that needs it later reads the layer again), the header written
 * straight into the output batch, and fetching the layer below ahead.
 */
import { describe, expect, it } from 'vitest';
import { flattenLayers, type FlattenLayer } from '../../src/flatten/flatten.js';
import { readTar } from '../../src/streams/tar/reader.js';
import type { TarHeader } from '../../src/streams/tar/types.js';
import { encodeHeader, encodeHeaderInto } from '../../src/streams/tar/writer.js';
import { applyLayer, createFs, fixtureFromTar, snapshot } from '../helpers/fs-model.js';
import { buildTar, type FixtureEntry } from '../helpers/tar-fixture.js';

const file = (name: string, content = ''): FixtureEntry => ({ name, type: 'file', mode: 0o644, mtime: 1_700_000_000, content });
const link = (name: string, target: string): FixtureEntry => ({ name, type: 'link', mode: 0o644, linkname: target });

async function* once(buf: Buffer): AsyncGenerator<Uint8Array> {
  yield buf;
}

async function run(layers: FlattenLayer[]): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of flattenLayers(layers)) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}

function sources(tars: Buffer[], opens: number[], extra: (index: number) => Partial<FlattenLayer> = () => ({})): FlattenLayer[] {
  return tars.map((tar, index) => ({
    index,
    name: `layer${index}`,
    open: () => {
      opens[index] = (opens[index] ?? 0) + 1;
      return once(tar);
    },
    ...extra(index),
  }));
}

describe('flattenLayers: compact records', () => {
  it('reads a layer again for the content of a written entry that a same-layer duplicate replaced, when a hidden link still needs it', async () => {
    // Base first: a=old; h links to a (old inode); a is replaced by new content; c links to h,
    // so c has the old content. The top layer overwrites h, so h is hidden: c must be
    // written as a copy of the *replaced* a, whose header a written entry no longer keeps.
    const layers: FixtureEntry[][] = [
      [file('a', 'old'), link('h', 'a'), file('a', 'new'), link('c', 'h')],
      [file('h', 'top')],
    ];
    const opens: number[] = [];
    const tar = await run(sources(layers.map((l) => buildTar(l)), opens));
    const model = createFs();
    for (const layer of layers) applyLayer(model, layer);
    const flat = createFs();
    const out: FixtureEntry[] = [];
    for await (const entry of readTar(once(tar))) {
      const body: Buffer[] = [];
      for await (const chunk of entry.body()) body.push(Buffer.from(chunk));
      out.push(fixtureFromTar(entry.header, Buffer.concat(body)));
    }
    applyLayer(flat, out);
    expect(snapshot(flat)).toEqual(snapshot(model));
    expect(opens[0]).toBe(2);
  });

  it('keeps a link to the replaced inode apart from the higher link that moved on to the replacement', async () => {
    // Found by the property test (seed -1822100281). Base first: lib=X; a/a links to X; lib
    // is replaced by Y; usr links to a/a, so to X. The top layer makes `a` a link to lib (Y).
    // `a` first took the old lib and is written again after the new one: it must no longer
    // count as a path holding X, or usr would be written as a link to `a` (Y).
    const layers: FixtureEntry[][] = [
      [file('lib', 'x'), link('a/a', 'lib'), file('lib', 'y'), link('usr', 'a/a')],
      [link('a', 'lib')],
    ];
    const opens: number[] = [];
    const tar = await run(sources(layers.map((l) => buildTar(l)), opens));
    const model = createFs();
    for (const layer of layers) applyLayer(model, layer);
    const flat = createFs();
    const out: FixtureEntry[] = [];
    for await (const entry of readTar(once(tar))) {
      const body: Buffer[] = [];
      for await (const chunk of entry.body()) body.push(Buffer.from(chunk));
      out.push(fixtureFromTar(entry.header, Buffer.concat(body)));
    }
    applyLayer(flat, out);
    expect(snapshot(flat)).toEqual(snapshot(model));
  });
});

describe('flattenLayers: a hidden target replaced within its layer', () => {
  it('keeps a link to the replaced, hidden inode apart from the higher link that moved on to the replacement', async () => {
    // Found by the property test (seed 223151403). Base first: d=X (with an xattr); a/a/a
    // links to X; d is replaced by Y; e/a links to a/a/a, so to X. The top layer makes `a` a
    // link to d (Y) and d a directory, so neither d was written. `a` first took X's content
    // and is written again after Y: it must no longer hold X, or e/a would be linked to it.
    const x: FixtureEntry = { ...file('d', 'x'), pax: { 'SCHILY.xattr.user.k': 'v' } };
    const layers: FixtureEntry[][] = [
      [x, link('a/a/a', 'd'), file('d', 'y'), link('e/a', 'a/a/a')],
      [link('a', 'd'), { name: 'd', type: 'dir', mode: 0o755 }],
    ];
    const tar = await run(sources(layers.map((l) => buildTar(l)), []));
    const model = createFs();
    for (const layer of layers) applyLayer(model, layer);
    const flat = createFs();
    const out: FixtureEntry[] = [];
    for await (const entry of readTar(once(tar))) {
      const body: Buffer[] = [];
      for await (const chunk of entry.body()) body.push(Buffer.from(chunk));
      out.push(fixtureFromTar(entry.header, Buffer.concat(body)));
    }
    applyLayer(flat, out);
    expect(snapshot(flat)).toEqual(snapshot(model));
  });
});

describe('flattenLayers: fetching ahead', () => {
  it('lets the layer below fetch ahead once the layer above is open, and aborts what was not taken at the end', async () => {
    const tars = [buildTar([file('a', '1')]), buildTar([file('b', '2')]), buildTar([file('c', '3')])];
    const opens: number[] = [];
    const calls: Array<{ index: number; opensAbove: number; signal: AbortSignal }> = [];
    const layers = sources(tars, opens, (index) => ({
      prefetch: (signal: AbortSignal) => calls.push({ index, opensAbove: opens[index + 1] ?? 0, signal }),
    }));
    await run(layers);
    expect(calls.map((c) => c.index)).toEqual([1, 0]);
    expect(calls.every((c) => c.opensAbove === 1)).toBe(true);
    expect(calls.every((c) => c.signal.aborted)).toBe(true);
  });

  it('aborts the fetch-ahead signal when the flatten fails', async () => {
    const tars = [buildTar([file('a', '1')]), buildTar([file('.wh.', '')])];
    const signals: AbortSignal[] = [];
    const layers = sources(tars, [], () => ({ prefetch: (signal: AbortSignal) => signals.push(signal) }));
    await expect(run(layers)).rejects.toMatchObject({ code: 'ERR_MALFORMED_ARCHIVE' });
    expect(signals).toHaveLength(1);
    expect(signals[0]?.aborted).toBe(true);
  });
});

describe('encodeHeaderInto', () => {
  const base: TarHeader = {
    name: Buffer.from('usr/lib/node_modules/pkg/index.js'),
    type: 'file',
    mode: 0o4755,
    uid: 1000,
    gid: 1000,
    size: 12345,
    mtime: 1_700_000_000,
    linkname: Buffer.alloc(0),
    uname: Buffer.from('user'),
    gname: Buffer.from('group'),
    devmajor: 0,
    devminor: 0,
    pax: [],
  };
  const cases: Array<[string, Partial<TarHeader>]> = [
    ['a plain file', {}],
    ['a directory (gets its slash)', { type: 'directory', size: 0, name: Buffer.from('usr/lib') }],
    ['a directory of 99 bytes', { type: 'directory', size: 0, name: Buffer.from('d'.repeat(99)) }],
    ['a symlink', { type: 'symlink', size: 0, linkname: Buffer.from('../lib/x.so.1') }],
    ['a hardlink', { type: 'link', size: 0, linkname: Buffer.from('usr/bin/a') }],
    ['a device', { type: 'character-device', size: 0, devmajor: 1, devminor: 3 }],
    ['a device on a non-device type', { devmajor: 7 }],
    ['a 100-byte name', { name: Buffer.from('n'.repeat(100)) }],
    ['a long name (ustar prefix)', { name: Buffer.from(`${'p'.repeat(120)}/${'n'.repeat(50)}`) }],
    ['a non-ASCII name', { name: Buffer.from([0x61, 0xff, 0x62]) }],
    ['a big uid', { uid: 0o10000000 }],
    ['a negative mtime', { mtime: -5 }],
    ['a PAX record', { pax: [[Buffer.from('SCHILY.xattr.user.x'), Buffer.from('v')]] }],
    ['a long uname', { uname: Buffer.from('u'.repeat(40)) }],
  ];
  it('takes the common cases itself', () => {
    for (const patch of [{}, cases[1]![1], cases[3]![1], cases[4]![1], cases[5]![1], cases[7]![1]]) {
      expect(encodeHeaderInto({ ...base, ...patch }, Buffer.alloc(512), 0)).toBe(true);
    }
  });

  for (const [what, patch] of cases) {
    it(`writes the bytes encodeHeader gives, or nothing (${what})`, () => {
      const header = { ...base, ...patch };
      const out = Buffer.alloc(2048, 0xaa);
      const expected = encodeHeader(header);
      if (encodeHeaderInto(header, out, 512)) {
        expect(out.subarray(512, 1024).equals(expected)).toBe(true);
        expect(out.subarray(0, 512).every((b) => b === 0xaa)).toBe(true);
        expect(out.subarray(1024).every((b) => b === 0xaa)).toBe(true);
      } else {
        // Declined (PAX needed, or a case left to encodeHeader): nothing written.
        expect(out.every((b) => b === 0xaa)).toBe(true);
      }
    });
  }
});
