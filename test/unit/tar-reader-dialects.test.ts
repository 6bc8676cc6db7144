/**
 * Tar dialects our reader must read exactly as Go's archive/tar (what Docker and containerd
 * apply layers with) and libarchive do. Every archive is built here block by block, so each
 * test shows the bytes it is about.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MalformedArchiveError } from '../../src/errors.js';
import { encodeHeader, paxKey, paxKeyIs, readTar } from '../../src/streams/tar/index.js';
import type { TarHeader, TarWarning } from '../../src/streams/tar/index.js';

// ---------------------------------------------------------------------------------------------
// Building archives by hand

type Layout = 'v7' | 'ustar' | 'gnu';

interface RawHeader {
  name: string | Buffer;
  /** The typeflag byte, as a one-character string (`'\0'`, `'0'`, `'x'`, ...). */
  flag: string;
  size?: number;
  layout?: Layout;
  linkname?: string;
}

/** One header block with a correct checksum. */
function headerBlock({ name, flag, size = 0, layout = 'ustar', linkname = '' }: RawHeader): Buffer {
  const block = Buffer.alloc(512);
  (typeof name === 'string' ? Buffer.from(name) : name).copy(block, 0, 0, 100);
  block.write('0000644\0', 100, 'latin1');
  block.write('0000000\0', 108, 'latin1');
  block.write('0000000\0', 116, 'latin1');
  block.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  block.write('14000000000\0', 136, 'latin1');
  block.write(flag, 156, 'latin1');
  block.write(linkname, 157, 'latin1');
  if (layout === 'ustar') block.write('ustar\x0000', 257, 'latin1');
  if (layout === 'gnu') block.write('ustar  \0', 257, 'latin1');
  if (layout !== 'v7') {
    block.write('root', 265, 'latin1');
    block.write('root', 297, 'latin1');
  }
  fixChecksum(block);
  return block;
}

function fixChecksum(block: Buffer): void {
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
}

/** `bytes` padded with zeros to a whole number of blocks. */
function blocks(bytes: Buffer | string): Buffer {
  const data = typeof bytes === 'string' ? Buffer.from(bytes) : bytes;
  return Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}

/** A PAX payload: `"%d key=value\n"` records, key and value as given (bytes or text). */
function paxPayload(records: Array<[Buffer | string, Buffer | string]>): Buffer {
  return Buffer.concat(
    records.map(([k, v]) => {
      const key = typeof k === 'string' ? Buffer.from(k) : k;
      const value = typeof v === 'string' ? Buffer.from(v) : v;
      const body = key.length + value.length + 3;
      let length = body + String(body).length;
      if (String(length).length !== String(length - body).length) length = body + String(length).length;
      return Buffer.concat([Buffer.from(`${length} `), key, Buffer.from('='), value, Buffer.from('\n')]);
    }),
  );
}

/** An extension header (`x`, `g`, `X`, `L`, `K`, ...) with its payload. */
function extension(flag: string, payload: Buffer | string): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  return Buffer.concat([headerBlock({ name: 'ext', flag, size: data.length }), blocks(data)]);
}

/** A regular file entry with its body. */
function file(name: string, body: string, layout: Layout = 'ustar'): Buffer {
  return Buffer.concat([headerBlock({ name, flag: '0', size: body.length, layout }), blocks(body)]);
}

const END = Buffer.alloc(1024);

interface Read {
  header: TarHeader;
  ordinal: number;
  body: string;
}

async function* chunks(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

async function read(data: Buffer, chunkSize = 700): Promise<{ entries: Read[]; warnings: TarWarning[] }> {
  const entries: Read[] = [];
  const warnings: TarWarning[] = [];
  for await (const entry of readTar(chunks(data, chunkSize), { onWarning: (w) => warnings.push(w) })) {
    const parts: Buffer[] = [];
    for await (const part of entry.body()) parts.push(part);
    entries.push({ header: entry.header, ordinal: entry.ordinal, body: Buffer.concat(parts).toString('latin1') });
  }
  return { entries, warnings };
}

async function rejection(data: Buffer): Promise<Error> {
  try {
    await read(data);
  } catch (error) {
    expect(error).toBeInstanceOf(MalformedArchiveError);
    return error as Error;
  }
  throw new Error('expected the archive to be rejected');
}

const summary = (entries: Read[]): Array<[number, string, string, string]> =>
  entries.map((e) => [e.ordinal, e.header.name.toString('latin1'), e.header.type, e.body]);

// ---------------------------------------------------------------------------------------------

describe('old-style directories (a regular-file type and a trailing slash)', () => {
  for (const layout of ['v7', 'gnu', 'ustar'] as const) {
    it(`reads a ${layout} '\\0' entry named "d/" as a directory with no data, whatever its size field says`, async () => {
      // The writer put the directory's st_size in the header but wrote no data, as old tars
      // did: the next header follows at once. Go, libarchive and Python read it so.
      const data = Buffer.concat([headerBlock({ name: 'd/', flag: '\0', size: 4096, layout }), file('d/f', 'inside', layout), END]);
      const { entries } = await read(data);
      expect(summary(entries)).toEqual([
        [0, 'd', 'directory', ''],
        [1, 'd/f', 'file', 'inside'],
      ]);
      expect(entries[0]!.header.size).toBe(0);
    });
  }

  it("skips the data of a '0' entry named \"d/\" (Go, Python and GNU tar read it as data) and calls it a directory", async () => {
    const data = Buffer.concat([headerBlock({ name: 'd/', flag: '0', size: 600, layout: 'v7' }), blocks('x'.repeat(600)), file('d/f', 'after', 'v7'), END]);
    const { entries } = await read(data);
    expect(summary(entries)).toEqual([
      [0, 'd', 'directory', ''],
      [1, 'd/f', 'file', 'after'],
    ]);
  });

  it("takes the trailing slash from a PAX path on a '\\0' entry too", async () => {
    const data = Buffer.concat([
      extension('x', paxPayload([['path', 'long/dir/']])),
      headerBlock({ name: 'short', flag: '\0', size: 512 }),
      file('long/dir/f', 'ok'),
      END,
    ]);
    const { entries } = await read(data);
    expect(summary(entries)).toEqual([
      [0, 'long/dir', 'directory', ''],
      [1, 'long/dir/f', 'file', 'ok'],
    ]);
  });
});

describe('consecutive extension headers', () => {
  it('applies only the last of consecutive x headers (Go, libarchive, GNU tar)', async () => {
    const data = Buffer.concat([
      extension('x', paxPayload([['path', 'first'], ['SCHILY.xattr.user.first', '1'], ['uid', '7']])),
      extension('x', paxPayload([['path', 'second'], ['SCHILY.xattr.user.second', '2']])),
      file('ustar-name', 'body'),
      END,
    ]);
    const { entries } = await read(data);
    expect(summary(entries)).toEqual([[0, 'second', 'file', 'body']]);
    expect(entries[0]!.header.uid).toBe(0);
    expect(entries[0]!.header.pax.map(([k, v]) => [k.toString(), v.toString()])).toEqual([['SCHILY.xattr.user.second', '2']]);
  });

  it('applies only the last of consecutive L headers, and of consecutive K headers', async () => {
    const data = Buffer.concat([
      extension('L', 'first-name\0'),
      extension('L', 'second-name\0'),
      extension('K', 'first-target\0'),
      extension('K', 'second-target\0'),
      headerBlock({ name: 'short', flag: '2', linkname: 'short-target' }),
      END,
    ]);
    const { entries } = await read(data);
    expect(entries.map((e) => [e.header.name.toString(), e.header.type, e.header.linkname.toString()])).toEqual([
      ['second-name', 'symlink', 'second-target'],
    ]);
  });

  it('keeps the header name under an empty L header, as Go does', async () => {
    const data = Buffer.concat([extension('L', 'long-name\0'), extension('L', '\0'), file('own-name', 'x'), END]);
    const { entries } = await read(data);
    expect(summary(entries)).toEqual([[0, 'own-name', 'file', 'x']]);
  });

  it('reads a Solaris X header as a PAX x header (GNU tar, libarchive, Python)', async () => {
    const data = Buffer.concat([extension('X', paxPayload([['path', 'renamed'], ['SCHILY.xattr.user.k', 'v']])), file('meta-name', 'abc'), END]);
    const { entries, warnings } = await read(data);
    expect(summary(entries)).toEqual([[0, 'renamed', 'file', 'abc']]);
    expect(entries[0]!.header.pax.map(([k, v]) => [k.toString(), v.toString()])).toEqual([['SCHILY.xattr.user.k', 'v']]);
    expect(warnings).toEqual([]);
  });
});

describe('global headers and the end of the archive', () => {
  it('reads a g header followed by the end marker as an empty archive', async () => {
    const data = Buffer.concat([extension('g', paxPayload([['comment', 'empty tree']])), END]);
    expect(await read(data)).toEqual({ entries: [], warnings: [] });
  });

  it('reads what git archive writes for a commit of an empty tree as an empty archive', async () => {
    const repo = mkdtempSync(join(tmpdir(), 'tar-dialects-git-'));
    try {
      execFileSync('git', ['init', '-q', repo]);
      execFileSync('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '--allow-empty', '-m', 'empty']);
      const data = execFileSync('git', ['-C', repo, 'archive', '--format=tar', 'HEAD']);
      expect(data[156]).toBe(0x67); // 'g'
      expect(await read(data)).toEqual({ entries: [], warnings: [] });
    } finally {
      rmSync(repo, { recursive: true, force: true });
    }
  });

  it('accepts a g header and then the end of the source, with a TAR_NO_END_MARKER warning', async () => {
    const data = Buffer.concat([file('a', 'x'), extension('g', paxPayload([['comment', 'c']]))]);
    const { entries, warnings } = await read(data);
    expect(summary(entries)).toEqual([[0, 'a', 'file', 'x']]);
    expect(warnings.map((w) => w.code)).toEqual(['TAR_NO_END_MARKER']);
  });

  it('reads an x header with no entry after it as the end of the archive, as Go does, with a TAR_DANGLING_EXTENSION warning', async () => {
    const dangling = extension('x', paxPayload([['path', 'lost']]));
    const marked = await read(Buffer.concat([file('a', 'x'), dangling, END]));
    expect(summary(marked.entries)).toEqual([[0, 'a', 'file', 'x']]);
    expect(marked.warnings.map((w) => w.code)).toEqual(['TAR_DANGLING_EXTENSION']);
    const unmarked = await read(Buffer.concat([file('a', 'x'), dangling]));
    expect(summary(unmarked.entries)).toEqual([[0, 'a', 'file', 'x']]);
    expect(unmarked.warnings.map((w) => w.code)).toEqual(['TAR_DANGLING_EXTENSION', 'TAR_NO_END_MARKER']);
  });

  it('still rejects an x header whose payload the archive cuts short', async () => {
    const dangling = extension('x', paxPayload([['path', 'lost']]));
    expect((await rejection(dangling.subarray(0, 512 + 5))).message).toMatch(/truncated/);
  });
});

describe('PAX keys and values are bytes', () => {
  const latin = Buffer.from([0x75, 0x73, 0x65, 0x72, 0x2e, 0xe9, 0xff]); // "user.", then two bytes that are not UTF-8

  it('keeps an xattr whose value is empty, as Go hands it to Docker and containerd in PAXRecords', async () => {
    const data = Buffer.concat([extension('x', paxPayload([['SCHILY.xattr.user.empty', '']])), file('f', 'b'), END]);
    const { entries } = await read(data);
    expect(entries[0]!.header.pax.map(([k, v]) => [k.toString('latin1'), v.length])).toEqual([['SCHILY.xattr.user.empty', 0]]);
  });

  it('keeps the bytes of a non-UTF-8 xattr name in the key', async () => {
    const key = Buffer.concat([Buffer.from('SCHILY.xattr.'), latin]);
    const value = Buffer.from([0x00, 0x01, 0xfe]);
    const data = Buffer.concat([extension('x', paxPayload([[key, value]])), file('f', 'b'), END]);
    const { entries } = await read(data);
    expect(entries[0]!.header.pax).toHaveLength(1);
    const [gotKey, gotValue] = entries[0]!.header.pax[0]!;
    expect(gotKey.equals(key)).toBe(true);
    expect(gotValue.equals(value)).toBe(true);
  });

  it('writes key bytes as they are, so that reader and writer round-trip them', async () => {
    const key = Buffer.concat([Buffer.from('SCHILY.xattr.'), latin]);
    const header: TarHeader = {
      name: Buffer.from('f'),
      type: 'file',
      mode: 0o644,
      uid: 0,
      gid: 0,
      size: 0,
      mtime: 0,
      linkname: Buffer.alloc(0),
      uname: Buffer.alloc(0),
      gname: Buffer.alloc(0),
      devmajor: 0,
      devminor: 0,
      pax: [[key, Buffer.from('v')], [paxKey('mtime'), Buffer.from('5.5')]],
    };
    const { entries } = await read(Buffer.concat([encodeHeader(header), END]));
    expect(entries[0]!.header.pax.map(([k, v]) => [k.toString('hex'), v.toString()])).toEqual([
      [key.toString('hex'), 'v'],
      [Buffer.from('mtime').toString('hex'), '5.5'],
    ]);
    expect(entries[0]!.header.mtime).toBe(5);
  });

  it('compares keys as bytes with paxKeyIs', () => {
    expect(paxKeyIs(paxKey('mtime'), 'mtime')).toBe(true);
    expect(paxKeyIs(Buffer.from('mtimf'), 'mtime')).toBe(false);
    expect(paxKeyIs(Buffer.from('mtime\0'), 'mtime')).toBe(false);
    expect(paxKey(Buffer.from([0xe9, 0xff]).toString('latin1')).equals(Buffer.from([0xe9, 0xff]))).toBe(true);
  });

  for (const [what, record] of [
    ['path', ['path', 'a\0b']],
    ['linkpath', ['linkpath', 'a\0b']],
    ['uname', ['uname', 'ro\0ot']],
    ['xattr key', ['SCHILY.xattr.user.a\0b', 'v']],
  ] as const) {
    it(`refuses a NUL inside a PAX ${what}, naming the entry (malformed content, not a writer error later)`, async () => {
      const data = Buffer.concat([file('first', '1'), extension('x', paxPayload([[record[0], record[1]]])), headerBlock({ name: 'l', flag: '2', linkname: 't' }), END]);
      const error = await rejection(data);
      expect(error.message).toMatch(/^tar entry 1: PAX .*contains a NUL byte/);
    });
  }

  it('keeps a NUL inside an xattr value (binary values are legal)', async () => {
    const data = Buffer.concat([extension('x', paxPayload([['SCHILY.xattr.security.capability', Buffer.from([1, 0, 0, 2])]])), file('f', ''), END]);
    const { entries } = await read(data);
    expect(entries[0]!.header.pax[0]![1].equals(Buffer.from([1, 0, 0, 2]))).toBe(true);
  });
});

describe('PAX numbers as Go reads them', () => {
  for (const [mtime, whole] of [['-1.5', -2], ['-0.25', -1], ['-3.000', -3], ['1.', 1], ['+7', 7], ['12.75', 12]] as const) {
    it(`reads PAX mtime ${mtime} as ${whole} whole seconds`, async () => {
      const data = Buffer.concat([extension('x', paxPayload([['mtime', mtime]])), file('f', ''), END]);
      const { entries } = await read(data);
      expect(entries[0]!.header.mtime).toBe(whole);
    });
  }

  it('takes a + sign on PAX uid, gid and size', async () => {
    const data = Buffer.concat([extension('x', paxPayload([['uid', '+7'], ['gid', '+8'], ['size', '+2']])), headerBlock({ name: 'f', flag: '0' }), blocks('hi'), END]);
    const { entries } = await read(data);
    expect([entries[0]!.header.uid, entries[0]!.header.gid, entries[0]!.body]).toEqual([7, 8, 'hi']);
  });
});

describe('entry types that carry nothing for a root filesystem', () => {
  for (const [flag, what] of [['V', 'volume label'], ['A', 'Solaris ACL'], ['N', 'rename list']] as const) {
    it(`skips a type ${flag} entry (${what}) and its data with a TAR_SKIPPED_ENTRY warning, numbering the next entry as if it were not there`, async () => {
      const data = Buffer.concat([
        file('first', 'one'),
        headerBlock({ name: 'meta', flag, size: 700 }),
        blocks('m'.repeat(700)),
        file('second', 'two'),
        END,
      ]);
      const { entries, warnings } = await read(data);
      expect(summary(entries)).toEqual([
        [0, 'first', 'file', 'one'],
        [1, 'second', 'file', 'two'],
      ]);
      expect(warnings.map((w) => w.code)).toEqual(['TAR_SKIPPED_ENTRY']);
      expect(warnings[0]!.message).toContain(`type ${flag}`);
      expect(warnings[0]!.message).toContain('"meta"');
      expect(warnings[0]!.message).toContain('entry 1');
    });
  }

  it('applies a PAX header to the entry after a Solaris ACL header (libarchive reads A as part of the next entry)', async () => {
    const data = Buffer.concat([extension('x', paxPayload([['path', 'named-by-pax']])), headerBlock({ name: 'acl', flag: 'A', size: 10 }), blocks('1000007\0u:'), file('f', 'x'), END]);
    const { entries } = await read(data);
    expect(summary(entries)).toEqual([[0, 'named-by-pax', 'file', 'x']]);
  });

  it('rejects a truncated skipped entry', async () => {
    const data = Buffer.concat([headerBlock({ name: 'vol', flag: 'V', size: 2000 }), blocks('v'.repeat(1000))]);
    expect((await rejection(data)).message).toMatch(/^tar archive truncated inside a GNU volume label/);
  });

  for (const [flag, pattern] of [
    ['M', /^tar entry 1 \("cont"\): unsupported entry type "M" \(a GNU multi-volume continuation/],
    ['Q', /^tar entry 1 \("cont"\): unsupported entry type "Q"$/],
  ] as const) {
    it(`refuses type ${flag}, which would carry data we cannot place, naming the type and the entry`, async () => {
      const data = Buffer.concat([file('ok', ''), headerBlock({ name: 'cont', flag, size: 3 }), blocks('abc'), END]);
      expect((await rejection(data)).message).toMatch(pattern);
    });
  }
});

describe('GNU headers written by Go before 1.8', () => {
  it('takes the ustar prefix Go wrote where GNU keeps atime and ctime (as Go reads it)', async () => {
    const block = headerBlock({ name: 'foo', flag: '0', layout: 'gnu' });
    block.write('a'.repeat(99), 345, 'latin1'); // not an octal number: a prefix
    fixChecksum(block);
    const { entries } = await read(Buffer.concat([block, END]));
    expect(entries[0]!.header.name.toString()).toBe(`${'a'.repeat(99)}/foo`);
  });

  it('leaves real GNU atime and ctime alone', async () => {
    const block = headerBlock({ name: 'foo', flag: '0', layout: 'gnu' });
    block.write('14000000000\0', 345, 'latin1');
    block.write('14000000001\0', 357, 'latin1');
    fixChecksum(block);
    const { entries } = await read(Buffer.concat([block, END]));
    expect(entries[0]!.header.name.toString()).toBe('foo');
  });
});

// ---------------------------------------------------------------------------------------------
// Sparse files

const work = mkdtempSync(join(tmpdir(), 'tar-dialects-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A 1 MiB file with three data islands (one at the very end) and holes between. */
function makeSparse(): { content: Buffer; islands: Array<[number, Buffer]> } {
  const path = join(work, 'sparse.img');
  const size = 1024 * 1024;
  writeFileSync(path, '');
  truncateSync(path, size);
  const islands: Array<[number, Buffer]> = [
    [65_536, Buffer.alloc(5000, 'a')],
    [300_000, Buffer.alloc(4096, 'b')],
    [size - 4096, Buffer.alloc(4096, 'c')],
  ];
  const fd = openSync(path, 'r+');
  for (const [offset, bytes] of islands) writeSync(fd, bytes, 0, bytes.length, offset);
  closeSync(fd);
  return { content: readFileSync(path), islands };
}

describe('sparse files keep their map', () => {
  const formats = [
    ['old GNU (type S)', ['--format=gnu']],
    ['PAX 0.0', ['--format=posix', '--sparse-version=0.0']],
    ['PAX 0.1', ['--format=posix', '--sparse-version=0.1']],
    ['PAX 1.0', ['--format=posix', '--sparse-version=1.0']],
  ] as const;
  for (const [format, args] of formats) {
    it(`reads a ${format} sparse file: size is the full size, sparse holds the segments, storedBody only their bytes`, async () => {
      const { content } = makeSparse();
      const data = execFileSync('/usr/bin/tar', [...args, '--sparse', '-cf', '-', 'sparse.img'], { cwd: work });
      for (const stored of [false, true]) {
        const seen: Array<{ header: TarHeader; body: Buffer }> = [];
        for await (const entry of readTar(chunks(data, 3000))) {
          const parts: Buffer[] = [];
          for await (const part of stored ? entry.storedBody() : entry.body()) parts.push(Buffer.from(part));
          seen.push({ header: entry.header, body: Buffer.concat(parts) });
        }
        expect(seen).toHaveLength(1);
        const { header, body } = seen[0]!;
        expect(header.name.toString()).toBe('sparse.img');
        expect(header.size).toBe(content.length);
        const segments = header.sparse?.segments ?? [];
        // GNU tar finds the data by SEEK_DATA, block-aligned: check the map against the content.
        const dataSegments = segments.filter(([, length]) => length > 0);
        expect(dataSegments.length).toBeGreaterThanOrEqual(3);
        let covered = 0;
        for (const [offset, length] of dataSegments) {
          expect(offset + length).toBeLessThanOrEqual(content.length);
          covered += length;
        }
        const segmentBytes = Buffer.concat(dataSegments.map(([offset, length]) => content.subarray(offset, offset + length)));
        if (stored) {
          expect(body.length).toBe(covered);
          expect(body.equals(segmentBytes)).toBe(true);
        } else {
          expect(body.equals(content)).toBe(true);
        }
        // Every byte outside the segments is a hole.
        let at = 0;
        for (const [offset, length] of segments) {
          expect(content.subarray(at, offset).every((b) => b === 0)).toBe(true);
          at = offset + length;
        }
        expect(content.subarray(at).every((b) => b === 0)).toBe(true);
      }
    });
  }

  it('describes a file that is all hole with no data segments', async () => {
    const path = join(work, 'hole.img');
    writeFileSync(path, '');
    truncateSync(path, 200_000);
    for (const args of [['--format=gnu'], ['--format=posix', '--sparse-version=1.0']]) {
      const data = execFileSync('/usr/bin/tar', [...args, '--sparse', '-cf', '-', 'hole.img'], { cwd: work });
      for await (const entry of readTar(chunks(data, 1000))) {
        expect(entry.header.size).toBe(200_000);
        expect(entry.header.sparse?.segments.every(([offset, length]) => length === 0 && offset <= 200_000)).toBe(true);
        const parts: Buffer[] = [];
        for await (const part of entry.storedBody()) parts.push(part);
        expect(Buffer.concat(parts).length).toBe(0);
      }
    }
  });

  it('gives a plain file no sparse map, and storedBody its whole body', async () => {
    const data = Buffer.concat([file('plain', 'stored bytes'), END]);
    for await (const entry of readTar(chunks(data, 100))) {
      expect(entry.header.sparse).toBeUndefined();
      const parts: Buffer[] = [];
      for await (const part of entry.storedBody()) parts.push(part);
      expect(Buffer.concat(parts).toString()).toBe('stored bytes');
    }
  });

  it('lets a caller read either body or storedBody of an entry, not both', async () => {
    const data = Buffer.concat([file('plain', 'x'), END]);
    for await (const entry of readTar(chunks(data, 100))) {
      entry.storedBody();
      expect(() => entry.body()).toThrow(/twice/);
    }
  });

  it('reads a hand-made PAX 0.1 sparse entry: map in the records, segments exact', async () => {
    const data = Buffer.concat([
      extension('x', paxPayload([['GNU.sparse.major', '0'], ['GNU.sparse.minor', '1'], ['GNU.sparse.name', 'real'], ['GNU.sparse.size', '100'], ['GNU.sparse.numblocks', '2'], ['GNU.sparse.map', '10,3,50,2']])),
      headerBlock({ name: 'GNUSparseFile.0/real', flag: '0', size: 5 }),
      blocks('abcde'),
      END,
    ]);
    const { entries } = await read(data);
    const header = entries[0]!.header;
    expect([header.name.toString(), header.size, header.sparse?.segments]).toEqual(['real', 100, [[10, 3], [50, 2]]]);
    expect(header.pax).toEqual([]);
    const expected = Buffer.alloc(100);
    expected.write('abc', 10, 'latin1');
    expected.write('de', 50, 'latin1');
    expect(entries[0]!.body).toBe(expected.toString('latin1'));
  });
});
