import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { extract } from 'tar-stream';
import { describe, expect, it } from 'vitest';
import type { TarHeader } from '../../src/streams/tar/types.js';
import {
  applyLayer,
  cloneFs,
  createFs,
  fixtureFromTar,
  lookup,
  type FsModel,
  type SnapshotEntry,
  snapshot,
} from '../helpers/fs-model.js';
import { buildTar, type FixtureEntry, listRawHeaders, paxRecords } from '../helpers/tar-fixture.js';

const file = (name: string | Buffer, content = '', extra: Partial<FixtureEntry> = {}): FixtureEntry => ({
  name,
  type: 'file',
  mode: 0o644,
  content,
  ...extra,
});
const dir = (name: string, extra: Partial<FixtureEntry> = {}): FixtureEntry => ({ name, type: 'dir', mode: 0o755, ...extra });
const symlink = (name: string, target: string): FixtureEntry => ({ name, type: 'symlink', mode: 0o777, linkname: target });
const link = (name: string, target: string): FixtureEntry => ({ name, type: 'link', linkname: target });
const wh = (name: string): FixtureEntry => ({ name, type: 'file', mode: 0o600 });

function apply(...layers: FixtureEntry[][]): FsModel {
  const fs = createFs();
  for (const layer of layers) applyLayer(fs, layer);
  return fs;
}

const paths = (fs: FsModel): string[] => snapshot(fs).map((e) => e.path);
const at = (fs: FsModel, path: string): SnapshotEntry | undefined => snapshot(fs).find((e) => e.path === path);
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (error) {
    return (error as { code?: string }).code;
  }
  return undefined;
};

describe('fs model: paths', () => {
  it('normalises ./a//b/ and /a/b to a/b', () => {
    const fs = apply([file('./a//b/', 'x'), file('/c/d', 'y')]);
    expect(paths(fs)).toEqual(['.', 'a', 'a/b', 'c', 'c/d']);
  });

  it('folds .. inside the root and pins at the root an entry that climbs above it', () => {
    expect(paths(apply([file('a/../b')]))).toEqual(['.', 'b']);
    expect(paths(apply([file('../etc/passwd')]))).toEqual(['.', 'etc', 'etc/passwd']);
    expect(paths(apply([file('a/../../x'), file('/../y')]))).toEqual(['.', 'x', 'y']);
  });

  it('creates missing parents as implicit 0755 root directories with mtime 0', () => {
    const fs = apply([file('x/y/z', 'hi', { uid: 7, mtime: 99 })]);
    expect(at(fs, 'x')).toEqual({ path: 'x', type: 'dir', mode: '0755', uid: 0, gid: 0, mtime: 0, xattrs: {} });
    expect(at(fs, 'x/y')?.mode).toBe('0755');
    expect(at(fs, 'x/y/z')).toMatchObject({ type: 'file', uid: 7, mtime: 99, sha256: sha('hi'), hardlinks: ['x/y/z'] });
  });

  it('lists the root as an implicit directory, and a root entry . updates its attributes', () => {
    expect(snapshot(createFs())).toEqual([{ path: '.', type: 'dir', mode: '0755', uid: 0, gid: 0, mtime: 0, xattrs: {} }]);
    const fs = apply([dir('./', { mode: 0o700, mtime: 5 })]);
    expect(at(fs, '.')).toMatchObject({ mode: '0700', mtime: 5 });
    expect(codeOf(() => apply([file('.')]))).toBe('ERR_UNSAFE_ENTRY');
  });

  it('keeps a non-UTF-8 name as bytes, shown in hex', () => {
    const name = Buffer.from([0x63, 0x61, 0x66, 0xe9]); // "caf\xe9", latin1
    const fs = apply([file(name, 'x')]);
    expect(paths(fs)).toEqual(['.', 'hex:636166e9']);
    expect(lookup(fs, name)?.inode.type).toBe('file');
  });
});

describe('fs model: replacing', () => {
  it('lets a later file replace a directory and its whole subtree', () => {
    const fs = apply([dir('a'), file('a/b'), file('a/c/d')], [file('a', 'now a file')]);
    expect(paths(fs)).toEqual(['.', 'a']);
    expect(at(fs, 'a')?.type).toBe('file');
  });

  it('takes a directory over a directory: the newer attributes, the children merged', () => {
    const fs = apply(
      [dir('d', { mode: 0o700, uid: 1, mtime: 10, pax: { 'SCHILY.xattr.user.old': 'o' } }), file('d/old')],
      [dir('d', { mode: 0o1777, uid: 2, mtime: 20 }), file('d/new')],
    );
    expect(at(fs, 'd')).toEqual({ path: 'd', type: 'dir', mode: '1777', uid: 2, gid: 0, mtime: 20, xattrs: {} });
    expect(paths(fs)).toEqual(['.', 'd', 'd/new', 'd/old']);
  });

  it('replaces a file with a directory', () => {
    const fs = apply([file('a', 'x')], [dir('a'), file('a/b')]);
    expect(at(fs, 'a')?.type).toBe('dir');
    expect(paths(fs)).toEqual(['.', 'a', 'a/b']);
  });

  it('lets a later duplicate in the same layer win', () => {
    const fs = apply([file('a', 'one'), file('a', 'two', { mode: 0o600 })]);
    expect(at(fs, 'a')).toMatchObject({ sha256: sha('two'), mode: '0600' });
  });

  it('refuses a directory replaced by a non-directory within one layer', () => {
    expect(codeOf(() => apply([dir('a'), file('a')]))).toBe('ERR_DIR_REPLACED_IN_LAYER');
    // …also when the layer only filled a lower directory
    expect(codeOf(() => apply([dir('a')], [file('a/x'), file('a')]))).toBe('ERR_DIR_REPLACED_IN_LAYER');
  });

  it('never follows the last component: a file replaces a symlink, it does not write through it', () => {
    const fs = apply([dir('usr'), file('usr/x', 'target'), symlink('x', 'usr/x')], [file('x', 'replaced')]);
    expect(at(fs, 'x')).toMatchObject({ type: 'file', sha256: sha('replaced') });
    expect(at(fs, 'usr/x')?.sha256).toBe(sha('target'));
  });
});

describe('fs model: whiteouts', () => {
  it('deletes a lower file and a lower subtree with .wh.NAME', () => {
    const fs = apply([file('a'), dir('d'), file('d/x'), file('d/y/z')], [wh('.wh.a'), wh('.wh.d')]);
    expect(paths(fs)).toEqual(['.']);
  });

  it('never makes the whiteout itself a node, and ignores a whiteout of something missing', () => {
    const fs = apply([file('a')], [wh('.wh.nothing'), wh('missing/dir/.wh.x')]);
    expect(paths(fs)).toEqual(['.', 'a']);
  });

  it('keeps what the same layer wrote before its whiteout', () => {
    const fs = apply([file('a', 'low')], [file('a', 'high'), wh('.wh.a')]);
    expect(at(fs, 'a')?.sha256).toBe(sha('high'));
  });

  it('deletes the lower children of a directory the same layer re-declared, keeping the directory', () => {
    const fs = apply([dir('d'), file('d/low')], [dir('d', { mode: 0o700 }), file('d/high'), wh('.wh.d')]);
    expect(paths(fs)).toEqual(['.', 'd', 'd/high']);
    expect(at(fs, 'd')?.mode).toBe('0700');
  });

  it('turns a lower directory that holds same-layer entries into an implicit one', () => {
    const fs = apply([dir('d', { mode: 0o700, uid: 5, mtime: 7 }), file('d/low')], [file('d/high'), wh('.wh.d')]);
    expect(paths(fs)).toEqual(['.', 'd', 'd/high']);
    expect(at(fs, 'd')).toMatchObject({ mode: '0755', uid: 0, mtime: 0 });
  });

  it('lets a whiteout earlier in the layer delete, and a later entry create anew', () => {
    const fs = apply([dir('d', { mode: 0o700 }), file('d/low')], [wh('.wh.d'), file('d/high')]);
    expect(paths(fs)).toEqual(['.', 'd', 'd/high']);
    expect(at(fs, 'd')?.mode).toBe('0755');
  });

  it('hides lower descendants with an opaque marker, wherever it sits, and keeps the same layer', () => {
    const lower = [dir('d', { mode: 0o700 }), file('d/a'), dir('d/sub'), file('d/sub/b'), file('e')];
    for (const upper of [
      [dir('d', { mode: 0o750 }), wh('d/.wh..wh..opq'), file('d/new')],
      [dir('d', { mode: 0o750 }), file('d/new'), wh('d/.wh..wh..opq')],
    ]) {
      const fs = apply(lower, upper);
      expect(paths(fs)).toEqual(['.', 'd', 'd/new', 'e']);
      expect(at(fs, 'd')?.mode).toBe('0750');
    }
  });

  it('keeps the directory itself when an opaque marker comes without a directory entry', () => {
    const fs = apply([dir('d', { mode: 0o700 }), file('d/a')], [wh('d/.wh..wh..opq')]);
    expect(paths(fs)).toEqual(['.', 'd']);
    expect(at(fs, 'd')?.mode).toBe('0700');
  });

  it('ignores aufs metadata and refuses a bare .wh.', () => {
    const fs = apply([file('a')], [wh('.wh..wh.aufs'), dir('.wh..wh.plnk'), file('.wh..wh.plnk/1.2', 'p'), dir('.wh..wh.orph')]);
    expect(paths(fs)).toEqual(['.', 'a']);
    expect(codeOf(() => apply([wh('d/.wh.')]))).toBe('ERR_BARE_WHITEOUT');
  });

  it('resolves a whiteout parent through a symlink: lib64/.wh.libfoo.so deletes usr/lib/libfoo.so', () => {
    const fs = apply([dir('usr'), dir('usr/lib'), file('usr/lib/libfoo.so'), file('usr/lib/libbar.so'), symlink('lib64', 'usr/lib')], [wh('lib64/.wh.libfoo.so')]);
    expect(paths(fs)).toEqual(['.', 'lib64', 'usr', 'usr/lib', 'usr/lib/libbar.so']);
  });
});

describe('fs model: parents through symlinks', () => {
  it('puts bin/x at usr/bin/x when a lower layer made bin -> usr/bin, and bin stays a symlink', () => {
    const fs = apply([dir('usr'), dir('usr/bin'), symlink('bin', 'usr/bin')], [file('bin/x', 'x')]);
    expect(paths(fs)).toEqual(['.', 'bin', 'usr', 'usr/bin', 'usr/bin/x']);
    expect(at(fs, 'bin')).toMatchObject({ type: 'symlink', target: 'usr/bin' });
  });

  it('resolves through a symlink written earlier in the same layer', () => {
    const fs = apply([dir('usr/bin'), symlink('bin', 'usr/bin'), file('bin/x')]);
    expect(paths(fs)).toContain('usr/bin/x');
  });

  it('clamps absolute targets and .. at the root', () => {
    const fs = apply([symlink('a/abs', '/usr/lib'), symlink('a/up', '../../../../opt'), file('a/abs/x'), file('a/up/y')]);
    expect(paths(fs)).toEqual(['.', 'a', 'a/abs', 'a/up', 'opt', 'opt/y', 'usr', 'usr/lib', 'usr/lib/x']);
  });

  it('creates the missing directories a dangling symlink parent points at', () => {
    const fs = apply([symlink('bin', 'usr/bin')], [file('bin/x')]);
    expect(paths(fs)).toEqual(['.', 'bin', 'usr', 'usr/bin', 'usr/bin/x']);
    expect(at(fs, 'usr/bin')).toMatchObject({ type: 'dir', mode: '0755', mtime: 0 });
  });

  it('follows chains of symlinks, and refuses a loop after 40 hops', () => {
    const fs = apply([dir('real'), symlink('one', 'two'), symlink('two', 'real'), file('one/x')]);
    expect(paths(fs)).toContain('real/x');
    expect(codeOf(() => apply([symlink('p', 'q'), symlink('q', 'p'), file('p/x')]))).toBe('ERR_SYMLINK_LOOP');
  });

  it('refuses a file used as a parent, directly or through a symlink', () => {
    expect(codeOf(() => apply([file('f'), file('f/x')]))).toBe('ERR_NOT_A_DIRECTORY');
    expect(codeOf(() => apply([file('f'), symlink('s', 'f'), file('s/x')]))).toBe('ERR_NOT_A_DIRECTORY');
  });
});

describe('fs model: hardlinks', () => {
  it('shares the inode of the target, and lists the group on every member', () => {
    const fs = apply([file('a', 'data', { mode: 0o755, uid: 3 }), link('b', 'a')], [link('c', 'b')]);
    const group = ['a', 'b', 'c'];
    for (const p of group) expect(at(fs, p)).toMatchObject({ type: 'file', mode: '0755', uid: 3, sha256: sha('data'), hardlinks: group });
  });

  it('keeps the old content of a hardlink whose target a later layer overwrites', () => {
    const fs = apply([file('a', 'old'), link('b', 'a')], [file('a', 'new')]);
    expect(at(fs, 'a')).toMatchObject({ sha256: sha('new'), hardlinks: ['a'] });
    expect(at(fs, 'b')).toMatchObject({ sha256: sha('old'), hardlinks: ['b'] });
  });

  it('keeps a hardlink whose target a later layer deletes', () => {
    const fs = apply([file('a', 'old'), link('b', 'a'), link('c', 'a')], [wh('.wh.a')]);
    expect(paths(fs)).toEqual(['.', 'b', 'c']);
    expect(at(fs, 'b')).toMatchObject({ sha256: sha('old'), hardlinks: ['b', 'c'] });
  });

  it('links to the target as it stands at that moment, not as it ends up', () => {
    const fs = apply([file('a', 'v1')], [link('b', 'a'), file('a', 'v2')], [link('c', 'a')]);
    expect(at(fs, 'b')?.sha256).toBe(sha('v1'));
    expect(at(fs, 'c')).toMatchObject({ sha256: sha('v2'), hardlinks: ['a', 'c'] });
  });

  it('resolves the target parents through symlinks, without following the last component', () => {
    const fs = apply([dir('usr/lib'), file('usr/lib/l.so', 'L'), symlink('lib', 'usr/lib'), symlink('s', 'usr/lib/l.so')], [link('x', 'lib/l.so'), link('y', 's')]);
    expect(at(fs, 'x')).toMatchObject({ sha256: sha('L'), hardlinks: ['usr/lib/l.so', 'x'] });
    expect(at(fs, 'y')).toMatchObject({ type: 'symlink', hardlinks: ['s', 'y'] });
  });

  it('refuses a hardlink to a target that never existed, was deleted below, or is a directory', () => {
    expect(codeOf(() => apply([link('b', 'a')]))).toBe('ERR_HARDLINK_TARGET');
    expect(codeOf(() => apply([file('a')], [wh('.wh.a')], [link('b', 'a')]))).toBe('ERR_HARDLINK_TARGET');
    expect(codeOf(() => apply([dir('d'), link('b', 'd')]))).toBe('ERR_HARDLINK_TARGET');
  });

  it('takes the content of an aufs .wh..wh.plnk file for a hardlink into it', () => {
    const fs = apply([dir('.wh..wh.plnk'), file('.wh..wh.plnk/12.34', 'P'), link('a', '.wh..wh.plnk/12.34'), link('b', '.wh..wh.plnk/12.34')]);
    expect(paths(fs)).toEqual(['.', 'a', 'b']);
    expect(at(fs, 'a')).toMatchObject({ sha256: sha('P'), hardlinks: ['a', 'b'] });
  });
});

describe('fs model: attributes and snapshots', () => {
  it('keeps xattrs as raw bytes, devices and fifos', () => {
    const cap = Buffer.from('0100000200200000000000000000000000000000', 'hex');
    const fs = apply([
      file('ping', 'elf', { mode: 0o4755, pax: { 'SCHILY.xattr.security.capability': cap, atime: '1' } }),
      { name: 'dev/null', type: 'char', mode: 0o666, devmajor: 1, devminor: 3 },
      { name: 'dev/sda', type: 'block', mode: 0o660, devmajor: 8, devminor: 0 },
      { name: 'run/p', type: 'fifo', mode: 0o600 },
    ]);
    expect(at(fs, 'ping')).toMatchObject({ mode: '4755', xattrs: { 'security.capability': cap.toString('hex') } });
    expect(at(fs, 'dev/null')).toMatchObject({ type: 'char', device: '1,3' });
    expect(at(fs, 'dev/sda')).toMatchObject({ type: 'block', device: '8,0' });
    expect(at(fs, 'run/p')).toMatchObject({ type: 'fifo', mode: '0600' });
  });

  it('gives the same snapshot for a stack and for its flattened equivalent as one layer', () => {
    const stacked = apply(
      [dir('usr', { mode: 0o755, mtime: 1 }), dir('usr/bin', { mtime: 1 }), symlink('bin', 'usr/bin'), file('usr/bin/sh', 'sh'), link('usr/bin/ash', 'usr/bin/sh'), file('etc/passwd', 'root')],
      [file('bin/ls', 'ls'), file('usr/bin/sh', 'new sh'), wh('etc/.wh.passwd')],
    );
    const flat = apply([
      dir('usr', { mode: 0o755, mtime: 1 }),
      dir('usr/bin', { mtime: 1 }),
      symlink('bin', 'usr/bin'),
      file('usr/bin/ls', 'ls'),
      file('usr/bin/sh', 'new sh'),
      file('usr/bin/ash', 'sh'),
      dir('etc', { mtime: 0 }),
    ]);
    expect(snapshot(flat)).toEqual(snapshot(stacked));
  });

  it('clones with hardlinks intact and independent of the original', () => {
    const fs = apply([file('a', 'x'), link('b', 'a')]);
    const copy = cloneFs(fs);
    expect(lookup(copy, 'a')!.inode).toBe(lookup(copy, 'b')!.inode);
    applyLayer(copy, [wh('.wh.a')]);
    expect(paths(fs)).toEqual(['.', 'a', 'b']);
    expect(paths(copy)).toEqual(['.', 'b']);
  });

  it('reads a header of our tar reader as a model entry', () => {
    const header: TarHeader = {
      name: Buffer.from('a/b'),
      type: 'directory',
      mode: 0o2755,
      uid: 1,
      gid: 2,
      size: 0,
      mtime: 3,
      linkname: Buffer.alloc(0),
      uname: Buffer.from('u'),
      gname: Buffer.from('g'),
      devmajor: 0,
      devminor: 0,
      pax: [[Buffer.from('SCHILY.xattr.user.k'), Buffer.from([0xff])]],
    };
    const fs = apply([fixtureFromTar(header, Buffer.alloc(0))]);
    expect(at(fs, 'a/b')).toEqual({ path: 'a/b', type: 'dir', mode: '2755', uid: 1, gid: 2, mtime: 3, xattrs: { 'user.k': 'ff' } });
  });
});

/** Reads a tar with tar-stream, an independent reader, to check the fixture builder. */
async function readWithTarStream(tar: Buffer): Promise<Array<{ header: Record<string, unknown>; body: Buffer }>> {
  const out: Array<{ header: Record<string, unknown>; body: Buffer }> = [];
  const ex = extract();
  Readable.from([tar]).pipe(ex);
  for await (const entry of ex) {
    const chunks: Buffer[] = [];
    for await (const chunk of entry) chunks.push(chunk as Buffer);
    out.push({ header: entry.header as unknown as Record<string, unknown>, body: Buffer.concat(chunks) });
  }
  return out;
}

describe('tar fixture builder', () => {
  it('writes ustar that tar-stream reads back, long names and big ids through PAX', async () => {
    const long = `${'d'.repeat(120)}/${'f'.repeat(90)}`;
    const tar = buildTar([
      dir('etc', { mode: 0o755, mtime: 1_700_000_000, uname: 'root', gname: 'root' }),
      file('etc/hosts', 'x'.repeat(700), { uid: 1000, gid: 1001 }),
      symlink('bin', 'usr/bin'),
      link('etc/hosts2', 'etc/hosts'),
      file(long, 'long', { uid: 0o7777777 + 1, gid: 4_294_967_294 }),
      { name: 'dev/null', type: 'char', mode: 0o666, devmajor: 1, devminor: 3 },
      { name: 'p', type: 'fifo', mode: 0o600 },
      file('cap', '', { pax: { 'SCHILY.xattr.user.k': 'v' } }),
    ]);
    expect(tar.length % 512).toBe(0);
    const entries = await readWithTarStream(tar);
    expect(entries.map((e) => [e.header['name'], e.header['type']])).toEqual([
      ['etc/', 'directory'],
      ['etc/hosts', 'file'],
      ['bin', 'symlink'],
      ['etc/hosts2', 'link'],
      [long, 'file'],
      ['dev/null', 'character-device'],
      ['p', 'fifo'],
      ['cap', 'file'],
    ]);
    expect(entries[0]!.header).toMatchObject({ mode: 0o755, mtime: new Date(1_700_000_000_000), uname: 'root' });
    expect(entries[1]!.header).toMatchObject({ uid: 1000, gid: 1001, size: 700 });
    expect(entries[1]!.body.toString()).toBe('x'.repeat(700));
    expect(entries[2]!.header['linkname']).toBe('usr/bin');
    // tar-stream does not fold PAX ids into the header, so look at the records themselves
    expect(entries[4]!.header['pax']).toMatchObject({ uid: String(0o7777777 + 1), gid: '4294967294' });
    expect(entries[4]!.body.toString()).toBe('long');
    expect(entries[5]!.header).toMatchObject({ devmajor: 1, devminor: 3 });
    expect(entries[7]!.header['pax']).toMatchObject({ 'SCHILY.xattr.user.k': 'v' });
  });

  it('writes raw name bytes and PAX values byte for byte, and hostile typeflags as asked', () => {
    const name = Buffer.from([0x6e, 0xff, 0xfe]);
    const tar = buildTar(
      [
        { name: 'pax_global_header', type: 'file', rawTypeflag: 'g', content: paxRecords({ comment: 'hi' }) },
        file(name, 'x'),
        file(Buffer.concat([Buffer.alloc(101, 0x61), name]), 'y'),
      ],
      { endMarker: false },
    );
    const headers = listRawHeaders(tar);
    expect(headers.map((h) => h.typeflag)).toEqual(['g', '0', 'x', '0']);
    expect(headers[1]!.name).toEqual(name);
    const paxBody = tar.subarray(5 * 512, 5 * 512 + headers[2]!.size);
    expect(paxBody.includes(Buffer.concat([Buffer.from('path='), Buffer.alloc(101, 0x61), name, Buffer.from('\n')]))).toBe(true);
    expect(paxBody.includes(Buffer.from('hdrcharset=BINARY\n'))).toBe(true);
    expect(tar.length).toBe(8 * 512); // no end marker
    expect(paxRecords({ a: 'b' }).toString()).toBe('6 a=b\n');
    expect(paxRecords({ k: 'x'.repeat(4) }).toString()).toBe('9 k=xxxx\n');
  });
});
