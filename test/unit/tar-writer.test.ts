import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { afterAll, describe, expect, it } from 'vitest';
import { bodyLength, alignedData, alignSparse, isBlockAligned, encodeHeader, END_OF_ARCHIVE, paddingFor, paxKey, paxKeyIs, readTar } from '../../src/streams/tar/index.js';
import { parseNumber } from '../../src/streams/tar/layout.js';
import { encodeHeaderInto } from '../../src/streams/tar/writer.js';
import type { TarHeader } from '../../src/streams/tar/index.js';

// ---------------------------------------------------------------------------------------------
// Helpers

const work = mkdtempSync(join(tmpdir(), 'tar-writer-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let dirCount = 0;
function freshDir(): string {
  const dir = join(work, `d${dirCount++}`);
  mkdirSync(dir);
  return dir;
}

/** A header with defaults; the byte fields may be given as strings. */
type HeaderInit = Omit<Partial<TarHeader>, 'name' | 'linkname' | 'uname' | 'gname'> & {
  name: Buffer | string;
  linkname?: Buffer | string;
  uname?: Buffer | string;
  gname?: Buffer | string;
};

function header(fields: HeaderInit): TarHeader {
  const bytes = (v: Buffer | string | undefined): Buffer => (typeof v === 'string' ? Buffer.from(v) : (v ?? Buffer.alloc(0)));
  return {
    type: 'file',
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: 0,
    mtime: 1_700_000_000,
    devmajor: 0,
    devminor: 0,
    pax: [],
    ...fields,
    name: bytes(fields.name),
    linkname: bytes(fields.linkname),
    uname: bytes(fields.uname),
    gname: bytes(fields.gname),
  };
}

type Entry = [TarHeader, (Buffer | undefined)?];

function archive(entries: Entry[]): Buffer {
  const parts: Buffer[] = [];
  for (const [h, body] of entries) {
    parts.push(encodeHeader(h));
    if (body !== undefined) parts.push(body, paddingFor(body.length));
  }
  parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}

async function readAll(data: Buffer): Promise<Array<{ header: TarHeader; body: Buffer }>> {
  const out: Array<{ header: TarHeader; body: Buffer }> = [];
  async function* chunks(): AsyncGenerator<Buffer> {
    for (let i = 0; i < data.length; i += 4096) yield data.subarray(i, i + 4096);
  }
  for await (const entry of readTar(chunks())) {
    const body: Buffer[] = [];
    for await (const piece of entry.body()) body.push(piece);
    out.push({ header: entry.header, body: Buffer.concat(body) });
  }
  return out;
}

/** Splits a PAX payload into records, checking that each length prefix is exact. */
function paxRecords(payload: Buffer): Array<[string, Buffer]> {
  const records: Array<[string, Buffer]> = [];
  let pos = 0;
  while (pos < payload.length) {
    const space = payload.indexOf(0x20, pos);
    const length = Number(payload.toString('latin1', pos, space));
    const record = payload.subarray(pos, pos + length);
    expect(record[record.length - 1]).toBe(0x0a);
    const equals = record.indexOf(0x3d);
    records.push([record.toString('utf8', space - pos + 1, equals), Buffer.from(record.subarray(equals + 1, record.length - 1))]);
    pos += length;
  }
  return records;
}

/** The PAX `x` header, records and ustar block of one encoded header. */
function split(encoded: Buffer): { pax: Buffer | undefined; records: Array<[string, Buffer]>; ustar: Buffer } {
  const ustar = encoded.subarray(encoded.length - 512);
  if (encoded.length === 512) return { pax: undefined, records: [], ustar };
  const pax = encoded.subarray(0, 512);
  const size = parseInt(pax.toString('latin1', 124, 135), 8);
  return { pax, records: paxRecords(encoded.subarray(512, 512 + size)), ustar };
}

const field = (block: Buffer, offset: number, length: number): string => {
  const raw = block.subarray(offset, offset + length);
  const nul = raw.indexOf(0);
  return raw.toString('latin1', 0, nul < 0 ? length : nul);
};

/**
 * A PAX key as TarHeader.pax spells it: the one line to change when keys become bytes
 * (contract A: `paxKey` from pax-key.ts).
 */
const key = (text: string): TarHeader['pax'][number][0] => paxKey(text);

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');
const hex = (block: Buffer, offset: number, length: number): string => block.toString('hex', offset, offset + length);

// ---------------------------------------------------------------------------------------------

describe('encodeHeader', () => {
  it('writes the same bytes as GNU tar --format=ustar for every entry type', async () => {
    const dir = freshDir();
    const tree = join(dir, 'tree');
    mkdirSync(join(tree, 'sub'), { recursive: true });
    writeFileSync(join(tree, 'sub', 'file'), Buffer.alloc(1500, 'x'));
    execFileSync('chmod', ['4755', join(tree, 'sub', 'file')]);
    linkSync(join(tree, 'sub', 'file'), join(tree, 'hard'));
    symlinkSync('sub/file', join(tree, 'sym'));
    execFileSync('mknod', [join(tree, 'null'), 'c', '1', '3']);
    execFileSync('mkfifo', [join(tree, 'fifo')]);
    execFileSync('chmod', ['3777', join(tree, 'sub')]);
    const gnu = execFileSync('/usr/bin/tar', ['--format=ustar', '--sort=name', '--owner=alice:1000', '--group=users:100', '--mtime=@1700000000', '-cf', '-', 'tree'], { cwd: dir });
    const entries = await readAll(gnu);
    expect(entries.map((e) => `${e.header.type}:${e.header.name.toString()}`)).toEqual([
      'directory:tree',
      'fifo:tree/fifo',
      'file:tree/hard',
      'character-device:tree/null',
      'directory:tree/sub',
      'link:tree/sub/file',
      'symlink:tree/sym',
    ]);
    expect(entries.find((e) => e.header.type === 'directory' && e.header.name.toString() === 'tree/sub')?.header.mode).toBe(0o3777);
    const ours = archive(entries.map((e): Entry => [e.header, e.header.type === 'file' ? e.body : undefined]));
    // GNU tar pads the archive to its 10 KiB record; everything before is ours, byte for byte.
    expect(ours.equals(gnu.subarray(0, ours.length))).toBe(true);
    expect(gnu.subarray(ours.length).every((b) => b === 0)).toBe(true);
  });

  it('uses the ustar prefix for a long ASCII name that splits at a slash', () => {
    const name = `${'p'.repeat(150)}/${'n'.repeat(99)}`;
    const encoded = encodeHeader(header({ name }));
    expect(encoded.length).toBe(512);
    expect(field(encoded, 0, 100)).toBe('n'.repeat(99));
    expect(field(encoded, 345, 155)).toBe('p'.repeat(150));
  });

  it('writes the trailing slash of a directory and splits it like Go does', () => {
    expect(field(encodeHeader(header({ name: 'a/b', type: 'directory' })), 0, 100)).toBe('a/b/');
    const long = encodeHeader(header({ name: `${'p'.repeat(60)}/${'q'.repeat(60)}`, type: 'directory' }));
    expect(long.length).toBe(512);
    expect([field(long, 345, 155), field(long, 0, 100)]).toEqual(['p'.repeat(60), `${'q'.repeat(60)}/`]);
  });

  it('moves to PAX what does not fit, and writes big numbers in base-256 in the ustar field too', () => {
    const name = `${'a'.repeat(120)}/${'b'.repeat(120)}/${'c'.repeat(120)}`;
    const encoded = encodeHeader(
      header({
        name,
        type: 'symlink',
        linkname: 't'.repeat(101),
        uid: 0o7777777 + 1,
        gid: 4_294_967_294,
        mtime: -1,
        uname: 'u'.repeat(33),
        gname: 'g'.repeat(32),
      }),
    );
    const { pax, records, ustar } = split(encoded);
    expect(pax).toBeDefined();
    expect(records.map(([k, v]) => [k, v.toString()])).toEqual([
      ['path', name],
      ['uid', '2097152'],
      ['gid', '4294967294'],
      ['mtime', '-1'],
      ['linkpath', 't'.repeat(101)],
      ['uname', 'u'.repeat(33)],
    ]);
    // GNU base-256: the top bit marks it; what busybox (which ignores PAX uid) reads.
    expect(hex(ustar, 108, 8)).toBe('8000000000200000');
    expect(hex(ustar, 116, 8)).toBe('80000000fffffffe');
    expect(hex(ustar, 136, 12)).toBe('ffffffffffffffffffffffff'); // -1, two's complement
    expect(field(ustar, 297, 32)).toBe('g'.repeat(32)); // 32 bytes fit, without a NUL
    expect(field(ustar, 0, 100)).toBe(name.slice(0, 100)); // a hint for readers without PAX
  });

  it('writes a body of 8 GiB and more as a PAX size and a base-256 size field', () => {
    const { records, ustar } = split(encodeHeader(header({ name: 'huge', size: 0o77777777777 + 1 })));
    expect(records.map(([k, v]) => [k, v.toString()])).toEqual([['size', String(0o77777777777 + 1)]]);
    expect(hex(ustar, 124, 12)).toBe('800000000000000200000000');
    expect(split(encodeHeader(header({ name: 'max', size: 0o77777777777 }))).records).toEqual([]);
  });

  it('writes every number the way GNU tar reads it back, octal or base-256', () => {
    const noLabel = (): string => 'test';
    for (const mtime of [0, 1, 0o77777777777, 0o77777777777 + 1, -1, -2, -256, -(2 ** 40) - 5, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER]) {
      const { ustar } = split(encodeHeader(header({ name: 'f', mtime })));
      expect(parseNumber(ustar, 136, 12, 'mtime', noLabel)).toBe(mtime);
    }
    for (const id of [0, 0o7777777, 0o7777777 + 1, 3_000_000, 2 ** 32 - 1, Number.MAX_SAFE_INTEGER]) {
      const { ustar } = split(encodeHeader(header({ name: 'f', uid: id, gid: id })));
      expect([parseNumber(ustar, 108, 8, 'uid', noLabel), parseNumber(ustar, 116, 8, 'gid', noLabel)]).toEqual([id, id]);
    }
    const dev = split(encodeHeader(header({ name: 'd', type: 'block-device', devmajor: 0o10000000, devminor: 2 ** 32 })));
    expect([parseNumber(dev.ustar, 329, 8, 'devmajor', noLabel), parseNumber(dev.ustar, 337, 8, 'devminor', noLabel)]).toEqual([
      0o10000000,
      2 ** 32,
    ]);
    const listing = execFileSync('/usr/bin/tar', ['--numeric-owner', '-tvf', '-'], {
      input: archive([[header({ name: 'old', mtime: -86_400 * 365, uid: 3_000_000, gid: 3_000_001 })]]),
      env: { ...process.env, TZ: 'UTC' },
    }).toString();
    expect(listing).toMatch(/^-rw-r--r-- 3000000\/3000001 +0 1969-01-01 00:00 old\n$/);
  });

  it('writes large device numbers as SCHILY records', () => {
    const { records } = split(encodeHeader(header({ name: 'dev', type: 'block-device', devmajor: 0o10000000, devminor: 7 })));
    expect(records.map(([k, v]) => [k, v.toString()])).toEqual([['SCHILY.devmajor', '2097152']]);
  });

  it('writes a name or link target that is not UTF-8 as its bytes in ustar fields or GNU long-name records, never in PAX', () => {
    const short = split(encodeHeader(header({ name: Buffer.from([0x6e, 0xff, 0xfe]), pax: [[key('comment'), Buffer.from('c')]] })));
    expect(short.records).toEqual([['comment', Buffer.from('c')]]);
    expect(short.ustar.subarray(0, 4)).toEqual(Buffer.from([0x6e, 0xff, 0xfe, 0]));
    expect(encodeHeader(header({ name: Buffer.from([0x6e, 0xff, 0xfe]) })).length).toBe(512);

    const dir = Buffer.from('\xe9'.repeat(120), 'latin1');
    const base = Buffer.from('\xe0'.repeat(90), 'latin1');
    const splittable = encodeHeader(header({ name: Buffer.concat([dir, Buffer.from('/'), base]) }));
    expect(splittable.length).toBe(512);
    expect(splittable.subarray(345, 345 + 121)).toEqual(Buffer.concat([dir, Buffer.alloc(1)]));
    expect(splittable.subarray(0, 91)).toEqual(Buffer.concat([base, Buffer.alloc(1)]));

    const long = Buffer.from(`d/${'\xe9'.repeat(200)}`, 'latin1');
    const target = Buffer.from('\xe0'.repeat(150), 'latin1');
    const encoded = encodeHeader(header({ name: long, type: 'symlink', linkname: target }));
    // L block, name + NUL in one block, K block, target + NUL, then the entry: no PAX at all.
    expect(encoded.length).toBe(5 * 512);
    const [l, k, entry] = [encoded.subarray(0, 512), encoded.subarray(1024, 1536), encoded.subarray(2048)];
    expect([field(l, 0, 100), String.fromCharCode(l[156]!), field(l, 124, 12), field(l, 257, 8)]).toEqual([
      '././@LongLink',
      'L',
      (long.length + 1).toString(8).padStart(11, '0'),
      'ustar  ',
    ]);
    expect(encoded.subarray(512, 512 + long.length + 1)).toEqual(Buffer.concat([long, Buffer.alloc(1)]));
    expect([String.fromCharCode(k[156]!), encoded.subarray(1536, 1536 + target.length + 1)]).toEqual(['K', Buffer.concat([target, Buffer.alloc(1)])]);
    expect([entry.subarray(0, 100), entry.subarray(157, 257), field(entry, 257, 6)]).toEqual([long.subarray(0, 100), target.subarray(0, 100), 'ustar']);
    expect(encoded.includes('hdrcharset')).toBe(false);
  });

  it('keeps UTF-8 names that are not ASCII in PAX, as GNU tar and Go do', () => {
    const unicode = split(encodeHeader(header({ name: 'héllo-✓' })));
    expect(unicode.records).toEqual([['path', Buffer.from('héllo-✓')]]);
    expect(field(unicode.ustar, 0, 100)).toBe('hllo-');
    const link = split(encodeHeader(header({ name: 'l', type: 'symlink', linkname: 'cañon' })));
    expect(link.records).toEqual([['linkpath', Buffer.from('cañon')]]);
  });

  it('writes owner names that are not UTF-8 in the ustar field when they fit, and leaves them out when not', () => {
    const fits = split(encodeHeader(header({ name: 'f', uname: Buffer.from('us\xe9r', 'latin1'), gname: Buffer.from('gr\xfcppe', 'latin1') })));
    expect(fits.records).toEqual([]);
    expect([fits.ustar.subarray(265, 270), fits.ustar.subarray(297, 304)]).toEqual([
      Buffer.from('us\xe9r\0', 'latin1'),
      Buffer.from('gr\xfcppe\0', 'latin1'),
    ]);
    const tooLong = split(encodeHeader(header({ name: 'f', uid: 7, uname: Buffer.from('\xe9'.repeat(33), 'latin1'), gname: 'ünïcødé' })));
    expect(tooLong.records).toEqual([['gname', Buffer.from('ünïcødé')]]);
    expect(field(tooLong.ustar, 265, 32)).toBe('');
  });

  it("drops bsdtar's records GNU tar warns about that say nothing new: a LIBARCHIVE.xattr twin of a SCHILY.xattr, SCHILY.dev/ino/nlink", () => {
    const b64 = (text: string): Buffer => Buffer.from(Buffer.from(text).toString('base64').replace(/=+$/, ''));
    const pax: TarHeader['pax'] = [
      [key('SCHILY.dev'), Buffer.from('2049')],
      [key('SCHILY.ino'), Buffer.from('1234')],
      [key('SCHILY.nlink'), Buffer.from('1')],
      [key('LIBARCHIVE.xattr.user.only%20libarchive'), b64('value one')],
      [key('SCHILY.xattr.user.both'), Buffer.from('schily wins')],
      [key('LIBARCHIVE.xattr.user.both'), b64('libarchive copy')],
      [key('SCHILY.xattr.user.a b'), Buffer.from('spaced')],
      [key('LIBARCHIVE.xattr.user.a%20b'), b64('spaced')],
      [key('SCHILY.fflags'), Buffer.from('nodump')],
    ];
    const { records } = split(encodeHeader(header({ name: 'f', size: 1, pax })));
    // A LIBARCHIVE.xattr with no SCHILY twin stays: Docker and containerd do not apply it, so
    // it must not become a SCHILY.xattr that they would.
    expect(records.map(([k, v]) => `${k}=${v.toString()}`)).toEqual([
      `LIBARCHIVE.xattr.user.only%20libarchive=${b64('value one').toString()}`,
      'SCHILY.xattr.user.both=schily wins',
      'SCHILY.xattr.user.a b=spaced',
      'SCHILY.fflags=nodump',
    ]);
    const twins = [pax[0]!, pax[1]!, pax[4]!, pax[5]!];
    const tarball = archive([[header({ name: 'g', size: 1, pax: twins }), Buffer.from('g')]]);
    const dir = freshDir();
    const gnu = spawnSync('/usr/bin/tar', ['--xattrs', '--xattrs-include=*', '-xf', '-'], { cwd: dir, input: tarball });
    expect({ status: gnu.status, stderr: gnu.stderr.toString() }).toEqual({ status: 0, stderr: '' });
    expect(execFileSync('getfattr', ['--only-values', '-n', 'user.both', join(dir, 'g')]).toString()).toBe('schily wins');
    expect(split(encodeHeader(header({ name: 'h', pax: [pax[0]!] }))).pax).toBeUndefined(); // nothing left to say
  });

  it('turns a layer written by bsdtar into a tar GNU tar extracts without a warning, xattrs kept', async () => {
    const dir = freshDir();
    writeFileSync(join(dir, 'x'), 'hi');
    execFileSync('setfattr', ['-n', 'user.k', '-v', 'v', join(dir, 'x')]);
    const layer = execFileSync('/usr/bin/bsdtar', ['--format=pax', '-cf', '-', 'x'], { cwd: dir });
    expect(layer.includes('LIBARCHIVE.xattr.user.k=')).toBe(true); // beside SCHILY.xattr.user.k
    const entries = await readAll(layer);
    const out = freshDir();
    const gnu = spawnSync('/usr/bin/tar', ['--xattrs', '--xattrs-include=*', '-xf', '-'], {
      cwd: out,
      input: archive(entries.map((e): Entry => [e.header, e.body])),
    });
    expect({ status: gnu.status, stderr: gnu.stderr.toString() }).toEqual({ status: 0, stderr: '' });
    expect(execFileSync('getfattr', ['--only-values', '-n', 'user.k', join(out, 'x')]).toString()).toBe('v');
  });

  it('counts its own digits in every PAX record length', () => {
    // Value sizes around the 9/10 and 99/100 and 999/1000 boundaries.
    for (const size of [0, 1, 2, 3, 4, 5, 85, 86, 87, 88, 89, 90, 985, 986, 987, 988, 989]) {
      const value = Buffer.alloc(size, 0xff);
      const { records } = split(encodeHeader(header({ name: 'f', pax: [[key('k'), value]] })));
      expect(records).toEqual([['k', value]]);
    }
  });

  it('names its PAX header deterministically after the entry', () => {
    const one = encodeHeader(header({ name: `dir/${'x'.repeat(300)}`, mtime: 5 }));
    const two = encodeHeader(header({ name: `dir/${'x'.repeat(300)}`, mtime: 5 }));
    expect(one.equals(two)).toBe(true);
    const { pax } = split(one);
    expect(field(pax!, 0, 100)).toBe(`dir/PaxHeaders.0/${'x'.repeat(300)}`.slice(0, 100));
    expect(pax![156]).toBe(0x78);
    expect([field(pax!, 100, 8), field(pax!, 108, 8), field(pax!, 136, 12), field(pax!, 257, 6), field(pax!, 263, 2)]).toEqual([
      '0000644',
      '0000000',
      '00000000000',
      'ustar',
      '00',
    ]);
  });

  it('keeps a fractional mtime record from the reader instead of generating one', () => {
    const { records, ustar } = split(encodeHeader(header({ name: 'f', mtime: -3, pax: [[key('mtime'), Buffer.from('-2.5')]] })));
    expect(records).toEqual([['mtime', Buffer.from('-2.5')]]);
    expect(hex(ustar, 136, 12)).toBe('fffffffffffffffffffffffd');
  });

  it('writes only the permission, setuid, setgid and sticky bits', () => {
    expect(field(encodeHeader(header({ name: 'f', mode: 0o107755 })), 100, 8)).toBe('0007755');
  });

  it('refuses headers it cannot write faithfully', () => {
    expect(() => encodeHeader(header({ name: 'a\0b' }))).toThrow(RangeError);
    expect(() => encodeHeader(header({ name: 'd', type: 'directory', size: 1 }))).toThrow(RangeError);
    expect(() => encodeHeader(header({ name: 'f', uid: -1 }))).toThrow(RangeError);
    expect(() => encodeHeader(header({ name: 'f', mtime: 1.5 }))).toThrow(RangeError);
    expect(() => encodeHeader(header({ name: 'f', pax: [[key('a=b'), Buffer.from('c')]] }))).toThrow(RangeError);
  });
});

describe('sparse files (PAX sparse format 1.0)', () => {
  it('writes the same records, ustar fields and map as GNU tar --sparse --format=posix', () => {
    const dir = freshDir();
    const path = join(dir, 'sparse');
    execFileSync('truncate', ['-s', '10M', path]);
    const data = [Buffer.from('hello'), Buffer.alloc(6000, 'x')];
    execFileSync('dd', ['of=' + path, 'bs=1', `seek=${1024 * 1024}`, 'conv=notrunc', 'status=none'], { input: data[0] });
    execFileSync('dd', ['of=' + path, 'bs=1', `seek=${5 * 1024 * 1024}`, 'conv=notrunc', 'status=none'], { input: data[1] });
    const gnu = execFileSync('/usr/bin/tar', [
      '--sparse',
      '--sparse-version=1.0',
      '--format=posix',
      '--pax-option=delete=atime,delete=ctime',
      '--mtime=@1700000000',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '-cf',
      '-',
      'sparse',
    ], { cwd: dir });
    // x header, its records, the ustar header, the map, then the data.
    const gnuMap = gnu.subarray(1536, 2048);
    const numbers = gnuMap.toString('latin1').split('\n').slice(0, -1).map(Number);
    const segments: Array<[number, number]> = [];
    for (let i = 1; i < numbers.length; i += 2) segments.push([numbers[i]!, numbers[i + 1]!]);
    expect(segments.at(-1)).toEqual([10 * 1024 * 1024, 0]); // GNU marks the final hole
    const sparse = header({ name: 'sparse', size: 10 * 1024 * 1024, sparse: { segments } });
    const ours = encodeHeader(sparse);
    expect(ours.length).toBe(4 * 512);
    const { records } = split(ours.subarray(0, 1536));
    expect(records.map(([k, v]) => `${k}=${v.toString()}`)).toEqual([
      'GNU.sparse.major=1',
      'GNU.sparse.minor=0',
      'GNU.sparse.name=sparse',
      `GNU.sparse.realsize=${10 * 1024 * 1024}`,
    ]);
    expect(ours.subarray(512, 1024)).toEqual(gnu.subarray(512, 1024));
    const [ourBlock, gnuBlock] = [ours.subarray(1024, 1536), gnu.subarray(1024, 1536)];
    // GNU puts its process id in the name: ours is a function of the header.
    expect(field(ourBlock, 0, 100)).toBe('./GNUSparseFile.0/sparse');
    expect(field(gnuBlock, 0, 100)).toMatch(/^\.\/GNUSparseFile\.\d+\/sparse$/);
    expect(ourBlock.subarray(100, 148)).toEqual(gnuBlock.subarray(100, 148));
    expect(ourBlock.subarray(156)).toEqual(gnuBlock.subarray(156));
    expect(ours.subarray(1536)).toEqual(gnuMap);
    // The same map without GNU's final empty segment gives the same bytes.
    expect(encodeHeader({ ...sparse, sparse: { segments: segments.slice(0, -1) } })).toEqual(ours);
    expect(bodyLength(sparse)).toBe(segments.reduce((sum, [, length]) => sum + length, 0));
  });

  it('is extracted by GNU tar and bsdtar under a name that is not UTF-8, holes kept', () => {
    const name = Buffer.from('sp\xe4rse', 'latin1');
    const segments: Array<[number, number]> = [[8192, 4096], [65536, 100]];
    const stored = Buffer.concat([Buffer.alloc(4096, 'a'), Buffer.alloc(100, 'b')]);
    const h = header({ name, size: 1024 * 1024, sparse: { segments } });
    const encoded = encodeHeader(h);
    expect(encoded.includes('GNU.sparse.name')).toBe(false); // a PAX text field must be UTF-8
    const tarball = Buffer.concat([encoded, stored, paddingFor(stored.length), END_OF_ARCHIVE]);
    const expected = Buffer.alloc(1024 * 1024);
    stored.copy(expected, 8192, 0, 4096);
    stored.copy(expected, 65536, 4096);
    for (const tool of ['/usr/bin/tar', '/usr/bin/bsdtar']) {
      const dir = freshDir();
      const result = spawnSync(tool, ['-xf', '-'], { cwd: dir, input: tarball });
      expect({ tool, status: result.status, stderr: result.stderr.toString() }).toEqual({ tool, status: 0, stderr: '' });
      const path = Buffer.from(`${dir}/sp\xe4rse`, 'latin1');
      expect(readdirSync(dir, { encoding: 'buffer' })).toEqual([name]);
      expect(readFileSync(path).equals(expected)).toBe(true);
      expect(lstatSync(path).blocks * 512).toBeLessThan(64 * 1024);
    }
  });

  it('says how many body bytes follow each header', () => {
    expect(bodyLength(header({ name: 'f', size: 1234 }))).toBe(1234);
    expect(bodyLength(header({ name: 'f', size: 1 << 20, sparse: { segments: [[0, 512], [4096, 10]] } }))).toBe(522);
    expect(bodyLength(header({ name: 'f', size: 1 << 20, sparse: { segments: [] } }))).toBe(0);
    expect(bodyLength(header({ name: 'd', type: 'directory' }))).toBe(0);
    expect(bodyLength(header({ name: 'l', type: 'link', linkname: 'f' }))).toBe(0);
  });

  it('writes a file that is one hole with an empty map ending at its size', () => {
    const encoded = encodeHeader(header({ name: 'empty', size: 5000, sparse: { segments: [] } }));
    expect(encoded.subarray(encoded.length - 512).toString('latin1').replace(/\0+$/, '')).toBe('1\n5000\n0\n');
  });

  it('refuses a map whose data GNU tar would read from other places', () => {
    // GNU tar reads each segment's data from a block boundary: only the last may end mid-block.
    expect(isBlockAligned({ segments: [[0, 512], [4096, 100]] })).toBe(true);
    expect(isBlockAligned({ segments: [[0, 100], [4096, 512]] })).toBe(false);
    expect(isBlockAligned({ segments: [[0, 1024], [4096, 100], [8192, 0]] })).toBe(true);
    expect(() => encodeHeader(header({ name: 'f', size: 8192, sparse: { segments: [[0, 100], [4096, 512]] } }))).toThrow(RangeError);
    expect(() => encodeHeader(header({ name: 'f', size: 8192, sparse: { segments: [[4096, 512], [0, 512]] } }))).toThrow(RangeError);
    expect(() => encodeHeader(header({ name: 'f', size: 8192, sparse: { segments: [[8000, 512]] } }))).toThrow(RangeError);
    expect(() => encodeHeader(header({ name: 'd', type: 'directory', sparse: { segments: [] } }))).toThrow(RangeError);
  });
});

describe('encodeHeaderInto', () => {
  it('writes the same block as encodeHeader for headers that fit ustar, and nothing for the others', () => {
    const fits = [
      header({ name: 'a/b/c', size: 12345, uid: 1000, gid: 100, uname: 'alice', gname: 'users', mode: 0o4755 }),
      header({ name: 'dir', type: 'directory', mode: 0o1777 }),
      header({ name: 'l', type: 'symlink', linkname: '../x'.repeat(25) }),
      header({ name: 'n', type: 'character-device', devmajor: 0o7777777, devminor: 3 }),
      header({ name: 'x'.repeat(100), mtime: 0o77777777777, uid: 0o7777777 }),
    ];
    const out = Buffer.alloc(1024, 0xaa);
    for (const h of fits) {
      expect(encodeHeaderInto(h, out, 256)).toBe(true);
      expect(out.subarray(256, 768)).toEqual(encodeHeader(h));
    }
    const others = [
      header({ name: 'f', size: 1 << 20, sparse: { segments: [[0, 512]] } }),
      header({ name: 'f', uid: 0o7777777 + 1 }),
      header({ name: 'f', mtime: -1 }),
      header({ name: Buffer.from([0xff]) }),
      header({ name: 'x'.repeat(101) }),
      header({ name: 'f', pax: [[key('comment'), Buffer.from('c')]] }),
    ];
    for (const h of others) {
      const before = Buffer.from(out);
      expect(encodeHeaderInto(h, out, 256)).toBe(false);
      expect(out).toEqual(before);
    }
  });
});

describe('paddingFor and END_OF_ARCHIVE', () => {
  it('pads to the next 512-byte boundary with zeros', () => {
    expect([0, 1, 511, 512, 513, 1024, 2 ** 33 + 3].map((n) => paddingFor(n).length)).toEqual([0, 511, 1, 0, 511, 0, 509]);
    expect(paddingFor(1).every((b) => b === 0)).toBe(true);
    expect(END_OF_ARCHIVE.length).toBe(1024);
    expect(END_OF_ARCHIVE.every((b) => b === 0)).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// Other readers of what we write

const capability = Buffer.from([
  0x01, 0x00, 0x00, 0x02, // revision 2, effective
  0x00, 0x04, 0x00, 0x00, // permitted: cap_net_bind_service
  0xff, 0xff, 0xff, 0xff, // inheritable: capabilities 0..31
  0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00,
]);
const nonUtf8 = Buffer.from([0x62, 0x69, 0x6e, 0xff, 0xfe]); // "bin\xff\xfe"
const over100 = `${'l'.repeat(60)}/${'m'.repeat(60)}`;
const over255 = `${'x'.repeat(100)}/${'y'.repeat(100)}/${'z'.repeat(100)}`;
const target200 = `${'t'.repeat(99)}/${'u'.repeat(100)}`;

/** Every feature the DESIGN asks of the writer, in one archive. */
function kitchenSink(): Entry[] {
  return [
    [header({ name: 'root', type: 'directory', mode: 0o755 })],
    [header({ name: `root/${over100}`, size: 3, uid: 262_144, gid: 262_144 }), Buffer.from('100')],
    [header({ name: `root/${over255}`, size: 3, uid: 2_097_152, gid: 2_097_152 }), Buffer.from('255')],
    [header({ name: Buffer.concat([Buffer.from('root/'), nonUtf8]), size: 4, uid: 4_294_967_294, gid: 4_294_967_294 }), Buffer.from('bin!')],
    [header({ name: 'root/ünïcødé-✓', size: 7, mode: 0o640, uname: 'alice', gname: 'users', uid: 1000, gid: 100 }), Buffer.from('unicode')],
    [header({ name: 'root/setuid', size: 1, mode: 0o4755 }), Buffer.from('s')],
    [header({ name: 'root/setgid', size: 1, mode: 0o2755 }), Buffer.from('g')],
    [header({ name: 'root/sticky', type: 'directory', mode: 0o1777 })],
    [header({ name: 'root/symlink', type: 'symlink', mode: 0o777, linkname: target200 })],
    [header({ name: 'root/hardlink', type: 'link', linkname: 'root/setuid' })],
    [header({ name: 'root/null', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3 })],
    [header({ name: 'root/fifo', type: 'fifo', mode: 0o600 })],
    [header({ name: 'root/cap', size: 4, mode: 0o755, pax: [[key('SCHILY.xattr.security.capability'), capability]] }), Buffer.from('caps')],
  ];
}

describe('what our writer produces, read by others', () => {
  it('round-trips through our reader, byte for byte', async () => {
    const entries = kitchenSink();
    const read = await readAll(archive(entries));
    expect(read.length).toBe(entries.length);
    for (const [i, [h, body]] of entries.entries()) {
      expect(read[i]!.header).toEqual(h);
      expect(read[i]!.body.equals(body ?? Buffer.alloc(0))).toBe(true);
    }
  });

  it('is read by tar-stream (ASCII names, ids that fit ustar)', async () => {
    // tar-stream decodes PAX paths as UTF-8 and ignores PAX uid/gid (DESIGN.md §3).
    const entries = kitchenSink().filter(
      ([h]) => /^[\x20-\x7e]*$/.test(h.name.toString('latin1')) && h.pax.length === 0 && h.uid <= 0o7777777,
    );
    expect(entries.length).toBe(9);
    const extract = tar.extract();
    Readable.from([archive(entries)]).pipe(extract);
    const seen: Array<Record<string, unknown>> = [];
    for await (const entry of extract) {
      const chunks: Buffer[] = [];
      for await (const chunk of entry) chunks.push(chunk as Buffer);
      const { name, type, mode, uid, gid, size, linkname, devmajor, devminor, mtime } = entry.header;
      seen.push({ name, type, mode, uid, gid, size, linkname, devmajor, devminor, mtime: mtime?.getTime(), body: Buffer.concat(chunks).toString() });
    }
    expect(seen).toEqual(
      entries.map(([h, body]) => ({
        name: h.name.toString() + (h.type === 'directory' ? '/' : ''),
        type: h.type,
        mode: h.mode,
        uid: h.uid,
        gid: h.gid,
        size: h.type === 'file' ? h.size : 0,
        linkname: h.type === 'link' || h.type === 'symlink' ? h.linkname.toString() : null,
        devmajor: h.devmajor,
        devminor: h.devminor,
        mtime: h.mtime * 1000,
        body: body?.toString() ?? '',
      })),
    );
  });

  it('is listed by GNU tar and bsdtar with the right names, owners, modes and link targets', () => {
    const dir = freshDir();
    writeFileSync(join(dir, 'sink.tar'), archive(kitchenSink()));
    const gnu = execFileSync('/usr/bin/tar', ['--numeric-owner', '-tvf', 'sink.tar'], { cwd: dir, env: { ...process.env, LC_ALL: 'C.UTF-8' } });
    const bsd = execFileSync('/usr/bin/bsdtar', ['--numeric-owner', '-tvf', 'sink.tar'], { cwd: dir, env: { ...process.env, LC_ALL: 'C.UTF-8' } });
    for (const listing of [gnu, bsd]) {
      const text = listing.toString('latin1');
      // GNU: "mode uid/gid size", bsdtar: "mode nlink uid gid size".
      const owners = (id: number): RegExp => new RegExp(`-rw-r--r-- +(0 +)?${id}[/ ]+${id} `);
      expect(text).toMatch(owners(262_144));
      expect(text).toMatch(owners(2_097_152));
      expect(text).toMatch(owners(4_294_967_294));
      expect(text).toMatch(/-rwsr-xr-x .*root\/setuid/);
      expect(text).toMatch(/-rwxr-sr-x .*root\/setgid/);
      expect(text).toMatch(/drwxrwxrwt .*root\/sticky/);
      expect(text).toMatch(/crw-rw-rw- .* 1,\s*3 .*root\/null/);
      expect(text).toMatch(/prw------- .*root\/fifo/);
      expect(text).toContain(`root/${over100}`);
      expect(text).toContain(`root/${over255}`);
      expect(text).toContain(`root/symlink -> ${target200}`);
      expect(text).toMatch(/root\/hardlink link to root\/setuid/);
      expect(listing.includes(Buffer.from('ünïcødé-✓'))).toBe(true);
      // Both escape the bytes that are not UTF-8, in octal: the raw bytes came through.
      expect(text).toContain('root/bin\\377\\376');
    }
  });

  it('is extracted by GNU tar and bsdtar with the same bytes, modes, owners, links, devices and xattr', async () => {
    for (const tool of ['/usr/bin/tar', '/usr/bin/bsdtar']) {
      const dir = freshDir();
      writeFileSync(join(dir, 'sink.tar'), archive(kitchenSink()));
      mkdirSync(join(dir, 'out'));
      const xattrs = tool === '/usr/bin/tar' ? ['--xattrs', '--xattrs-include=*'] : ['--xattrs'];
      execFileSync(tool, [...xattrs, '--numeric-owner', '-xpf', '../sink.tar'], { cwd: join(dir, 'out') });
      const root = join(dir, 'out', 'root');
      const names = readdirSync(root, { encoding: 'buffer' });
      expect(names.some((n) => n.equals(nonUtf8))).toBe(true);
      expect(readFileSync(Buffer.from(`${root}/${nonUtf8.toString('latin1')}`, 'latin1')).toString()).toBe('bin!');
      const nonUtf8Stat = lstatSync(Buffer.from(`${root}/${nonUtf8.toString('latin1')}`, 'latin1'));
      expect([nonUtf8Stat.uid, nonUtf8Stat.gid]).toEqual([4_294_967_294, 4_294_967_294]);
      expect(readFileSync(join(root, over255)).toString()).toBe('255');
      expect(lstatSync(join(root, over255)).uid).toBe(2_097_152);
      expect(lstatSync(join(root, over100)).gid).toBe(262_144);
      expect(readFileSync(join(root, 'ünïcødé-✓')).toString()).toBe('unicode');
      expect(lstatSync(join(root, 'setuid')).mode & 0o7777).toBe(0o4755);
      expect(lstatSync(join(root, 'setgid')).mode & 0o7777).toBe(0o2755);
      expect(lstatSync(join(root, 'sticky')).mode & 0o7777).toBe(0o1777);
      expect(readlinkSync(join(root, 'symlink'))).toBe(target200);
      expect(lstatSync(join(root, 'hardlink')).ino).toBe(lstatSync(join(root, 'setuid')).ino);
      const device = lstatSync(join(root, 'null'));
      expect([device.isCharacterDevice(), device.rdev]).toEqual([true, (1 << 8) | 3]);
      expect(lstatSync(join(root, 'fifo')).isFIFO()).toBe(true);
      // The xattr, as the filesystem now holds it, archived again by GNU tar and read by us.
      utimesSync(join(root, 'cap'), 1, 1);
      const again = execFileSync('/usr/bin/tar', ['--xattrs', '--xattrs-include=*', '--format=posix', '-cf', '-', 'cap'], { cwd: root });
      const [cap] = await readAll(again);
      const stored = cap!.header.pax.find(([k]) => paxKeyIs(k, 'SCHILY.xattr.security.capability'));
      expect(stored?.[1].equals(capability)).toBe(true);
      expect(execFileSync('/usr/sbin/getcap', [join(root, 'cap')]).toString()).toContain('cap_net_bind_service');
    }
  });

  it('gives the same sha256 for the same entries', () => {
    expect(sha256(archive(kitchenSink()))).toBe(sha256(archive(kitchenSink())));
  });
});

describe('sparse maps GNU tar would misread', () => {
  it('grow each data segment but the last over the hole after it to whole blocks, merging where they meet', () => {
    expect(alignSparse({ segments: [[0, 5], [4096, 510], [10_000, 3], [10_100, 0]] }).segments).toEqual([
      [0, 512],
      [4096, 512],
      [10_000, 3],
    ]);
    expect(alignSparse({ segments: [[0, 5], [300, 10], [2000, 1]] }).segments).toEqual([
      [0, 512],
      [2000, 1],
    ]);
    expect(alignSparse({ segments: [[0, 1024], [4096, 7]] }).segments).toEqual([
      [0, 1024],
      [4096, 7],
    ]);
  });

  it('keep the file the same: the aligned data holds zeros where a segment grew, and GNU tar and bsdtar extract it right', async () => {
    const size = 64 * 1024;
    const from = { segments: [[0, 5], [300, 10], [9000, 700], [60_000, 3]] as Array<[number, number]> };
    const stored = Buffer.from('abcde0123456789' + 'x'.repeat(700) + 'end');
    const whole = Buffer.alloc(size);
    let at = 0;
    for (const [offset, length] of from.segments) {
      stored.copy(whole, offset, at, at + length);
      at += length;
    }
    const to = alignSparse(from);
    expect(isBlockAligned(to)).toBe(true);
    const chunks: Buffer[] = [];
    async function* pieces(): AsyncGenerator<Buffer> {
      for (let i = 0; i < stored.length; i += 7) yield stored.subarray(i, i + 7);
    }
    for await (const chunk of alignedData(pieces(), from, to)) chunks.push(Buffer.from(chunk));
    const data = Buffer.concat(chunks);
    expect(data.length).toBe(bodyLength(header({ name: 's', size, sparse: to })));
    const tarball = archive([[header({ name: 's', size, sparse: to }), data]]);
    for (const tool of ['/usr/bin/tar', '/usr/bin/bsdtar']) {
      const dir = freshDir();
      const run = spawnSync(tool, ['-xf', '-'], { cwd: dir, input: tarball });
      expect({ tool, status: run.status, stderr: run.stderr.toString() }).toEqual({ tool, status: 0, stderr: '' });
      expect(readFileSync(join(dir, 's')).equals(whole), tool).toBe(true);
    }
  });
});
