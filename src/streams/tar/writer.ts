/**
 * Our tar writer (DESIGN.md §3): POSIX ustar, with extension headers only for what does not
 * fit, so that GNU tar, bsdtar, busybox, Python's tarfile, Go and tar2sqfs all read it back
 * without loss and without a warning. Output is a pure function of the header, so the same
 * rootfs always gives the same bytes.
 *
 * Where each thing goes:
 * - ASCII names, link targets and owner names that fit: the ustar fields (long names split
 *   into prefix and name at a slash, as Go does).
 * - Text that is UTF-8 but does not fit, or is not ASCII: PAX `path`/`linkpath`/`uname`/
 *   `gname`, as GNU tar and Go do.
 * - Names and link targets that are not UTF-8: their bytes as they are, in the ustar fields
 *   when they fit and in a GNU `L`/`K` long-name record when not. Never in PAX: a PAX text
 *   value must be UTF-8 unless `hdrcharset=BINARY` says otherwise, and GNU tar warns about
 *   that keyword once per entry. Owner names that are not UTF-8 go in the ustar field when
 *   they fit (32 bytes) and are left out when not: the numeric id still says who owns it,
 *   and a cut-down name could name someone else.
 * - Numbers out of octal range: a PAX record (`uid`, `size`, `SCHILY.devmajor`…) AND the
 *   ustar field in GNU base-256, as libarchive does; busybox reads only the latter.
 * - Sparse files: PAX sparse format 1.0, as GNU tar `--sparse --format=posix` writes it.
 * - The entry's own PAX records as they are, but for bsdtar's that GNU tar warns about and
 *   that say nothing SCHILY records do not (see {@link forGnuTar}).
 */
import { isUtf8 } from 'node:buffer';
import {
  BLOCK,
  CHECKSUM_SPACES_SUM,
  FIELD,
  GNU_MAGIC,
  MAX_OCTAL_8,
  MAX_OCTAL_12,
  USTAR_MAGIC,
  paddingOf,
  writeChecksum,
  writeChecksumField,
  writeNumber,
  writeOctal,
} from './layout.js';
import type { SparseMap, TarEntryType, TarHeader } from './types.js';
import { paxKeyIs } from './pax-key.js';
import { isBlockAligned } from './sparse-align.js';

const ZERO_BLOCK = Buffer.alloc(BLOCK);

/** Two zero blocks: the end-of-archive marker. */
export const END_OF_ARCHIVE: Buffer = Buffer.alloc(2 * BLOCK);

/** Zeros from the end of a body of `size` bytes to the next block boundary (a shared slice). */
export function paddingFor(size: number): Buffer {
  return ZERO_BLOCK.subarray(0, paddingOf(size));
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

/**
 * How many body bytes follow {@link encodeHeader}(`header`) in the archive: a file's size, the
 * data segments of a sparse file (its holes are not stored), nothing for other types. Follow
 * them with {@link paddingFor}(`bodyLength(header)`).
 */
export function bodyLength(header: TarHeader): number {
  if (header.type !== 'file') return 0;
  return header.sparse === undefined ? header.size : storedLength(header.sparse);
}

/**
 * The blocks that precede an entry's body: a PAX `x` header and GNU long-name records when
 * some field does not fit ustar, then the ustar header, then (sparse files) the sparse map.
 * Follow it with {@link bodyLength}(`header`) body bytes and their {@link paddingFor}.
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
  const sparse = header.type === 'file' ? header.sparse : undefined;
  const out = new Extensions();
  const block = Buffer.alloc(BLOCK);

  let sparseMap: Buffer | undefined;
  let storedSize = header.type === 'file' ? header.size : 0;
  if (sparse === undefined) out.path(block, name);
  else {
    const segments = withFinalHole(sparse, header.size);
    sparseMap = encodeSparseMap(segments);
    storedSize = sparseMap.length + storedLength(sparse);
    out.record('GNU.sparse.major', '1');
    out.record('GNU.sparse.minor', '0');
    if (isUtf8(name)) {
      // Readers that know no sparse files extract the map and data under this other name,
      // instead of a wrong file at the real one.
      out.record('GNU.sparse.name', name);
      out.record('GNU.sparse.realsize', String(header.size));
      out.path(block, sparseFileName(name));
    } else {
      // GNU.sparse.name is PAX text; the real name then goes where non-UTF-8 names go.
      out.record('GNU.sparse.realsize', String(header.size));
      out.path(block, name);
    }
  }
  writeOctal(block, FIELD.mode.offset, 8, header.mode & 0o7777);
  out.number(block, 'uid', FIELD.uid, header.uid);
  out.number(block, 'gid', FIELD.gid, header.gid);
  out.number(block, 'size', FIELD.size, storedSize);
  if (header.pax.some(([key]) => paxKeyIs(key, 'mtime'))) {
    writeNumber(block, FIELD.mtime.offset, FIELD.mtime.length, header.mtime);
  } else out.number(block, 'mtime', FIELD.mtime, header.mtime);
  block[FIELD.typeflag.offset] = TYPEFLAGS[header.type];
  if (header.type === 'link' || header.type === 'symlink') out.linkpath(block, header.linkname);
  USTAR_MAGIC.copy(block, FIELD.magic.offset);
  out.owner(block, 'uname', FIELD.uname.offset, header.uname);
  out.owner(block, 'gname', FIELD.gname.offset, header.gname);
  const isDevice = header.type === 'character-device' || header.type === 'block-device';
  // POSIX has no PAX keyword for device numbers; star's SCHILY ones are what GNU tar and
  // libarchive read (and so does our reader).
  out.number(block, 'SCHILY.devmajor', FIELD.devmajor, isDevice ? header.devmajor : 0);
  out.number(block, 'SCHILY.devminor', FIELD.devminor, isDevice ? header.devminor : 0);
  writeChecksum(block);

  const own = header.pax.length === 0 ? [] : forGnuTar(header.pax);
  if (out.isEmpty() && own.length === 0 && sparseMap === undefined) return block;
  const parts: Buffer[] = [];
  if (out.records.length > 0 || own.length > 0) {
    const payload = Buffer.concat([...out.records, ...own].map(([key, value]) => paxRecord(key, value)));
    parts.push(paxHeaderBlock(name, payload.length), payload, paddingFor(payload.length));
  }
  // After the PAX header: tar2sqfs forgets a long name that comes before one.
  parts.push(...out.longNames, block);
  if (sparseMap !== undefined) parts.push(sparseMap);
  return Buffer.concat(parts);
}

/**
 * Collects what an entry needs beyond its ustar block while the block is filled: PAX
 * records (in the order the fields are written) and GNU long-name records.
 */
class Extensions {
  readonly records: Array<[key: Buffer, value: Buffer]> = [];
  readonly longNames: Buffer[] = [];

  isEmpty(): boolean {
    return this.records.length === 0 && this.longNames.length === 0;
  }

  record(key: string, value: Buffer | string): void {
    this.records.push([Buffer.from(key, 'latin1'), typeof value === 'string' ? Buffer.from(value) : value]);
  }

  /** The name: name field, prefix and name fields, PAX `path` or GNU `L`. */
  path(block: Buffer, name: Buffer): void {
    const { offset, length } = FIELD.name;
    if (isAscii(name)) {
      if (name.length <= length) return void name.copy(block, offset);
      if (this.split(block, name)) return;
      this.record('path', name);
      name.copy(block, offset, 0, length); // a hint for readers without PAX
    } else if (isUtf8(name)) {
      this.record('path', name);
      asciiOnly(name).copy(block, offset, 0, length);
    } else {
      if (name.length <= length) return void name.copy(block, offset);
      if (this.split(block, name)) return;
      this.longName(0x4c, name);
      name.copy(block, offset, 0, length);
    }
  }

  /** The link target: the linkname field, PAX `linkpath` or GNU `K`. */
  linkpath(block: Buffer, target: Buffer): void {
    const { offset, length } = FIELD.linkname;
    const ascii = isAscii(target);
    if (target.length <= length && (ascii || !isUtf8(target))) target.copy(block, offset);
    else if (ascii || isUtf8(target)) {
      this.record('linkpath', target);
      asciiOnly(target).copy(block, offset, 0, length);
    } else {
      this.longName(0x4b, target);
      target.copy(block, offset, 0, length);
    }
  }

  /** uname or gname: 32 bytes of field, PAX when UTF-8 does not fit, else left out. */
  owner(block: Buffer, key: string, offset: number, value: Buffer): void {
    const width = FIELD.uname.length;
    if (value.length <= width && (isAscii(value) || !isUtf8(value))) value.copy(block, offset);
    else if (isUtf8(value)) {
      this.record(key, value);
      asciiOnly(value).copy(block, offset, 0, width);
    }
  }

  /** A number in its field; out of octal range, also a PAX record (the exact value). */
  number(block: Buffer, key: string, field: { offset: number; length: number }, value: number): void {
    if (!writeNumber(block, field.offset, field.length, value)) this.record(key, String(value));
  }

  private split(block: Buffer, name: Buffer): boolean {
    const split = splitUstarPath(name);
    if (split === undefined) return false;
    split.suffix.copy(block, FIELD.name.offset);
    split.prefix.copy(block, FIELD.prefix.offset);
    return true;
  }

  /** GNU tar's own form: NUL-terminated payload, after an old-GNU `././@LongLink` block. */
  private longName(type: number, value: Buffer): void {
    const block = Buffer.alloc(BLOCK);
    block.write('././@LongLink', FIELD.name.offset, 'latin1');
    writeOctal(block, FIELD.mode.offset, 8, 0o644);
    writeOctal(block, FIELD.uid.offset, 8, 0);
    writeOctal(block, FIELD.gid.offset, 8, 0);
    writeOctal(block, FIELD.size.offset, 12, value.length + 1);
    writeOctal(block, FIELD.mtime.offset, 12, 0);
    block[FIELD.typeflag.offset] = type;
    GNU_MAGIC.copy(block, FIELD.magic.offset);
    writeChecksum(block);
    // The payload's NUL, then the padding.
    this.longNames.push(block, value, ZERO_BLOCK.subarray(0, 1 + paddingOf(value.length + 1)));
  }
}

/**
 * The common case of {@link encodeHeader} without allocating: when `header` needs no
 * extension header (no PAX records, not sparse, every field fits ustar as ASCII), writes its
 * ustar block, the same bytes {@link encodeHeader} would give, into `out` at `offset` and
 * returns true. Otherwise writes nothing and returns false. `out` needs 512 bytes of room at
 * `offset`.
 */
export function encodeHeaderInto(header: TarHeader, out: Buffer, offset: number): boolean {
  // Everything check() refuses is left to encodeHeader, which throws for it.
  if (header.pax.length !== 0 || header.sparse !== undefined) return false;
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
  sum += writeOctal(out, offset + FIELD.mode.offset, 8, header.mode & 0o7777);
  sum += writeOctal(out, offset + FIELD.uid.offset, 8, uid);
  sum += writeOctal(out, offset + FIELD.gid.offset, 8, gid);
  sum += writeOctal(out, offset + FIELD.size.offset, 12, size);
  sum += writeOctal(out, offset + FIELD.mtime.offset, 12, mtime);
  out[offset + FIELD.typeflag.offset] = typeflag;
  if (isLink) sum += copyBytes(linkname, out, offset + FIELD.linkname.offset);
  copyBytes(USTAR_MAGIC, out, offset + FIELD.magic.offset);
  sum += copyBytes(uname, out, offset + FIELD.uname.offset);
  sum += copyBytes(gname, out, offset + FIELD.gname.offset);
  sum += writeOctal(out, offset + FIELD.devmajor.offset, 8, isDevice ? devmajor : 0);
  sum += writeOctal(out, offset + FIELD.devminor.offset, 8, isDevice ? devminor : 0);
  writeChecksumField(out, offset, sum);
  return true;
}

const USTAR_MAGIC_SUM = USTAR_MAGIC.reduce((sum, byte) => sum + byte, 0);

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

// ---------------------------------------------------------------------------------------------
// PAX keys: the one place that knows how TarHeader.pax spells them

const SCHILY_XATTR = 'SCHILY.xattr.';
const LIBARCHIVE_XATTR = 'LIBARCHIVE.xattr.';
/** Where the archived file lay on its source filesystem: nothing an extractor restores. */
const SOURCE_ONLY = new Set(['SCHILY.dev', 'SCHILY.ino', 'SCHILY.nlink']);

/**
 * The entry's own PAX records, without the copies GNU tar would warn about ("Ignoring unknown
 * extended header keyword", once per entry): bsdtar's `LIBARCHIVE.xattr.NAME` (name %-encoded,
 * value base64) goes when the same xattr is also there as `SCHILY.xattr.NAME`, which is what
 * GNU tar, bsdtar and Go read; bsdtar's `SCHILY.dev`/`ino`/`nlink` go. A `LIBARCHIVE.xattr`
 * record with no SCHILY twin stays as it is: Docker and containerd (Go) do not apply it, so
 * turning it into a SCHILY record would give the rootfs an xattr no runtime gives it.
 * Anything else is kept as it is (`SCHILY.fflags` holds chattr flags bsdtar restores).
 */
function forGnuTar(pax: TarHeader['pax']): Array<[key: Buffer, value: Buffer]> {
  const keys = pax.map(([key]) => key.toString('latin1'));
  const xattrs = new Set(keys.filter((key) => key.startsWith(SCHILY_XATTR)).map((key) => key.slice(SCHILY_XATTR.length)));
  const out: Array<[Buffer, Buffer]> = [];
  pax.forEach(([key, value], i) => {
    const text = keys[i]!;
    if (SOURCE_ONLY.has(text)) return;
    if (text.startsWith(LIBARCHIVE_XATTR)) {
      const name = percentDecoded(text.slice(LIBARCHIVE_XATTR.length));
      if (name !== undefined && xattrs.has(name)) return;
    }
    out.push([key, value]);
  });
  return out;
}

/** `%XX` escapes decoded to the bytes they stand for (as latin1 chars); undefined if malformed. */
function percentDecoded(text: string): string | undefined {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    if (text[i] !== '%') {
      out += text[i];
      continue;
    }
    const hex = text.slice(i + 1, i + 3);
    if (!/^[0-9a-fA-F]{2}$/.test(hex)) return undefined;
    out += String.fromCharCode(parseInt(hex, 16));
    i += 2;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

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
    const bytes = key;
    if (bytes.length === 0 || bytes.includes(0x3d) || bytes.includes(0)) {
      throw new RangeError(`invalid PAX key ${JSON.stringify(bytes.toString('latin1'))}`);
    }
  }
  if (header.sparse !== undefined) {
    if (header.type !== 'file') throw new RangeError(`tar header: a ${header.type} cannot be sparse`);
    let end = 0;
    for (const [offset, length] of header.sparse.segments) {
      integer('sparse segment offset', offset, end);
      integer('sparse segment length', length, 0);
      end = offset + length;
      if (end > header.size) {
        throw new RangeError(`tar header: sparse segment [${offset}, ${length}] ends past the size ${header.size}`);
      }
    }
    if (!isBlockAligned(header.sparse)) {
      throw new RangeError('tar header: a sparse data segment other than the last is not a whole number of blocks (alignSparse makes it one)');
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

/**
 * Splits a long name into ustar prefix (≤155) and name (≤100) at a slash, as Go's
 * archive/tar does; undefined when no slash allows it.
 */
function splitUstarPath(name: Buffer): { prefix: Buffer; suffix: Buffer } | undefined {
  let limit = name.length;
  if (limit > 156) limit = 156;
  else if (name[limit - 1] === 0x2f) limit--;
  const slash = name.lastIndexOf(0x2f, limit - 1);
  const suffixLength = name.length - slash - 1;
  if (slash <= 0 || suffixLength > 100 || suffixLength === 0 || slash > 155) return undefined;
  return { prefix: name.subarray(0, slash), suffix: name.subarray(slash + 1) };
}

/** One `"%d %s=%s\n"` record, whose decimal length counts its own digits. */
function paxRecord(key: Buffer, value: Buffer): Buffer {
  const body = key.length + value.length + 3; // space, '=', newline
  let length = body + String(body).length;
  if (String(length).length !== String(length - body).length) length = body + String(length).length;
  return Buffer.concat([Buffer.from(`${length} `), key, Buffer.from('='), value, Buffer.from('\n')]);
}

/**
 * The `x` header's own block. Its name only matters to readers without PAX support, who
 * extract it as a file; like Go we use `<dir>/PaxHeaders.0/<base>`, ASCII, cut to 100 bytes.
 */
function paxHeaderBlock(name: Buffer, payloadLength: number): Buffer {
  const block = Buffer.alloc(BLOCK);
  asciiOnly(insertDir(name, 'PaxHeaders.0', '')).copy(block, FIELD.name.offset, 0, FIELD.name.length);
  writeOctal(block, FIELD.mode.offset, 8, 0o644);
  writeOctal(block, FIELD.uid.offset, 8, 0);
  writeOctal(block, FIELD.gid.offset, 8, 0);
  writeOctal(block, FIELD.size.offset, 12, payloadLength);
  writeOctal(block, FIELD.mtime.offset, 12, 0);
  block[FIELD.typeflag.offset] = 0x78; // 'x'
  USTAR_MAGIC.copy(block, FIELD.magic.offset);
  writeOctal(block, FIELD.devmajor.offset, 8, 0);
  writeOctal(block, FIELD.devminor.offset, 8, 0);
  writeChecksum(block);
  return block;
}

/** `<dir>/<inserted>/<base>`, with `noDir` as `<dir>` for a name without a directory. */
function insertDir(name: Buffer, inserted: string, noDir: string): Buffer {
  let end = name.length;
  while (end > 0 && name[end - 1] === 0x2f) end--;
  const slash = name.lastIndexOf(0x2f, end - 1);
  const dir = slash >= 0 ? name.subarray(0, slash + 1) : Buffer.from(noDir);
  return Buffer.concat([dir, Buffer.from(`${inserted}/`), name.subarray(slash + 1, end)]);
}

// ---------------------------------------------------------------------------------------------
// Sparse files

/**
 * The ustar name of a PAX 1.0 sparse file, GNU tar's `%d/GNUSparseFile.%p/%f` with 0 for the
 * process id (so the output stays a function of the header); `%d` is `.` at the top.
 */
function sparseFileName(name: Buffer): Buffer {
  return insertDir(name, 'GNUSparseFile.0', './');
}


function storedLength(sparse: SparseMap): number {
  let total = 0;
  for (const [, length] of sparse.segments) total += length;
  return total;
}

/**
 * The segments, plus `[size, 0]` when the file ends in a hole, as GNU tar writes it: GNU tar
 * only sets the size of the file it extracts from that last, empty segment.
 */
function withFinalHole(sparse: SparseMap, size: number): ReadonlyArray<readonly [number, number]> {
  const segments = sparse.segments;
  const last = segments[segments.length - 1];
  const end = last === undefined ? 0 : last[0] + last[1];
  return end < size || segments.length === 0 ? [...segments, [size, 0]] : segments;
}

/** The 1.0 map at the start of the data: decimal count, offset and length lines, zero-padded. */
function encodeSparseMap(segments: ReadonlyArray<readonly [number, number]>): Buffer {
  const lines = [String(segments.length)];
  for (const [offset, length] of segments) lines.push(String(offset), String(length));
  const text = Buffer.from(`${lines.join('\n')}\n`, 'latin1');
  return Buffer.concat([text, paddingFor(text.length)]);
}
