/**
 * A raw tar builder for test fixtures, written by hand and independent of our tar writer, so
 * a bug in `src/streams/tar/` cannot hide itself in both the fixture and the output. It
 * writes what tar-stream cannot: names and PAX values as raw bytes (not UTF-8), binary
 * xattrs, ids above the ustar range, and hostile headers (`rawTypeflag`).
 *
 * Format: POSIX ustar headers, with a PAX `x` header before an entry whenever a field does
 * not fit (long name or link target, id or mtime out of octal range) or `pax` is given.
 */
import { gzipSync } from 'node:zlib';
import type { TarHeader } from '../../src/streams/tar/types.js';

export type FixtureType = 'file' | 'dir' | 'symlink' | 'link' | 'char' | 'block' | 'fifo';

export interface FixtureEntry {
  /** The path. A Buffer is written byte for byte (non-UTF-8 names). A dir gets a trailing `/`. */
  name: string | Buffer;
  type: FixtureType;
  mode?: number;
  uid?: number;
  gid?: number;
  uname?: string | Buffer;
  gname?: string | Buffer;
  /** Seconds since the epoch. */
  mtime?: number;
  /** Body of a `file`; ignored for other types unless `rawTypeflag` is set. */
  content?: Buffer | string;
  /** Hardlink or symlink target. */
  linkname?: string | Buffer;
  /** PAX records for an `x` header before this entry, values as raw bytes. */
  pax?: Record<string, Buffer | string>;
  /** Overrides the typeflag byte (e.g. `'g'` for a global PAX header, `'S'` for GNU sparse). */
  rawTypeflag?: string;
  devmajor?: number;
  devminor?: number;
}

const TYPEFLAG: Record<FixtureType, string> = {
  file: '0',
  link: '1',
  symlink: '2',
  char: '3',
  block: '4',
  dir: '5',
  fifo: '6',
};

const BLOCK = 512;

function bytes(value: string | Buffer | undefined): Buffer {
  if (value === undefined) return Buffer.alloc(0);
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
}

/** Octal, NUL-terminated, in a field of `width` bytes; `undefined` when it does not fit. */
function octal(value: number, width: number): Buffer | undefined {
  const digits = value.toString(8);
  if (!Number.isSafeInteger(value) || value < 0 || digits.length > width - 1) return undefined;
  return Buffer.from(`${digits.padStart(width - 1, '0')}\0`, 'latin1');
}

/** One PAX record: `"<len> <key>=<value>\n"`, where `<len>` counts itself. */
function paxRecord(key: string, value: Buffer): Buffer {
  const rest = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), value, Buffer.from('\n')]);
  let len = rest.length + 1;
  while (String(len).length + rest.length !== len) len = String(len).length + rest.length;
  return Buffer.concat([Buffer.from(String(len), 'latin1'), rest]);
}

/** The body of a PAX (`x` or `g`) header holding `records`, in insertion order. */
export function paxRecords(records: Record<string, Buffer | string>): Buffer {
  return Buffer.concat(Object.entries(records).map(([k, v]) => paxRecord(k, bytes(v))));
}

function isUtf8(buf: Buffer): boolean {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(buf);
    return true;
  } catch {
    return false;
  }
}

interface RawHeader {
  name: Buffer;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: Buffer;
  uname: Buffer;
  gname: Buffer;
  devmajor: number;
  devminor: number;
}

/** Encodes one 512-byte ustar header. Fields must already fit (the caller moved the rest to PAX). */
function ustarHeader(h: RawHeader): Buffer {
  const block = Buffer.alloc(BLOCK);
  const put = (buf: Buffer, offset: number, width: number): void => {
    buf.copy(block, offset, 0, Math.min(buf.length, width));
  };
  const num = (value: number, offset: number, width: number): void => {
    put(octal(value, width) ?? octal(0, width)!, offset, width);
  };
  put(h.name, 0, 100);
  num(h.mode, 100, 8);
  num(h.uid, 108, 8);
  num(h.gid, 116, 8);
  num(h.size, 124, 12);
  num(h.mtime, 136, 12);
  block.fill(0x20, 148, 156); // checksum counts as spaces
  block.write(h.typeflag, 156, 1, 'latin1');
  put(h.linkname, 157, 100);
  block.write('ustar\u000000', 257, 8, 'latin1');
  put(h.uname, 265, 32);
  put(h.gname, 297, 32);
  num(h.devmajor, 329, 8);
  num(h.devminor, 337, 8);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return block;
}

function padded(body: Buffer): Buffer {
  const rem = body.length % BLOCK;
  return rem === 0 ? body : Buffer.concat([body, Buffer.alloc(BLOCK - rem)]);
}

/** The last path component, for naming PAX headers the way GNU tar does (`PaxHeaders/NAME`). */
function baseName(name: Buffer): Buffer {
  let end = name.length;
  while (end > 0 && name[end - 1] === 0x2f) end--;
  const start = name.lastIndexOf(0x2f, end - 1) + 1;
  return name.subarray(start, end);
}

/** The blocks of one entry: an optional PAX header, the ustar header, the padded body. */
export function encodeEntry(entry: FixtureEntry): Buffer {
  let name = bytes(entry.name);
  if (entry.type === 'dir' && entry.rawTypeflag === undefined && name[name.length - 1] !== 0x2f) {
    name = Buffer.concat([name, Buffer.from('/')]);
  }
  const linkname = bytes(entry.linkname);
  const uname = bytes(entry.uname);
  const gname = bytes(entry.gname);
  const body = entry.type === 'file' || entry.rawTypeflag !== undefined ? bytes(entry.content) : Buffer.alloc(0);
  const uid = entry.uid ?? 0;
  const gid = entry.gid ?? 0;
  const mtime = entry.mtime ?? 0;

  // Fields that do not fit go to PAX, as GNU tar and Go do; explicit records come after and win.
  const auto: Record<string, Buffer> = {};
  if (name.length > 100) auto['path'] = name;
  if (linkname.length > 100) auto['linkpath'] = linkname;
  if (uname.length > 32) auto['uname'] = uname;
  if (gname.length > 32) auto['gname'] = gname;
  if (octal(uid, 8) === undefined) auto['uid'] = Buffer.from(String(uid));
  if (octal(gid, 8) === undefined) auto['gid'] = Buffer.from(String(gid));
  if (octal(mtime, 12) === undefined) auto['mtime'] = Buffer.from(String(mtime));
  if (octal(body.length, 12) === undefined) auto['size'] = Buffer.from(String(body.length));
  const records: Record<string, Buffer> = { ...auto };
  for (const [k, v] of Object.entries(entry.pax ?? {})) records[k] = bytes(v);
  const textual = ['path', 'linkpath', 'uname', 'gname'];
  if (textual.some((k) => records[k] !== undefined && !isUtf8(records[k]!)) && records['hdrcharset'] === undefined) {
    records['hdrcharset'] = Buffer.from('BINARY');
  }

  const out: Buffer[] = [];
  if (Object.keys(records).length > 0) {
    const paxBody = paxRecords(records);
    out.push(
      ustarHeader({
        name: Buffer.concat([Buffer.from('PaxHeaders/'), baseName(name)]).subarray(0, 100),
        mode: 0o644,
        uid: 0,
        gid: 0,
        size: paxBody.length,
        mtime: 0,
        typeflag: 'x',
        linkname: Buffer.alloc(0),
        uname: Buffer.alloc(0),
        gname: Buffer.alloc(0),
        devmajor: 0,
        devminor: 0,
      }),
      padded(paxBody),
    );
  }
  out.push(
    ustarHeader({
      name: name.subarray(0, 100),
      mode: entry.mode ?? (entry.type === 'dir' ? 0o755 : 0o644),
      uid,
      gid,
      size: body.length,
      mtime,
      typeflag: entry.rawTypeflag ?? TYPEFLAG[entry.type],
      linkname: linkname.subarray(0, 100),
      uname: uname.subarray(0, 32),
      gname: gname.subarray(0, 32),
      devmajor: entry.devmajor ?? 0,
      devminor: entry.devminor ?? 0,
    }),
    padded(body),
  );
  return Buffer.concat(out);
}


/**
 * A parsed header as the reader hands it on: a root-owned 0644 empty regular file with mtime 0
 * and no extensions, unless `fields` says otherwise.
 */
export function tarHeader(fields: Partial<TarHeader> & { name: Buffer }): TarHeader {
  return {
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
    pax: [],
    ...fields,
  };
}

/** A whole tar: the entries, then (unless `endMarker: false`) two zero blocks. */
export function buildTar(entries: readonly FixtureEntry[], opts: { endMarker?: boolean } = {}): Buffer {
  const parts = entries.map(encodeEntry);
  if (opts.endMarker !== false) parts.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(parts);
}

export function gzip(buf: Buffer): Buffer {
  return gzipSync(buf);
}

/** One header as it sits in the archive, extension headers (`x`, `g`, `L`, `K`) included. */
export interface RawHeaderInfo {
  typeflag: string;
  /** The 100-byte ustar name field joined with the prefix field, as raw bytes. */
  name: Buffer;
  size: number;
}

/**
 * Lists every header block of a tar, extension headers included, without interpreting them:
 * lets a test see what a reader hides (e.g. that no global PAX header was written).
 */
export function listRawHeaders(tar: Buffer): RawHeaderInfo[] {
  const out: RawHeaderInfo[] = [];
  let offset = 0;
  while (offset + BLOCK <= tar.length) {
    const block = tar.subarray(offset, offset + BLOCK);
    if (block.every((b) => b === 0)) break;
    const field = (start: number, width: number): Buffer => {
      const raw = block.subarray(start, start + width);
      const nul = raw.indexOf(0);
      return nul === -1 ? raw : raw.subarray(0, nul);
    };
    const sizeField = block.subarray(124, 136);
    const size =
      (sizeField[0]! & 0x80) !== 0
        ? sizeField.subarray(1).reduce((acc, b) => acc * 256 + b, 0)
        : parseInt(field(124, 12).toString('latin1').trim() || '0', 8);
    const prefix = field(345, 155);
    const name = prefix.length > 0 ? Buffer.concat([prefix, Buffer.from('/'), field(0, 100)]) : field(0, 100);
    out.push({ typeflag: String.fromCharCode(block[156]!), name, size });
    offset += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
  }
  return out;
}
