/**
 * The tar header block, in one place for our reader and writer: where each ustar field lies,
 * how numbers are written in it (octal digits, or GNU base-256 when they do not fit), the
 * checksum, the magic, and the 512-byte blocking.
 */
import { MalformedArchiveError } from '../../errors.js';

export const BLOCK = 512;

/** Offset and length of each field of a POSIX ustar header block. */
export const FIELD = {
  name: { offset: 0, length: 100 },
  mode: { offset: 100, length: 8 },
  uid: { offset: 108, length: 8 },
  gid: { offset: 116, length: 8 },
  size: { offset: 124, length: 12 },
  mtime: { offset: 136, length: 12 },
  checksum: { offset: 148, length: 8 },
  typeflag: { offset: 156, length: 1 },
  linkname: { offset: 157, length: 100 },
  /** `ustar\0` then version `00` (POSIX), or `ustar  \0` across both (old GNU). */
  magic: { offset: 257, length: 6 },
  version: { offset: 263, length: 2 },
  uname: { offset: 265, length: 32 },
  gname: { offset: 297, length: 32 },
  devmajor: { offset: 329, length: 8 },
  devminor: { offset: 337, length: 8 },
  prefix: { offset: 345, length: 155 },
} as const;

export const USTAR_MAGIC: Buffer = Buffer.from('ustar\x0000', 'latin1');
/** Magic and version of old GNU headers (`L`/`K` long-name records, as GNU tar writes them). */
export const GNU_MAGIC: Buffer = Buffer.from('ustar  \x00', 'latin1');

/** The checksum field counts as eight spaces in its own sum. */
export const CHECKSUM_SPACES_SUM = 8 * 0x20;

/** Largest values of the octal fields: 7 digits for 8-byte fields, 11 for 12-byte ones. */
export const MAX_OCTAL_8 = 0o7777777;
export const MAX_OCTAL_12 = 0o77777777777;

export function maxOctal(length: number): number {
  return length === 8 ? MAX_OCTAL_8 : length === 12 ? MAX_OCTAL_12 : 8 ** (length - 1) - 1;
}

/** Zero bytes from the end of a body of `size` bytes to the next block boundary. */
export function paddingOf(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

// ---------------------------------------------------------------------------------------------
// Writing

/**
 * Zero-padded octal digits filling all but the last byte, which stays NUL; returns the sum of
 * the bytes written (for a checksum summed as the fields are written). Digit by digit: string
 * formatting was most of the cost of a header. `value` fits (callers check {@link maxOctal}).
 */
export function writeOctal(block: Buffer, offset: number, length: number, value: number): number {
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

/**
 * GNU base-256: big-endian two's complement over the whole field, with the top bit of the
 * first byte set as the marker; so a positive value starts with 0x80 and a negative one with
 * 0xff, the only two lead bytes Python's tarfile reads. Any safe integer fits 8 bytes.
 */
export function writeBase256(block: Buffer, offset: number, length: number, value: number): void {
  let v = value;
  for (let i = offset + length - 1; i > offset; i--) {
    block[i] = ((v % 256) + 256) % 256;
    v = Math.floor(v / 256);
  }
  block[offset] = value < 0 ? 0xff : 0x80;
}

/** Octal when the value fits, base-256 otherwise; true when octal was enough. */
export function writeNumber(block: Buffer, offset: number, length: number, value: number): boolean {
  if (value >= 0 && value <= maxOctal(length)) {
    writeOctal(block, offset, length, value);
    return true;
  }
  writeBase256(block, offset, length, value);
  return false;
}

/** The unsigned byte sum with the checksum field read as spaces, as POSIX defines it. */
export function checksumOf(block: Buffer): number {
  let sum = CHECKSUM_SPACES_SUM;
  const { offset, length } = FIELD.checksum;
  for (let i = 0; i < offset; i++) sum += block[i]!;
  for (let i = offset + length; i < BLOCK; i++) sum += block[i]!;
  return sum;
}

/** Writes `sum` as `%06o\0 `, the way GNU tar and Go do. */
export function writeChecksumField(block: Buffer, offset: number, sum: number): void {
  writeOctal(block, offset + FIELD.checksum.offset, 7, sum);
  block[offset + FIELD.checksum.offset + 7] = 0x20;
}

/** Computes and writes the checksum of a block whose other fields are all written. */
export function writeChecksum(block: Buffer): void {
  writeChecksumField(block, 0, checksumOf(block));
}

// ---------------------------------------------------------------------------------------------
// Reading

export function isZeroBlock(block: Buffer): boolean {
  // A real header always has checksum digits, so this rejects nearly every header at once.
  if (block[148] !== 0) return false;
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

/** GNU tar accepts both sums, because old tars summed the bytes as signed chars. */
export function checksumMatches(block: Buffer, label: () => string): boolean {
  // Unrolled: this loop is a good part of the cost of a header.
  let a = 0;
  let b = 0;
  let c = 0;
  let d = 0;
  for (let i = 0; i < BLOCK; i += 4) {
    a += block[i]!;
    b += block[i + 1]!;
    c += block[i + 2]!;
    d += block[i + 3]!;
  }
  let field = 0;
  for (let i = 148; i < 156; i++) field += block[i]!;
  const unsigned = a + b + c + d - field + 8 * 0x20; // the checksum field counts as spaces
  const stored = parseNumber(block, 148, 8, 'checksum', label);
  if (stored === unsigned) return true;
  let high = 0;
  for (let i = 0; i < BLOCK; i++) if (block[i]! >= 0x80 && (i < 148 || i >= 156)) high++;
  return stored === unsigned - 256 * high;
}

/** Octal fields may be padded with spaces or NULs (both seen in the wild). */
export function isSpaceOrNul(byte: number | undefined): boolean {
  return byte === 0x20 || byte === 0;
}

/**
 * A numeric field: base-256 when the high bit of the first byte is set (GNU, also negative),
 * otherwise octal digits, optionally surrounded by spaces or NULs (both seen in the wild).
 * Like GNU tar, the digits may be followed by a NUL and leftover bytes.
 */
export function parseNumber(block: Buffer, offset: number, length: number, field: string, label: () => string): number {
  const first = block[offset]!;
  if ((first & 0x80) !== 0) {
    const invert = (first & 0x40) !== 0 ? 0xff : 0;
    let value = 0;
    for (let i = 0; i < length; i++) {
      let byte = block[offset + i]! ^ invert;
      if (i === 0) byte &= 0x7f;
      value = value * 256 + byte;
      if (value > Number.MAX_SAFE_INTEGER) throw badField(field, label);
    }
    return invert === 0 ? value : -value - 1;
  }
  const limit = offset + length;
  let i = offset;
  while (i < limit && isSpaceOrNul(block[i])) i++;
  let value = 0;
  for (; i < limit; i++) {
    const byte = block[i]!;
    if (byte < 0x30 || byte > 0x37) break;
    value = value * 8 + (byte - 0x30);
  }
  if (i < limit && !isSpaceOrNul(block[i])) throw badField(field, label);
  return value;
}

function badField(field: string, label: () => string): MalformedArchiveError {
  return new MalformedArchiveError(`tar header of ${label()}: invalid ${field} field`);
}
