import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  symlinkSync,
  truncateSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tar from 'tar-stream';
import { afterAll, describe, expect, it } from 'vitest';
import { AbortError, MalformedArchiveError } from '../../src/errors.js';
import { encodeHeader, END_OF_ARCHIVE, paddingFor, paxKey, readTar } from '../../src/streams/tar/index.js';
import type { TarHeader, TarWarning } from '../../src/streams/tar/index.js';

// ---------------------------------------------------------------------------------------------
// Helpers: fixtures are built in code, by GNU tar, tar-stream, or our own writer.

const work = mkdtempSync(join(tmpdir(), 'tar-reader-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let dirCount = 0;
function freshDir(): string {
  const dir = join(work, `d${dirCount++}`);
  mkdirSync(dir);
  return dir;
}

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** Feeds `data` in chunks of `size` bytes, and records whether the reader consumed all of it. */
function source(data: Buffer, size = 64 * 1024): AsyncIterable<Uint8Array> & { consumed: boolean; returned: boolean } {
  const state = {
    consumed: false,
    returned: false,
    async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
      try {
        for (let i = 0; i < data.length; i += size) yield data.subarray(i, Math.min(i + size, data.length));
        state.consumed = true;
      } finally {
        if (!state.consumed) state.returned = true;
      }
    },
  };
  return state;
}

interface Read {
  header: TarHeader;
  ordinal: number;
  body: Buffer;
}

async function readAll(data: Buffer, chunkSize?: number): Promise<Read[]> {
  const out: Read[] = [];
  for await (const entry of readTar(source(data, chunkSize))) {
    const chunks: Buffer[] = [];
    for await (const chunk of entry.body()) chunks.push(chunk);
    out.push({ header: entry.header, ordinal: entry.ordinal, body: Buffer.concat(chunks) });
  }
  return out;
}

/** PAX records with their keys as text, for comparing. */
const paxText = (h: TarHeader): Array<[string, Buffer]> => h.pax.map(([k, v]) => [k.toString('latin1'), v]);

const names = (entries: Read[]): string[] => entries.map((e) => e.header.name.toString('latin1'));
const byName = (entries: Read[], name: string): Read => {
  const found = entries.find((e) => e.header.name.toString('latin1') === name);
  if (found === undefined) throw new Error(`no entry ${name} in ${names(entries).join(', ')}`);
  return found;
};

function gnuTar(cwd: string, args: string[]): Buffer {
  return execFileSync('/usr/bin/tar', args, { cwd, maxBuffer: 1 << 30 });
}

/** A header with defaults; the byte fields and PAX keys may be given as strings. */
type HeaderInit = Omit<Partial<TarHeader>, 'name' | 'linkname' | 'uname' | 'gname' | 'pax'> & {
  name: Buffer | string;
  linkname?: Buffer | string;
  uname?: Buffer | string;
  gname?: Buffer | string;
  pax?: Array<[Buffer | string, Buffer]>;
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
    ...fields,
    pax: (fields.pax ?? []).map(([k, v]) => [typeof k === 'string' ? paxKey(k) : k, v]),
    name: bytes(fields.name),
    linkname: bytes(fields.linkname),
    uname: bytes(fields.uname),
    gname: bytes(fields.gname),
  };
}

/** An archive from our writer: each entry with its body. */
function archive(entries: Array<[TarHeader, Buffer?]>, end: Buffer = END_OF_ARCHIVE): Buffer {
  const parts: Buffer[] = [];
  for (const [h, body] of entries) {
    parts.push(encodeHeader(h));
    if (body !== undefined) parts.push(body, paddingFor(body.length));
  }
  parts.push(end);
  return Buffer.concat(parts);
}

/** Rewrites the checksum of the header block at `offset` after a test patched it. */
function fixChecksum(data: Buffer, offset: number): void {
  const block = data.subarray(offset, offset + 512);
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of block) sum += b;
  block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
}

async function failure(data: Buffer, chunkSize?: number): Promise<unknown> {
  try {
    await readAll(data, chunkSize);
  } catch (error) {
    return error;
  }
  throw new Error('expected the archive to be rejected');
}

/** A tree with names that need every extension mechanism. */
function makeTree(): { dir: string; longDir: string; longFile: string; target: string } {
  const dir = freshDir();
  const longDir = `${'d'.repeat(90)}/${'e'.repeat(90)}`; // > 100 bytes, fits the ustar prefix
  const longFile = `${longDir}/${'f'.repeat(120)}`; // > 255 bytes with its directory
  const target = `${'t'.repeat(99)}/${'u'.repeat(100)}`; // a 200-byte symlink target
  mkdirSync(join(dir, longDir), { recursive: true });
  writeFileSync(join(dir, longFile), 'long file\n');
  writeFileSync(join(dir, 'small.txt'), Buffer.alloc(70_000, 'abc'));
  linkSync(join(dir, 'small.txt'), join(dir, 'hard.txt'));
  symlinkSync(target, join(dir, 'sym'));
  return { dir, longDir, longFile, target };
}

/** A 10 MiB file with data islands and holes; enough islands to need GNU sparse extension blocks. */
function makeSparse(dir: string, islands: number): Buffer {
  const path = join(dir, 'sparse.img');
  const size = 10 * 1024 * 1024;
  writeFileSync(path, '');
  truncateSync(path, size);
  const fd = openSync(path, 'r+');
  for (let i = 0; i < islands; i++) writeSync(fd, Buffer.from(`island ${i} `.repeat(50)), 0, undefined, 8192 * (2 * i + 1) + i);
  writeSync(fd, Buffer.from('tail'), 0, undefined, size - 4);
  closeSync(fd);
  return readFileSync(path);
}

// ---------------------------------------------------------------------------------------------

describe('readTar on archives made by GNU tar', () => {
  for (const format of ['gnu', 'oldgnu', 'posix', 'ustar'] as const) {
    it(`reads names, types, link targets and content of a --format=${format} archive`, async () => {
      const tree = makeTree();
      const top = tree.longDir.split('/')[0]!;
      // ustar can hold neither the 200-byte link target nor the > 256-byte name.
      const files =
        format === 'ustar'
          ? ['--no-recursion', 'small.txt', 'hard.txt', top, tree.longDir]
          : ['small.txt', 'hard.txt', 'sym', top];
      const data = gnuTar(tree.dir, [`--format=${format}`, '-cf', '-', ...files]);
      for (const chunkSize of [1000, 511, 64 * 1024]) {
        const entries = await readAll(data, chunkSize);
        expect(entries.map((e) => e.ordinal)).toEqual([...entries.keys()]);
        const small = byName(entries, 'small.txt');
        expect(small.header.type).toBe('file');
        expect(small.header.size).toBe(70_000);
        expect(sha256(small.body)).toBe(sha256(Buffer.alloc(70_000, 'abc')));
        const hard = byName(entries, 'hard.txt');
        expect(hard.header.type).toBe('link');
        expect(hard.header.linkname.toString()).toBe('small.txt');
        expect(hard.body.length).toBe(0);
        expect(byName(entries, tree.longDir).header.type).toBe('directory');
        expect(byName(entries, top).header.type).toBe('directory');
        expect(byName(entries, tree.longDir).header.name.length).toBeGreaterThan(100);
        if (format !== 'ustar') {
          const long = byName(entries, tree.longFile);
          expect(long.body.toString()).toBe('long file\n');
          expect(long.header.name.length).toBeGreaterThan(255);
          const sym = byName(entries, 'sym');
          expect(sym.header.type).toBe('symlink');
          expect(sym.header.linkname.toString()).toBe(tree.target);
        }
        expect(small.header.uname.toString()).toBe('root');
      }
    });
  }

  it('reads a --format=v7 archive, where only a trailing slash marks a directory', async () => {
    const dir = freshDir();
    mkdirSync(join(dir, 'sub'));
    writeFileSync(join(dir, 'sub', 'f'), 'v7 body');
    const data = gnuTar(dir, ['--format=v7', '-cf', '-', 'sub']);
    expect(data[156]).toBe(0x35); // GNU writes '5' even in v7; patch it to the historic '0'
    data[156] = 0x30;
    fixChecksum(data, 0);
    const entries = await readAll(data);
    expect(names(entries)).toEqual(['sub', 'sub/f']);
    expect(entries[0]!.header.type).toBe('directory');
    expect(entries[1]!.body.toString()).toBe('v7 body');
    expect(entries[1]!.header.uname.length).toBe(0);
  });

  it('keeps a non-UTF-8 name byte for byte (PAX from GNU tar)', async () => {
    const dir = freshDir();
    const name = Buffer.from([0x6e, 0xff, 0xfe, 0x2e, 0x62, 0x69, 0x6e]);
    writeFileSync(Buffer.from(`${dir}/${name.toString('latin1')}`, 'latin1'), 'x');
    for (const format of ['posix', 'gnu']) {
      const data = execFileSync('/usr/bin/tar', [`--format=${format}`, '-cf', '-', '.'], { cwd: dir });
      const entries = await readAll(data);
      const entry = entries.find((e) => e.header.type === 'file');
      expect(entry?.header.name.equals(Buffer.concat([Buffer.from('./'), name]))).toBe(true);
    }
  });

  it('reads large, negative and huge numbers (base-256 in GNU format, PAX in POSIX format)', async () => {
    const dir = freshDir();
    writeFileSync(join(dir, 'old'), 'o');
    execFileSync('touch', ['-d', '1950-01-01 00:00:00 UTC', join(dir, 'old')]);
    for (const format of ['gnu', 'posix']) {
      const data = gnuTar(dir, [`--format=${format}`, '--owner=:4294967294', '--group=:2097152', '-cf', '-', 'old']);
      if (format === 'gnu') expect([data[108], data[116], data[136]]).toEqual([0x80, 0x80, 0xff]);
      else expect(data[156]).toBe(0x78); // 'x'
      const [entry] = await readAll(data);
      expect(entry?.header.uid).toBe(4294967294);
      expect(entry?.header.gid).toBe(2097152);
      expect(entry?.header.mtime).toBe(Date.UTC(1950, 0, 1) / 1000);
    }
  });

  it('expands an old GNU sparse file (type S) with sparse extension blocks', async () => {
    const dir = freshDir();
    const content = makeSparse(dir, 30);
    const data = gnuTar(dir, ['--format=gnu', '--sparse', '-cf', '-', 'sparse.img']);
    expect(data[156]).toBe(0x53); // 'S'
    expect(data[482]).toBe(1); // more than 4 entries: extension blocks follow
    expect(data.length).toBeLessThan(content.length / 4);
    for (const chunkSize of [512, 4000, 1 << 20]) {
      const [entry, ...rest] = await readAll(data, chunkSize);
      expect(rest).toEqual([]);
      expect(entry?.header.name.toString()).toBe('sparse.img');
      expect(entry?.header.size).toBe(content.length);
      expect(sha256(entry!.body)).toBe(sha256(content));
    }
  });

  for (const version of ['0.0', '0.1', '1.0']) {
    it(`expands a PAX sparse ${version} file and drops the GNU.sparse records`, async () => {
      const dir = freshDir();
      const content = makeSparse(dir, 7);
      const data = gnuTar(dir, ['--format=posix', '--sparse', `--sparse-version=${version}`, '-cf', '-', 'sparse.img']);
      expect(data.includes('GNU.sparse')).toBe(true);
      const [entry, ...rest] = await readAll(data, 3000);
      expect(rest).toEqual([]);
      expect(entry?.header.name.toString()).toBe('sparse.img');
      expect(entry?.header.type).toBe('file');
      expect(entry?.header.size).toBe(content.length);
      expect(sha256(entry!.body)).toBe(sha256(content));
      expect(paxText(entry!.header).map(([k]) => k)).toEqual(['mtime', 'atime', 'ctime']);
    });
  }

  it('skips an unread sparse body, or a half-read one, and reads the next entry', async () => {
    const dir = freshDir();
    makeSparse(dir, 9);
    writeFileSync(join(dir, 'after'), 'after the sparse file');
    for (const args of [['--format=gnu'], ['--format=posix', '--sparse-version=1.0'], ['--format=posix', '--sparse-version=0.1']]) {
      const data = gnuTar(dir, [...args, '--sparse', '-cf', '-', 'sparse.img', 'after']);
      for (const readFirstChunk of [false, true]) {
        const seen: string[] = [];
        for await (const entry of readTar(source(data, 1000))) {
          if (entry.header.name.toString() === 'sparse.img' && readFirstChunk) {
            for await (const piece of entry.body()) {
              expect(piece.length).toBeGreaterThan(0);
              break;
            }
          }
          if (entry.header.name.toString() === 'after') {
            const body: Buffer[] = [];
            for await (const piece of entry.body()) body.push(piece);
            seen.push(Buffer.concat(body).toString());
          } else seen.push(entry.header.name.toString());
        }
        expect(seen).toEqual(['sparse.img', 'after the sparse file']);
      }
    }
  });

  it('rejects a sparse archive cut inside its sparse headers, map or data', async () => {
    const dir = freshDir();
    makeSparse(dir, 30);
    const oldGnu = gnuTar(dir, ['--format=gnu', '--sparse', '-cf', '-', 'sparse.img']);
    const pax1 = gnuTar(dir, ['--format=posix', '--sparse-version=1.0', '--sparse', '-cf', '-', 'sparse.img']);
    // oldGnu: header, then sparse extension blocks at 512 and 1024; pax1: x header (2 blocks),
    // ustar header, then the map at 1536.
    for (const [data, cut] of [[oldGnu, 700], [oldGnu, 1100], [oldGnu, 3000], [pax1, 1600], [pax1, 5000]] as const) {
      const error = await failure(data.subarray(0, cut));
      expect(error, `cut at ${cut}`).toBeInstanceOf(MalformedArchiveError);
      expect((error as Error).message, `cut at ${cut}`).toMatch(/^tar archive truncated inside (a sparse header|the sparse map|the body)/);
    }
  });

  it('expands a sparse file that is all hole', async () => {
    const dir = freshDir();
    writeFileSync(join(dir, 'empty.img'), '');
    truncateSync(join(dir, 'empty.img'), 3 * 1024 * 1024 + 5);
    for (const format of ['gnu', 'posix']) {
      const data = gnuTar(dir, [`--format=${format}`, '--sparse', '-cf', '-', 'empty.img']);
      const [entry] = await readAll(data);
      expect(entry?.header.size).toBe(3 * 1024 * 1024 + 5);
      expect(entry!.body.equals(Buffer.alloc(3 * 1024 * 1024 + 5))).toBe(true);
    }
  });

  it('keeps xattrs and fractional times as raw PAX records, in order', async () => {
    const dir = freshDir();
    writeFileSync(join(dir, 'f'), 'x');
    utimesSync(join(dir, 'f'), 1_700_000_000.25, 1_700_000_000.25);
    const data = gnuTar(dir, ['--format=posix', '--pax-option=delete=atime,delete=ctime,SCHILY.xattr.user.k:=v', '-cf', '-', 'f']);
    const [entry] = await readAll(data);
    expect(entry!.header.mtime).toBe(1_700_000_000);
    expect(paxText(entry!.header).map(([k, v]) => [k, v.toString()])).toEqual([
      ['mtime', '1700000000.25'],
      ['SCHILY.xattr.user.k', 'v'],
    ]);
  });

  it('drops a PAX global header and does not count it as an entry', async () => {
    const dir = freshDir();
    writeFileSync(join(dir, 'f'), 'body');
    const data = gnuTar(dir, ['--format=posix', '--pax-option=comment=global-comment', '-cf', '-', 'f']);
    expect(data[156]).toBe(0x67); // 'g'
    const entries = await readAll(data);
    expect(entries.map((e) => [e.ordinal, e.header.name.toString(), e.body.toString()])).toEqual([[0, 'f', 'body']]);
    expect(paxText(entries[0]!.header).some(([k]) => k === 'comment')).toBe(false);
  });

  it('skips a GNU volume header (type V) with a TAR_SKIPPED_ENTRY warning, and numbers entries from 0', async () => {
    const dir = freshDir();
    writeFileSync(join(dir, 'f'), 'body');
    const data = gnuTar(dir, ['--format=gnu', '-V', 'my-volume', '-cf', '-', 'f']);
    expect(data[156]).toBe(0x56); // 'V'
    const warnings: TarWarning[] = [];
    const entries: Array<[number, string]> = [];
    for await (const entry of readTar(source(data), { onWarning: (w) => warnings.push(w) })) {
      entries.push([entry.ordinal, entry.header.name.toString()]);
    }
    expect(entries).toEqual([[0, 'f']]);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.code).toBe('TAR_SKIPPED_ENTRY');
    expect(warnings[0]!.message).toContain('my-volume');
  });
});

describe('readTar cross-checked with tar-stream', () => {
  it('reads what tar-stream packs', async () => {
    const pack = tar.pack();
    const longName = `${'a'.repeat(120)}/${'b'.repeat(120)}/c.txt`;
    pack.entry({ name: 'dir', type: 'directory', mode: 0o755, mtime: new Date(1_600_000_000_000) });
    pack.entry({ name: 'dir/file.txt', mode: 0o4755, uid: 1000, gid: 100, uname: 'alice', gname: 'users' }, 'hello');
    pack.entry({ name: longName }, Buffer.alloc(1025, 7));
    pack.entry({ name: 'dir/link', type: 'symlink', linkname: 'x'.repeat(150) });
    pack.entry({ name: 'dir/hard', type: 'link', linkname: 'dir/file.txt' });
    pack.entry({ name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 });
    pack.entry({ name: 'dev/sda', type: 'block-device', devmajor: 8, devminor: 0 });
    pack.entry({ name: 'fifo', type: 'fifo' });
    pack.entry({ name: 'contiguous', type: 'contiguous-file' }, 'seven');
    pack.finalize();
    const chunks: Buffer[] = [];
    for await (const chunk of pack) chunks.push(chunk as Buffer);
    const entries = await readAll(Buffer.concat(chunks), 700);
    expect(entries.map((e) => [e.header.name.toString(), e.header.type, e.body.toString('hex').slice(0, 10)])).toEqual([
      ['dir', 'directory', ''],
      ['dir/file.txt', 'file', Buffer.from('hello').toString('hex')],
      [longName, 'file', '0707070707'],
      ['dir/link', 'symlink', ''],
      ['dir/hard', 'link', ''],
      ['dev/null', 'character-device', ''],
      ['dev/sda', 'block-device', ''],
      ['fifo', 'fifo', ''],
      ['contiguous', 'file', Buffer.from('seven').toString('hex')],
    ]);
    expect(entries[0]!.header.mtime).toBe(1_600_000_000);
    expect(entries[0]!.header.mode).toBe(0o755);
    const file = entries[1]!.header;
    expect([file.mode, file.uid, file.gid, file.uname.toString(), file.gname.toString(), file.size]).toEqual([0o4755, 1000, 100, 'alice', 'users', 5]);
    expect(entries[2]!.body.equals(Buffer.alloc(1025, 7))).toBe(true);
    expect(entries[3]!.header.linkname.toString()).toBe('x'.repeat(150));
    expect(entries[4]!.header.linkname.toString()).toBe('dir/file.txt');
    expect([entries[5]!.header.devmajor, entries[5]!.header.devminor]).toEqual([1, 3]);
    expect([entries[6]!.header.devmajor, entries[6]!.header.devminor]).toEqual([8, 0]);
  });
});

describe('readTar header fields', () => {
  it('accepts octal fields padded with spaces and NULs, and a signed checksum', async () => {
    const data = archive([[header({ name: 'aXY', size: 3 }), Buffer.from('abc')]]);
    data.set([0xe9, 0xff], 1); // high bytes in the name, where a PAX path would otherwise be
    data.write('  644 \0\0', 100, 'latin1'); // mode
    data.write('\x00\x00\x00\x001750 ', 108, 'latin1'); // uid, leading NULs
    data.write('   3\0garbage', 124, 12, 'latin1'); // size: digits, NUL, leftovers (accepted by GNU tar)
    // A signed checksum, as old tars computed it over chars.
    const block = data.subarray(0, 512);
    block.fill(0x20, 148, 156);
    let signed = 0;
    for (const b of block) signed += b >= 0x80 ? b - 256 : b;
    block.write(signed.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    const [entry] = await readAll(data);
    expect([entry!.header.mode, entry!.header.uid, entry!.header.size, entry!.body.toString()]).toEqual([0o644, 0o1750, 3, 'abc']);
    expect(entry!.header.name.equals(Buffer.from([0x61, 0xe9, 0xff]))).toBe(true);
  });

  it('reads base-256 numbers, negative ones included', async () => {
    const data = archive([[header({ name: 'n', size: 2 }), Buffer.from('hi')]]);
    const base256 = (offset: number, length: number, value: bigint): void => {
      let v = value < 0n ? (1n << BigInt(length * 8)) + value : value;
      for (let i = length - 1; i >= 0; i--) {
        data[offset + i] = Number(v & 0xffn);
        v >>= 8n;
      }
      data[offset] = value < 0n ? data[offset]! | 0xc0 : 0x80;
    };
    base256(108, 8, 4_294_967_294n); // uid
    base256(124, 12, 2n); // size
    base256(136, 12, -2_208_988_800n); // mtime, 1900-01-01
    fixChecksum(data, 0);
    const [entry] = await readAll(data);
    expect([entry!.header.uid, entry!.header.size, entry!.header.mtime, entry!.body.toString()]).toEqual([4_294_967_294, 2, -2_208_988_800, 'hi']);
  });

  it('folds GNU long names, a PAX path and strips trailing slashes into a directory', async () => {
    const data = archive([
      [header({ name: 'plain/', type: 'file' })], // our writer keeps the slash; type 0 + slash = directory
      [header({ name: 'x'.repeat(300), type: 'directory', mode: 0o1777 })],
    ]);
    const entries = await readAll(data);
    expect(entries.map((e) => [e.header.name.toString(), e.header.type, e.header.mode])).toEqual([
      ['plain', 'directory', 0o644],
      ['x'.repeat(300), 'directory', 0o1777],
    ]);
  });

  it('keeps a fractional mtime record, drops hdrcharset and reads SCHILY device numbers', async () => {
    const xattr = Buffer.from([0x01, 0x00, 0x00, 0x02, 0xff, 0x0a, 0x3d]);
    const data = archive([
      [
        header({
          name: Buffer.from([0xff, 0xfe]),
          type: 'character-device',
          devmajor: 0o7777777 + 1,
          devminor: 5,
          mtime: 1_700_000_000,
          pax: [
            ['hdrcharset', Buffer.from('BINARY')], // our writer no longer writes it; others do
            ['mtime', Buffer.from('1700000000.25')],
            ['SCHILY.xattr.security.capability', xattr],
          ],
        }),
      ],
    ]);
    expect(data.includes('hdrcharset=BINARY')).toBe(true);
    const [entry] = await readAll(data);
    expect(entry!.header.name.equals(Buffer.from([0xff, 0xfe]))).toBe(true);
    expect([entry!.header.devmajor, entry!.header.devminor, entry!.header.mtime]).toEqual([0o7777777 + 1, 5, 1_700_000_000]);
    expect(paxText(entry!.header)).toEqual([
      ['mtime', Buffer.from('1700000000.25')],
      ['SCHILY.xattr.security.capability', xattr],
    ]);
  });

  it('reads the 131-byte prefix of a star header', async () => {
    const data = archive([[header({ name: 'file', size: 1 }), Buffer.from('s')]]);
    data.fill(0x70, 345, 345 + 131); // a prefix that fills its field, no NUL
    data.write('12345670123', 476, 'latin1'); // star's atime, right after the prefix
    data.write('tar\0', 508, 'latin1');
    fixChecksum(data, 0);
    const [entry] = await readAll(data);
    expect(entry!.header.name.toString()).toBe(`${'p'.repeat(131)}/file`);
  });

  it('parses a megabyte of PAX records in linear time', async () => {
    const records: Array<[string, Buffer]> = [];
    for (let i = 0; i < 40_000; i++) records.push([`k${i}`, Buffer.from('vvvvvvvvvvvv')]);
    const data = archive([[header({ name: 'f', pax: records })]]);
    const started = performance.now();
    const [entry] = await readAll(data);
    expect(entry!.header.pax.length).toBe(40_000);
    expect(entry!.header.pax[39_999]![0].toString()).toBe('k39999');
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it('rejects an unknown GNU sparse version', async () => {
    const data = archive([
      [
        header({
          name: 'sp',
          size: 1,
          pax: [
            ['GNU.sparse.major', Buffer.from('2')],
            ['GNU.sparse.minor', Buffer.from('0')],
            ['GNU.sparse.realsize', Buffer.from('10')],
          ],
        }),
        Buffer.from('x'),
      ],
    ]);
    const error = await failure(data);
    expect(error).toBeInstanceOf(MalformedArchiveError);
    expect((error as Error).message).toMatch(/unsupported GNU sparse version 2\.0/);
  });

  it('rejects a header with a bad checksum', async () => {
    const data = archive([[header({ name: 'f', size: 1 }), Buffer.from('x')]]);
    data[0] = 0x67; // 'f' -> 'g'
    const error = await failure(data);
    expect(error).toBeInstanceOf(MalformedArchiveError);
    expect((error as Error).message).toMatch(/checksum/);
  });

  it('rejects an unknown typeflag, naming it and the entry', async () => {
    const data = archive([[header({ name: 'ok' })], [header({ name: 'multi-volume' })]]);
    data[512 + 156] = 0x4d; // 'M'
    fixChecksum(data, 512);
    const error = await failure(data);
    expect(error).toBeInstanceOf(MalformedArchiveError);
    expect((error as Error).message).toMatch(/entry 1 \("multi-volume"\).*"M"/);
  });

  it('rejects a GNU long name header of absurd size', async () => {
    const data = archive([[header({ name: '././@LongLink', size: 2 * 1024 * 1024 })]]);
    data[156] = 0x4c; // 'L'
    fixChecksum(data, 0);
    const error = await failure(data);
    expect(error).toBeInstanceOf(MalformedArchiveError);
    expect((error as Error).message).toMatch(/too large/);
  });

  it('rejects a malformed PAX record', async () => {
    const data = archive([[header({ name: 'f', pax: [['comment', Buffer.from('hello')]] })]]);
    const at = data.indexOf('comment');
    data[at - 2] = 0x39; // "15 comment" -> "19 comment": past the payload
    const error = await failure(data);
    expect(error).toBeInstanceOf(MalformedArchiveError);
    expect((error as Error).message).toMatch(/PAX/);
  });

  it('rejects a sparse map that does not match the stored data', async () => {
    const data = archive([
      [
        header({
          name: 'sp',
          size: 4,
          pax: [
            ['GNU.sparse.size', Buffer.from('100')],
            ['GNU.sparse.map', Buffer.from('10,5')],
          ],
        }),
        Buffer.from('abcd'),
      ],
    ]);
    const error = await failure(data);
    expect(error).toBeInstanceOf(MalformedArchiveError);
    expect((error as Error).message).toMatch(/sparse map describes 5 bytes, archive holds 4/);
  });
});

describe('readTar archive boundaries', () => {
  const sample = (): Buffer =>
    archive([
      [header({ name: 'a', size: 1000 }), Buffer.alloc(1000, 1)],
      [header({ name: 'b'.repeat(300), size: 10 }), Buffer.alloc(10, 2)],
    ]);

  it('rejects an archive cut inside a header, an extension header, a body or its padding', async () => {
    const data = sample();
    // a's header is 0..512, a's body 512..1512 (+ padding to 1536), b's PAX header 1536..2560,
    // b's header 2560..3072, b's body 3072..3082 (+ padding to 3584), end marker 3584..4608.
    // (A cut at 2560, right after b's PAX header, is read as the end, as Go does: see the dialect tests.)
    for (const cut of [100, 512, 700, 1512, 1520, 2000, 2600, 3072, 3075, 3082]) {
      const error = await failure(data.subarray(0, cut), 300);
      expect(error, `cut at ${cut}`).toBeInstanceOf(MalformedArchiveError);
      expect((error as Error).message, `cut at ${cut}`).toMatch(/^tar archive truncated/);
    }
  });

  it('accepts an archive that ends at a header boundary without the end marker, with one warning', async () => {
    const data = sample();
    for (const [cut, expected] of [[0, []], [1536, ['a']], [3584, ['a', 'b'.repeat(300)]]] as const) {
      const warnings: TarWarning[] = [];
      const seen: string[] = [];
      for await (const entry of readTar(source(data.subarray(0, cut), 300), { onWarning: (w) => warnings.push(w) })) {
        seen.push(entry.header.name.toString());
      }
      expect(seen, `cut at ${cut}`).toEqual(expected);
      expect(warnings.map((w) => w.code), `cut at ${cut}`).toEqual(['TAR_NO_END_MARKER']);
      expect(warnings[0]!.message).toContain(`byte ${cut}`);
    }
  });

  it('rejects a cut inside the second block of the end marker', async () => {
    const error = await failure(sample().subarray(0, 3584 + 512 + 100));
    expect((error as Error).message).toMatch(/^tar archive truncated inside the end-of-archive marker/);
  });

  it('accepts a lone zero block followed by the end of the source, silently (as Go and libarchive)', async () => {
    const warnings: TarWarning[] = [];
    const seen: string[] = [];
    for await (const entry of readTar(source(sample().subarray(0, 3584 + 512)), { onWarning: (w) => warnings.push(w) })) {
      seen.push(entry.header.name.toString());
    }
    expect(seen).toEqual(['a', 'b'.repeat(300)]);
    expect(warnings).toEqual([]);
  });

  it('reads a complete archive without any warning', async () => {
    const warnings: TarWarning[] = [];
    for await (const entry of readTar(source(sample()), { onWarning: (w) => warnings.push(w) })) void entry;
    expect(warnings).toEqual([]);
  });

  it('rejects a zero block followed by a header', async () => {
    const one = archive([[header({ name: 'a' })]], Buffer.alloc(512));
    const error = await failure(Buffer.concat([one, archive([[header({ name: 'b' })]])]));
    expect(error).toBeInstanceOf(MalformedArchiveError);
  });

  it('drains every byte after the end marker', async () => {
    const data = Buffer.concat([sample(), Buffer.alloc(100_000, 0x55)]);
    const input = source(data, 4096);
    const seen: string[] = [];
    for await (const entry of readTar(input)) seen.push(entry.header.name.toString().slice(0, 3));
    expect(seen).toEqual(['a', 'bbb']);
    expect(input.consumed).toBe(true);
  });

  it('returns the source when the consumer stops early', async () => {
    const input = source(sample(), 512);
    for await (const entry of readTar(input)) {
      expect(entry.ordinal).toBe(0);
      break;
    }
    expect(input.returned).toBe(true);
  });
});

describe('readTar bodies', () => {
  it('hands out bodies as subarrays of the source chunks', async () => {
    const data = archive([[header({ name: 'big', size: 200_000 }), Buffer.alloc(200_000, 9)]]);
    const chunks: Buffer[] = [];
    for (let i = 0; i < data.length; i += 65_536) chunks.push(Buffer.from(data.subarray(i, i + 65_536)));
    const sources = new Set(chunks.map((c) => c.buffer));
    let total = 0;
    for await (const entry of readTar((async function* () { yield* chunks; })())) {
      for await (const piece of entry.body()) {
        expect(sources.has(piece.buffer as ArrayBuffer)).toBe(true);
        total += piece.length;
      }
    }
    expect(total).toBe(200_000);
  });

  it('skips unread and half-read bodies', async () => {
    const data = archive([
      [header({ name: 'unread', size: 5000 }), Buffer.alloc(5000, 1)],
      [header({ name: 'half', size: 300_000 }), Buffer.alloc(300_000, 2)],
      [header({ name: 'last', size: 3 }), Buffer.from('end')],
    ]);
    const seen: string[] = [];
    for await (const entry of readTar(source(data, 1000))) {
      seen.push(entry.header.name.toString());
      if (entry.header.name.toString() === 'half') {
        for await (const piece of entry.body()) {
          expect(piece[0]).toBe(2);
          break;
        }
      }
      if (entry.header.name.toString() === 'last') {
        const body: Buffer[] = [];
        for await (const piece of entry.body()) body.push(piece);
        expect(Buffer.concat(body).toString()).toBe('end');
      }
    }
    expect(seen).toEqual(['unread', 'half', 'last']);
  });

  it('refuses to read a body twice or after the next entry', async () => {
    const data = archive([
      [header({ name: 'a', size: 2 }), Buffer.from('aa')],
      [header({ name: 'b', size: 2 }), Buffer.from('bb')],
    ]);
    const reader = readTar(source(data));
    const first = (await reader.next()).value as { body(): AsyncIterable<Buffer> };
    const body = first.body();
    expect(() => first.body()).toThrow(/twice/);
    await reader.next();
    await expect(async () => {
      for await (const _ of body) void _;
    }).rejects.toThrow(/after the next entry/);
    await reader.return(undefined);
  });

  it('stops with an AbortError when the signal fires between entries', async () => {
    const data = archive([[header({ name: 'a' })], [header({ name: 'b' })]]);
    const controller = new AbortController();
    const input = source(data, 512);
    const seen: string[] = [];
    await expect(async () => {
      for await (const entry of readTar(input, { signal: controller.signal })) {
        seen.push(entry.header.name.toString());
        controller.abort();
      }
    }).rejects.toBeInstanceOf(AbortError);
    expect(seen).toEqual(['a']);
    expect(input.returned).toBe(true);
  });

  it('reads 100k entries with chunks that straddle blocks', async () => {
    const parts: Buffer[] = [];
    for (let i = 0; i < 100_000; i++) {
      const body = Buffer.from(`file ${i}`);
      parts.push(encodeHeader(header({ name: `dir/${i}`, size: body.length })), body, paddingFor(body.length));
    }
    parts.push(END_OF_ARCHIVE);
    const data = Buffer.concat(parts);
    let count = 0;
    let last = '';
    const started = performance.now();
    for await (const entry of readTar(source(data, 65_537))) {
      count++;
      if (entry.ordinal === 99_999) for await (const piece of entry.body()) last += piece.toString();
    }
    const seconds = (performance.now() - started) / 1000;
    expect(count).toBe(100_000);
    expect(last).toBe('file 99999');
    expect(seconds).toBeLessThan(20); // a generous bound; it takes well under a second locally
  });
});
