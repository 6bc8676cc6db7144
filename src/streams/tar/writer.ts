/**
 * Our tar writer (DESIGN.md §3): POSIX ustar, with a PAX `x` header only for what does not
 * fit, as Go's archive/tar and GNU tar do. Output is a pure function of the header, so the
 * same rootfs always gives the same bytes.
 *
 * Names and PAX values are written as the bytes we were given. A PAX text field that is not
 * UTF-8 is announced with `hdrcharset=BINARY`, so that readers (bsdtar, GNU tar) take it raw
 * instead of decoding it.
 */
import { isUtf8 } from 'node:buffer';
import { paxKeyIs } from './pax-key.js';
import type { TarEntryType, TarHeader } from './types.js';

const BLOCK = 512;
const ZERO_BLOCK = Buffer.alloc(BLOCK);

/** Two zero blocks: the end-of-archive marker. */
export const END_OF_ARCHIVE: Buffer = Buffer.alloc(2 * BLOCK);

/** Zeros from the end of a body of `size` bytes to the next block boundary (a shared slice). */
export function paddingFor(size: number): Buffer {
  return ZERO_BLOCK.subarray(0, (BLOCK - (size % BLOCK)) % BLOCK);
}

const TYPEFLAGS: Record<TarEntryType, number> = {
  file: 0x30,
  link: 0x31,
  symlink: 0x32,
  'character-device': 0x33,
  'block-device': 0x34,
  directory: 0x35,
  fifo: 0x36,
};

/** Largest values of the octal fields: 7 digits for 8-byte fields, 11 for 12-byte ones. */
const MAX_OCTAL_8 = 0o7777777;
const MAX_OCTAL_12 = 0o77777777777;

/**
 * The blocks that precede an entry's body: a PAX `x` header when some field does not fit
 * ustar, then the ustar header. Follow it with `header.size` body bytes (files only) and
 * {@link paddingFor}(`header.size`).
 *
 * A directory's name gets a trailing `/`. A header from our reader whose `pax` holds a
 * fractional `mtime` keeps that record instead of a generated whole-second one.
 */
export function encodeHeader(header: TarHeader): Buffer {
  check(header);
  const isDirectory = header.type === 'directory';
  const name =
    isDirectory && header.name[header.name.length - 1] !== 0x2f
      ? Buffer.concat([header.name, Buffer.from('/')])
      : header.name;
  const size = header.type === 'file' ? header.size : 0;
  const records: Array<[string, Buffer]> = [];
  const inPax = (key: string, value: Buffer, width: number): Buffer => {
    records.push([key, value]);
    // Readers that ignore PAX still see something recognisable: the ASCII bytes, cut short.
    return asciiOnly(value).subarray(0, width);
  };
  const text = (key: string, value: Buffer, width: number): Buffer =>
    value.length <= width && isAscii(value) ? value : inPax(key, value, width);
  const number = (key: string, value: number, max: number): number => {
    if (value >= 0 && value <= max) return value;
    records.push([key, Buffer.from(String(value))]);
    return 0; // as Go does: the PAX record is the value, the field says nothing
  };

  const block = Buffer.alloc(BLOCK);
  const split = name.length > 100 ? splitUstarPath(name) : undefined;
  if (name.length <= 100 && isAscii(name)) name.copy(block, 0);
  else if (split !== undefined) {
    split.suffix.copy(block, 0);
    split.prefix.copy(block, 345);
  } else {
    inPax('path', name, 100).copy(block, 0);
  }
  octal(block, 100, 8, header.mode & 0o7777);
  octal(block, 108, 8, number('uid', header.uid, MAX_OCTAL_8));
  octal(block, 116, 8, number('gid', header.gid, MAX_OCTAL_8));
  octal(block, 124, 12, number('size', size, MAX_OCTAL_12));
  const ownMtime = !header.pax.some(([key]) => paxKeyIs(key, 'mtime'));
  octal(block, 136, 12, ownMtime ? number('mtime', header.mtime, MAX_OCTAL_12) : clamp(header.mtime, MAX_OCTAL_12));
  block[156] = TYPEFLAGS[header.type];
  const isLink = header.type === 'link' || header.type === 'symlink';
  if (isLink) text('linkpath', header.linkname, 100).copy(block, 157);
  block.write('ustar\x0000', 257, 'latin1');
  text('uname', header.uname, 32).copy(block, 265);
  text('gname', header.gname, 32).copy(block, 297);
  const isDevice = header.type === 'character-device' || header.type === 'block-device';
  // POSIX has no PAX keyword for device numbers; star's SCHILY ones are what GNU tar and
  // libarchive read (and so does our reader).
  octal(block, 329, 8, isDevice ? number('SCHILY.devmajor', header.devmajor, MAX_OCTAL_8) : 0);
  octal(block, 337, 8, isDevice ? number('SCHILY.devminor', header.devminor, MAX_OCTAL_8) : 0);
  writeChecksum(block);

  if (records.length === 0 && header.pax.length === 0) return block;
  const binary = records.some(([key, value]) => TEXT_KEYS.has(key) && !isUtf8(value));
  const all: Array<[string | Buffer, Buffer]> = [
    ...(binary ? [['hdrcharset', Buffer.from('BINARY')] as [string, Buffer]] : []),
    ...records,
    ...header.pax,
  ];
  const payload = Buffer.concat(all.map(([key, value]) => paxRecord(key, value)));
  return Buffer.concat([paxHeaderBlock(name, payload.length), payload, paddingFor(payload.length), block]);
}

/**
 * The common case of {@link encodeHeader} without allocating: when `header` needs no PAX
 * header (no PAX records, every field fits ustar), writes its ustar block, the same bytes
 * {@link encodeHeader} would give, into `out` at `offset` and returns true. Otherwise
 * writes nothing and returns false. `out` needs 512 bytes of room at `offset`.
 */
export function encodeHeaderInto(header: TarHeader, out: Buffer, offset: number): boolean {
  // Everything check() refuses is left to encodeHeader, which throws for it.
  if (header.pax.length !== 0) return false;
  const { type, name, linkname, uname, gname, uid, gid, mtime, devmajor, devminor } = header;
  const isDirectory = type === 'directory';
  const slash = isDirectory && name[name.length - 1] !== 0x2f ? 1 : 0;
  if (name.length + slash > 100 || !plainText(name)) return false;
  const isLink = type === 'link' || type === 'symlink';
  if (isLink ? linkname.length > 100 || !plainText(linkname) : linkname.includes(0)) return false;
  if (uname.length > 32 || gname.length > 32 || !plainText(uname) || !plainText(gname)) return false;
  const size = header.size;
  if (type !== 'file' && size !== 0) return false;
  if (!(inRange(uid, MAX_OCTAL_8) && inRange(gid, MAX_OCTAL_8) && inRange(size, MAX_OCTAL_12) && inRange(mtime, MAX_OCTAL_12))) {
    return false;
  }
  if (!(inRange(devmajor, Number.MAX_SAFE_INTEGER) && inRange(devminor, Number.MAX_SAFE_INTEGER))) return false;
  const isDevice = type === 'character-device' || type === 'block-device';
  if (isDevice && !(devmajor <= MAX_OCTAL_8 && devminor <= MAX_OCTAL_8)) return false;
  const typeflag = TYPEFLAGS[type];
  out.fill(0, offset, offset + BLOCK);
  // The checksum is summed as the fields are written: every other byte is zero.
  let sum = USTAR_MAGIC_SUM + CHECKSUM_SPACES_SUM + typeflag;
  sum += copyBytes(name, out, offset);
  if (slash === 1) {
    out[offset + name.length] = 0x2f;
    sum += 0x2f;
  }
  sum += octalSum(out, offset + 100, 8, header.mode & 0o7777);
  sum += octalSum(out, offset + 108, 8, uid);
  sum += octalSum(out, offset + 116, 8, gid);
  sum += octalSum(out, offset + 124, 12, size);
  sum += octalSum(out, offset + 136, 12, mtime);
  out[offset + 156] = typeflag;
  if (isLink) sum += copyBytes(linkname, out, offset + 157);
  // 'ustar\0' '00'
  out[offset + 257] = 0x75;
  out[offset + 258] = 0x73;
  out[offset + 259] = 0x74;
  out[offset + 260] = 0x61;
  out[offset + 261] = 0x72;
  out[offset + 263] = 0x30;
  out[offset + 264] = 0x30;
  sum += copyBytes(uname, out, offset + 265);
  sum += copyBytes(gname, out, offset + 297);
  sum += octalSum(out, offset + 329, 8, isDevice ? devmajor : 0);
  sum += octalSum(out, offset + 337, 8, isDevice ? devminor : 0);
  octal(out, offset + 148, 7, sum);
  out[offset + 155] = 0x20;
  return true;
}

const USTAR_MAGIC_SUM = 0x75 + 0x73 + 0x74 + 0x61 + 0x72 + 0x30 + 0x30;
const CHECKSUM_SPACES_SUM = 8 * 0x20;

function inRange(value: number, max: number): boolean {
  return Number.isSafeInteger(value) && value >= 0 && value <= max;
}

/** ASCII without NUL: fits a ustar field as it is. */
function plainText(bytes: Buffer): boolean {
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!;
    if (byte >= 0x80 || byte === 0) return false;
  }
  return true;
}

/** Copies a short field byte by byte (beats Buffer#copy's checks); returns the byte sum. */
function copyBytes(from: Buffer, to: Buffer, at: number): number {
  let sum = 0;
  for (let i = 0; i < from.length; i++) {
    const byte = from[i]!;
    to[at + i] = byte;
    sum += byte;
  }
  return sum;
}

/** {@link octal}, returning the sum of the bytes written. */
function octalSum(block: Buffer, offset: number, length: number, value: number): number {
  let v = value;
  let sum = 0;
  for (let i = offset + length - 2; i >= offset; i--) {
    const digit = 0x30 + (v % 8);
    block[i] = digit;
    sum += digit;
    v = Math.floor(v / 8);
  }
  block[offset + length - 1] = 0;
  return sum;
}

const TEXT_KEYS = new Set(['path', 'linkpath', 'uname', 'gname']);

function check(header: TarHeader): void {
  const integer = (field: string, value: number, min: number): void => {
    if (!Number.isSafeInteger(value) || value < min) {
      throw new RangeError(`tar header ${field} must be an integer >= ${min}, got ${value}`);
    }
  };
  integer('uid', header.uid, 0);
  integer('gid', header.gid, 0);
  integer('size', header.size, 0);
  integer('mtime', header.mtime, Number.MIN_SAFE_INTEGER);
  integer('devmajor', header.devmajor, 0);
  integer('devminor', header.devminor, 0);
  if (header.type !== 'file' && header.size !== 0) {
    throw new RangeError(`tar header: a ${header.type} has no body, but size is ${header.size}`);
  }
  const texts = [
    ['name', header.name],
    ['linkname', header.linkname],
    ['uname', header.uname],
    ['gname', header.gname],
  ] as const;
  for (const [field, value] of texts) {
    // A NUL would end the field early for every reader of ustar, and cannot name a file.
    if (value.includes(0)) throw new RangeError(`tar header ${field} contains a NUL byte`);
  }
  for (const [key] of header.pax) {
    if (key.length === 0 || key.includes(0x3d) || key.includes(0)) {
      throw new RangeError(`invalid PAX key ${JSON.stringify(key.toString('latin1'))}`);
    }
  }
}

function isAscii(bytes: Buffer): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i]! >= 0x80) return false;
  return true;
}

function asciiOnly(bytes: Buffer): Buffer {
  return isAscii(bytes) ? bytes : Buffer.from(bytes.filter((b) => b < 0x80));
}

function clamp(value: number, max: number): number {
  return Math.min(Math.max(value, 0), max);
}

/**
 * Splits a long ASCII name into ustar prefix (≤155) and name (≤100) at a slash, as Go's
 * archive/tar does; undefined when no slash allows it.
 */
function splitUstarPath(name: Buffer): { prefix: Buffer; suffix: Buffer } | undefined {
  if (!isAscii(name)) return undefined;
  let limit = name.length;
  if (limit > 156) limit = 156;
  else if (name[limit - 1] === 0x2f) limit--;
  const slash = name.lastIndexOf(0x2f, limit - 1);
  const suffixLength = name.length - slash - 1;
  if (slash <= 0 || suffixLength > 100 || suffixLength === 0 || slash > 155) return undefined;
  return { prefix: name.subarray(0, slash), suffix: name.subarray(slash + 1) };
}

/**
 * Zero-padded octal digits filling all but the last byte, which stays NUL. Written digit by
 * digit: string formatting was most of the cost of a header. `value` fits (checked by callers).
 */
function octal(block: Buffer, offset: number, length: number, value: number): void {
  let v = value;
  for (let i = offset + length - 2; i >= offset; i--) {
    block[i] = 0x30 + (v % 8);
    v = Math.floor(v / 8);
  }
  block[offset + length - 1] = 0;
}

/** `%06o\0 `, as GNU tar and Go write it; the sum counts the checksum field as spaces. */
function writeChecksum(block: Buffer): void {
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += block[i]!;
  octal(block, 148, 7, sum);
}

/** One `"%d %s=%s\n"` record, whose decimal length counts its own digits. Key bytes are written as they are. */
function paxRecord(key: string | Buffer, value: Buffer): Buffer {
  const keyBytes = typeof key === 'string' ? Buffer.from(key) : key;
  const body = keyBytes.length + value.length + 3; // space, '=', newline
  let length = body + String(body).length;
  if (String(length).length !== String(length - body).length) length = body + String(length).length;
  return Buffer.concat([Buffer.from(`${length} `), keyBytes, Buffer.from('='), value, Buffer.from('\n')]);
}

/**
 * The `x` header's own block. Its name only matters to readers without PAX support, who
 * extract it as a file; like Go we use `<dir>/PaxHeaders.0/<base>`, ASCII, cut to 100 bytes.
 */
function paxHeaderBlock(name: Buffer, payloadLength: number): Buffer {
  let end = name.length;
  while (end > 0 && name[end - 1] === 0x2f) end--;
  const slash = name.lastIndexOf(0x2f, end - 1);
  const dir = name.subarray(0, slash + 1);
  const base = name.subarray(slash + 1, end);
  const paxName = asciiOnly(Buffer.concat([dir, Buffer.from('PaxHeaders.0/'), base]));
  const block = Buffer.alloc(BLOCK);
  paxName.copy(block, 0, 0, 100);
  octal(block, 100, 8, 0o644);
  octal(block, 108, 8, 0);
  octal(block, 116, 8, 0);
  octal(block, 124, 12, payloadLength);
  octal(block, 136, 12, 0);
  block[156] = 0x78; // 'x'
  block.write('ustar\x0000', 257, 'latin1');
  octal(block, 329, 8, 0);
  octal(block, 337, 8, 0);
  writeChecksum(block);
  return block;
}
