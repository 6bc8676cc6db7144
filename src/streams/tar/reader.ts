/**
 * Our tar reader (DESIGN.md §3, "The tar codec is ours"): pull-based, one entry at a time,
 * bytes end to end. Bodies are handed out as subarrays of the source chunks, so a 1 GB layer
 * is parsed without copying its file contents; only a 512-byte block that straddles two
 * source chunks is copied.
 *
 * Formats read: v7, POSIX ustar (prefix field), star (short prefix), old GNU (`L`/`K` long
 * names, base-256 numbers, type `S` sparse files), PAX (`x` and Solaris `X` folded into the
 * header, `g` dropped) and the three PAX encodings of GNU sparse files (0.0, 0.1, 1.0). A
 * sparse file keeps its map (`header.sparse`); its body can be read expanded or as stored.
 *
 * Where tar readers disagree we read as Go's archive/tar (what Docker and containerd apply
 * layers with) and libarchive do: a `\0`-type entry whose name ends in `/` is a directory
 * without data whatever its size says; of consecutive `x` (or `L`, `K`) headers only the last
 * applies; a stream that ends cleanly at a header boundary without the end-of-archive marker
 * is complete (a `TAR_NO_END_MARKER` warning says so); metadata-only entries we cannot use
 * (volume label `V`, Solaris ACL `A`, old GNU rename list `N`) are skipped with a
 * `TAR_SKIPPED_ENTRY` warning.
 *
 * Anything truncated (inside a header, an extension header, a body or its padding), corrupt
 * or of an unknown type is a {@link MalformedArchiveError}: a layer we cannot read exactly must
 * not be half-applied to a rootfs.
 */
import { MalformedArchiveError, OciRootfsError, throwIfAborted } from '../../errors.js';
import { BLOCK, checksumMatches, isSpaceOrNul, isZeroBlock, paddingOf, parseNumber } from './layout.js';
import type { PaxRecord, TarEntry, TarEntryType, TarHeader, TarWarning } from './types.js';

/** Real GNU long names and PAX headers are a few KiB; anything past this is an attack or garbage. */
const MAX_EXTENSION_BYTES = 1024 * 1024;
/** Bounds the memory a hostile sparse map can make us hold (GNU tar itself has no limit). */
const MAX_SPARSE_ENTRIES = 1 << 18;
/** Holes of sparse files are yielded as slices of this; consumers must not write into body chunks. */
const ZEROS = Buffer.alloc(256 * 1024);
const EMPTY = Buffer.alloc(0);

export interface ReadTarOptions {
  /** Checked between entries and whenever a new source chunk is pulled. */
  signal?: AbortSignal;
  /**
   * Told what the reader accepted but a caller may want to report: `TAR_NO_END_MARKER` (the
   * stream ended at a header boundary without the end-of-archive marker), `TAR_SKIPPED_ENTRY`
   * (a volume label, Solaris ACL or old GNU rename list was skipped).
   */
  onWarning?: (warning: TarWarning) => void;
  /**
   * Told the type flag of every header block, before its entry is read: with the payload for
   * extension headers (`x`, `X`, `g`, `L`, `K`), which the reader folds or drops. For callers
   * that must know the archive's exact dialect (the single-layer pass-through).
   */
  onHeader?: (flag: string, payload?: Buffer) => void;
}

/**
 * Reads a tar stream entry by entry.
 *
 * Each entry's body must be read (at most once) before the next entry is requested; whatever
 * is left unread is skipped then. After the end-of-archive marker the rest of the source is
 * read and discarded, because the caller digests the whole blob, not just the archive.
 *
 * @example
 * for await (const entry of readTar(chunks)) {
 *   if (entry.header.type === 'file') for await (const chunk of entry.body()) hash.update(chunk);
 * }
 */
export async function* readTar(
  source: AsyncIterable<Uint8Array>,
  options: ReadTarOptions = {},
): AsyncGenerator<TarEntry> {
  const { signal, onWarning, onHeader } = options;
  const input = new ArchiveInput(source, signal);
  let entry: ArchiveEntry | undefined;
  let finished = false;
  try {
    for (let ordinal = 0; ; ordinal++) {
      if (entry !== undefined && !entry.finishNow()) await entry.finish();
      throwIfAborted(signal);
      const plan = await readEntryPlan(input, ordinal, onWarning, onHeader);
      if (plan === null) {
        await input.drain();
        finished = true;
        return;
      }
      entry = new ArchiveEntry(input, plan, ordinal);
      yield entry;
    }
  } finally {
    // A consumer that stops early (break, error) must release the source, e.g. the HTTP body.
    if (!finished) await input.close();
  }
}

// ---------------------------------------------------------------------------------------------
// The source, as blocks and pieces

/**
 * Describes where we are, for an error message. Lazy, because building a message for each of
 * 100k entries that parse fine would cost more than parsing them.
 */
type Where = () => string;

function truncated(where: Where, offset: number): MalformedArchiveError {
  return new MalformedArchiveError(`tar archive truncated ${where()} (at byte ${offset})`);
}

/**
 * A cursor over the source chunks. It never concatenates chunks: a block that lies inside one
 * chunk is returned as a subarray, and body bytes are cut out of the chunks as they come.
 */
class ArchiveInput {
  /** Absolute position in the archive, for error messages. */
  offset = 0;
  private readonly iterator: AsyncIterator<Uint8Array>;
  private chunk: Buffer = EMPTY;
  private pos = 0;
  private ended = false;

  constructor(
    source: AsyncIterable<Uint8Array>,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.iterator = source[Symbol.asyncIterator]();
  }

  /** Makes at least one unread byte available; false at the end of the source. */
  private async pull(): Promise<boolean> {
    while (this.pos >= this.chunk.length) {
      if (this.ended) return false;
      throwIfAborted(this.signal);
      const result = await this.iterator.next();
      if (result.done === true) {
        this.ended = true;
        this.chunk = EMPTY;
        this.pos = 0;
        return false;
      }
      const value = result.value;
      this.chunk = Buffer.isBuffer(value)
        ? value
        : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
      this.pos = 0;
    }
    return true;
  }

  /**
   * The next block if the current chunk holds all of it. The common case, taken without a
   * promise: awaiting per header costs more than parsing it.
   */
  blockNow(): Buffer | undefined {
    return this.chunk.length - this.pos >= BLOCK ? this.cut(BLOCK) : undefined;
  }

  /** Skips `length` bytes if the current chunk holds them all; otherwise does nothing. */
  skipNow(length: number): boolean {
    if (this.chunk.length - this.pos < length) return false;
    this.pos += length;
    this.offset += length;
    return true;
  }

  /**
   * The next 512-byte block, or null when the source ends exactly here. The block may alias
   * the source chunk: parse it before reading on, and copy what must outlive the call.
   */
  async block(where: Where): Promise<Buffer | null> {
    if (this.chunk.length - this.pos >= BLOCK) return this.cut(BLOCK);
    if (!(await this.pull())) return null;
    if (this.chunk.length - this.pos >= BLOCK) return this.cut(BLOCK);
    const out = Buffer.allocUnsafe(BLOCK);
    await this.copyInto(out, where);
    return out;
  }

  /** Exactly `length` bytes, copied (for extension payloads that outlive the chunk). */
  async bytes(length: number, where: Where): Promise<Buffer> {
    const out = Buffer.allocUnsafe(length);
    await this.copyInto(out, where);
    return out;
  }

  /** Up to `max` (> 0) bytes, as a subarray of the current chunk. */
  async piece(max: number, where: Where): Promise<Buffer> {
    if (!(await this.pull())) throw truncated(where, this.offset);
    return this.cut(Math.min(max, this.chunk.length - this.pos));
  }

  async skip(length: number, where: Where): Promise<void> {
    let left = length;
    while (left > 0) {
      if (!(await this.pull())) throw truncated(where, this.offset);
      const n = Math.min(left, this.chunk.length - this.pos);
      this.pos += n;
      this.offset += n;
      left -= n;
    }
  }

  /** Reads and discards the rest of the source, so that a digest over it completes. */
  async drain(): Promise<void> {
    this.offset += this.chunk.length - this.pos;
    this.pos = this.chunk.length;
    while (await this.pull()) {
      this.offset += this.chunk.length;
      this.pos = this.chunk.length;
    }
  }

  async close(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    await this.iterator.return?.();
  }

  private cut(length: number): Buffer {
    const out = this.chunk.subarray(this.pos, this.pos + length);
    this.pos += length;
    this.offset += length;
    return out;
  }

  private async copyInto(out: Buffer, where: Where): Promise<void> {
    let filled = 0;
    while (filled < out.length) {
      if (!(await this.pull())) throw truncated(where, this.offset);
      const n = Math.min(out.length - filled, this.chunk.length - this.pos);
      this.chunk.copy(out, filled, this.pos, this.pos + n);
      filled += n;
      this.pos += n;
      this.offset += n;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Bodies

/** A parsed entry: its header and how its body is laid out in the archive. */
interface EntryPlan {
  header: TarHeader;
  /** Bytes of the body still in the archive (after a sparse 1.0 map, which is already read). */
  stored: number;
  /** Zeros after the stored bytes up to the block boundary. */
  padding: number;
}

function* zeroChunks(length: number): Generator<Buffer> {
  for (let left = length; left > 0; left -= ZEROS.length) {
    yield ZEROS.subarray(0, Math.min(left, ZEROS.length));
  }
}

/**
 * One entry and its body. It tracks how many stored bytes are left, so that whatever the
 * consumer did not read can be skipped when it asks for the next entry. The entry object is
 * itself what {@link readTar} yields: no wrapper or closures per entry.
 */
class ArchiveEntry implements TarEntry {
  readonly header: TarHeader;
  private remaining: number;
  private opened = false;
  private readonly insideBody: Where = () => `inside the body of ${this.label()}`;
  private superseded = false;

  constructor(
    private readonly input: ArchiveInput,
    private readonly plan: EntryPlan,
    readonly ordinal: number,
  ) {
    this.header = plan.header;
    this.remaining = plan.stored;
  }

  body(): AsyncIterable<Buffer> {
    this.open();
    const sparse = this.header.sparse;
    return sparse === undefined ? this.plain() : this.expand(sparse.segments, this.header.size);
  }

  storedBody(): AsyncIterable<Buffer> {
    this.open();
    return this.plain();
  }

  /** Skips the unread rest and the padding if the current chunk holds them; true if done. */
  finishNow(): boolean {
    this.superseded = true;
    if (!this.input.skipNow(this.remaining + this.plan.padding)) return false;
    this.remaining = 0;
    return true;
  }

  /** Called when the next entry is requested: skips the unread rest and the padding. */
  async finish(): Promise<void> {
    this.superseded = true;
    const left = this.remaining;
    this.remaining = 0;
    await this.input.skip(left, this.insideBody);
    await this.input.skip(this.plan.padding, () => `inside the padding of ${this.label()}`);
  }

  private open(): void {
    if (this.superseded) throw new OciRootfsError(`${this.label()}: body read after the next entry was requested`);
    if (this.opened) throw new OciRootfsError(`${this.label()}: body read twice`);
    this.opened = true;
  }

  private async *plain(): AsyncGenerator<Buffer> {
    this.checkCurrent();
    while (this.remaining > 0) yield await this.stored(this.remaining);
  }

  private async *expand(
    segments: ReadonlyArray<readonly [offset: number, length: number]>,
    size: number,
  ): AsyncGenerator<Buffer> {
    this.checkCurrent();
    let at = 0;
    for (const [offset, length] of segments) {
      for (const zeros of zeroChunks(offset - at)) {
        this.checkCurrent();
        yield zeros;
      }
      for (let left = length; left > 0; ) {
        const piece = await this.stored(left);
        left -= piece.length;
        yield piece;
      }
      at = offset + length;
    }
    for (const zeros of zeroChunks(size - at)) {
      this.checkCurrent();
      yield zeros;
    }
  }

  private async stored(max: number): Promise<Buffer> {
    this.checkCurrent();
    const piece = await this.input.piece(Math.min(max, this.remaining), this.insideBody);
    this.remaining -= piece.length;
    return piece;
  }

  /** A body iterator kept past the next entry would otherwise read the next entry's bytes. */
  private checkCurrent(): void {
    if (this.superseded) throw new OciRootfsError(`${this.label()}: body read after the next entry was requested`);
  }

  private label(): string {
    return entryLabel(this.ordinal, this.header.name);
  }
}

function entryLabel(ordinal: number, name: Buffer | undefined): string {
  return name === undefined || name.length === 0
    ? `entry ${ordinal}`
    : `entry ${ordinal} (${JSON.stringify(name.toString('utf8'))})`;
}

// ---------------------------------------------------------------------------------------------
// Header fields

/** Which header layout a block uses; decides whether the prefix, uname and devices exist. */
type Layout = 'v7' | 'ustar' | 'star' | 'gnu';

function layoutOf(block: Buffer): Layout {
  // Byte compares: this runs for every header, and decoding strings would dominate it.
  const ustar =
    block[257] === 0x75 && block[258] === 0x73 && block[259] === 0x74 && block[260] === 0x61 && block[261] === 0x72;
  if (!ustar) return 'v7';
  if (block[262] === 0) {
    const star = block[508] === 0x74 && block[509] === 0x61 && block[510] === 0x72 && block[511] === 0;
    return star ? 'star' : 'ustar';
  }
  return block[262] === 0x20 && block[263] === 0x20 && block[264] === 0 ? 'gnu' : 'v7';
}

/** A NUL-terminated field, copied so that the header does not pin the source chunk. */
function cString(block: Buffer, offset: number, length: number): Buffer {
  let end = offset;
  const limit = offset + length;
  while (end < limit && block[end] !== 0) end++;
  if (end === offset) return EMPTY;
  const out = Buffer.allocUnsafe(end - offset);
  // A byte loop beats Buffer#copy's argument checks for fields of at most a few hundred bytes.
  for (let i = offset; i < end; i++) out[i - offset] = block[i]!;
  return out;
}

/** Parses a PAX or sparse-map decimal: a non-negative integer, a `+` allowed as Go allows it. */
function parseDecimal(text: string, what: string, label: Where): number {
  if (!/^\+?[0-9]+$/.test(text)) {
    throw new MalformedArchiveError(`tar ${label()}: invalid ${what} ${JSON.stringify(text)}`);
  }
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new MalformedArchiveError(`tar ${label()}: ${what} out of range`);
  return value;
}

// ---------------------------------------------------------------------------------------------
// PAX records

/** A record as parsed: its key also as text (latin1, one char per byte) to compare it. */
type ParsedRecord = [text: string, key: Buffer, value: Buffer];

const NO_RECORDS: readonly ParsedRecord[] = [];

/**
 * Splits a PAX payload into `"%d %s=%s\n"` records; the length counts the whole record.
 * Like Go's archive/tar (and bsdtar), a key holding a NUL, and a NUL inside a `path`,
 * `linkpath`, `uname` or `gname` value, make the header malformed: those are C strings to
 * every consumer, and cutting them short would change the name silently.
 */
function parsePaxRecords(data: Buffer, label: Where): ParsedRecord[] {
  const records: ParsedRecord[] = [];
  let pos = 0;
  while (pos < data.length) {
    // Some writers pad the payload with NULs (libarchive accepts it); nothing can follow them.
    if (data[pos] === 0) {
      for (let i = pos; i < data.length; i++) if (data[i] !== 0) throw badPax(label);
      break;
    }
    const space = data.indexOf(0x20, pos);
    if (space < 0 || space === pos || space - pos > 7) throw badPax(label);
    const digits = data.toString('latin1', pos, space);
    if (!/^[0-9]+$/.test(digits)) throw badPax(label);
    const end = pos + Number(digits);
    if (end > data.length || end <= space + 1) throw badPax(label);
    if (data[end - 1] !== 0x0a) throw badPax(label);
    const equals = data.indexOf(0x3d, space + 1);
    if (equals < 0 || equals >= end - 1 || equals === space + 1) throw badPax(label);
    const text = data.toString('latin1', space + 1, equals);
    const value = Buffer.from(data.subarray(equals + 1, end - 1));
    if (text.includes('\0')) {
      throw new MalformedArchiveError(`tar ${label()}: PAX key ${JSON.stringify(text)} contains a NUL byte`);
    }
    if ((text === 'path' || text === 'linkpath' || text === 'uname' || text === 'gname') && value.includes(0)) {
      throw new MalformedArchiveError(`tar ${label()}: PAX ${text} contains a NUL byte`);
    }
    records.push([text, Buffer.from(data.subarray(space + 1, equals)), value]);
    pos = end;
  }
  return records;
}

function badPax(label: Where): MalformedArchiveError {
  return new MalformedArchiveError(`tar PAX header before ${label()} is malformed`);
}

/** What the extension headers (`L`, `K`, `x`) before an entry said about it; the last of each kind wins. */
interface Extensions {
  longName: Buffer | undefined;
  longLink: Buffer | undefined;
  records: readonly ParsedRecord[];
}

/** The PAX records folded into header fields; an empty value reverts to the ustar field. */
interface Folded {
  path?: Buffer;
  linkpath?: Buffer;
  uname?: Buffer;
  gname?: Buffer;
  size?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  devmajor?: number;
  devminor?: number;
  /**
   * Records for `header.pax`, in the order read; a repeated key updates the value in place
   * (a Map, so that a hostile megabyte of records costs linear time). Keyed by the key text.
   */
  kept: ReadonlyMap<string, PaxRecord>;
  sparse: ReadonlyMap<string, string>;
  /** `GNU.sparse.name`, the real name of a PAX sparse file, kept as bytes like any name. */
  sparseName?: Buffer;
  /** GNU sparse 0.0 repeats `offset`/`numbytes` pairs, so they cannot live in a map. */
  sparsePairs: readonly string[];
}

/** Seconds, then an optional fraction; Go also takes a sign and a bare trailing dot. */
const MTIME = /^([-+]?[0-9]+)(?:\.([0-9]*))?$/;

/** What an entry without PAX records folds to: shared, so the common case allocates nothing. */
const NO_PAX: Folded = Object.freeze({ kept: new Map(), sparse: new Map(), sparsePairs: [] });

function foldPax(records: readonly ParsedRecord[], label: Where): Folded {
  if (records.length === 0) return NO_PAX;
  const kept = new Map<string, PaxRecord>();
  const sparse = new Map<string, string>();
  const sparsePairs: string[] = [];
  const folded: Folded = { kept, sparse, sparsePairs };
  for (const [key, keyBytes, value] of records) {
    const text = (): string => value.toString('utf8');
    const empty = value.length === 0;
    switch (key) {
      case 'path':
      case 'linkpath':
      case 'uname':
      case 'gname':
        if (empty) delete folded[key];
        else folded[key] = value;
        break;
      case 'size':
      case 'uid':
      case 'gid':
        if (empty) delete folded[key];
        else folded[key] = parseDecimal(text(), `PAX ${key}`, label);
        break;
      case 'SCHILY.devmajor':
      case 'SCHILY.devminor': {
        const field = key === 'SCHILY.devmajor' ? 'devmajor' : 'devminor';
        if (empty) delete folded[field];
        else folded[field] = parseDecimal(text(), `PAX ${key}`, label);
        break;
      }
      case 'mtime': {
        kept.delete('mtime');
        if (empty) {
          delete folded.mtime;
          break;
        }
        const t = text();
        const match = MTIME.exec(t);
        if (match === null) throw new MalformedArchiveError(`tar ${label()}: invalid PAX mtime ${JSON.stringify(t)}`);
        let whole = Number(match[1]);
        if (!Number.isSafeInteger(whole)) throw new MalformedArchiveError(`tar ${label()}: PAX mtime out of range`);
        // -1.5 is 1.5 s before the epoch: whole seconds round down, as in Go and GNU tar.
        if (match[1]!.startsWith('-') && /[1-9]/.test(match[2] ?? '')) whole -= 1;
        folded.mtime = whole === 0 ? 0 : whole; // no -0
        // The header holds whole seconds; the fraction survives in the record.
        if (t.includes('.')) kept.set(key, [keyBytes, value]);
        break;
      }
      case 'hdrcharset':
        // We keep names as bytes whatever the charset, so the declaration has nothing to change.
        break;
      default:
        if (key.startsWith('GNU.sparse.')) {
          if (key === 'GNU.sparse.offset' || key === 'GNU.sparse.numbytes') sparsePairs.push(text());
          else if (key === 'GNU.sparse.name') {
            if (value.includes(0)) throw new MalformedArchiveError(`tar ${label()}: PAX GNU.sparse.name contains a NUL byte`);
            folded.sparseName = value;
          } else sparse.set(key, text());
        } else kept.set(key, [keyBytes, value]);
    }
  }
  return folded;
}

// ---------------------------------------------------------------------------------------------
// Sparse maps

/** Checks a sparse map as Go and bsdtar do, and that it describes exactly the stored bytes. */
function checkSparse(segments: Array<[number, number]>, size: number, stored: number, label: Where): void {
  let end = 0;
  let total = 0;
  for (const [offset, length] of segments) {
    if (offset < end || offset + length > size) {
      throw new MalformedArchiveError(`tar ${label()}: sparse map is out of order or past the file size`);
    }
    end = offset + length;
    total += length;
  }
  if (total !== stored) {
    throw new MalformedArchiveError(`tar ${label()}: sparse map describes ${total} bytes, archive holds ${stored}`);
  }
}

function pairUp(numbers: number[], label: Where): Array<[number, number]> {
  if (numbers.length % 2 !== 0) {
    throw new MalformedArchiveError(`tar ${label()}: sparse map has an odd number of values`);
  }
  if (numbers.length / 2 > MAX_SPARSE_ENTRIES) throw new MalformedArchiveError(`tar ${label()}: sparse map too large`);
  const pairs: Array<[number, number]> = [];
  for (let i = 0; i < numbers.length; i += 2) pairs.push([numbers[i]!, numbers[i + 1]!]);
  return pairs;
}

/** Old GNU sparse: up to 4 entries in the header, then 21 per extension block. */
async function readOldGnuSparse(input: ArchiveInput, block: Buffer, label: Where): Promise<Array<[number, number]>> {
  const numbers: number[] = [];
  const collect = (b: Buffer, start: number, count: number): void => {
    for (let i = 0; i < count; i++) {
      const at = start + i * 24;
      // GNU and BSD tar stop at the first entry with an empty offset.
      if (b[at] === 0) return;
      numbers.push(parseNumber(b, at, 12, 'sparse offset', label), parseNumber(b, at + 12, 12, 'sparse length', label));
    }
  };
  collect(block, 386, 4);
  let extended = block[482] !== 0;
  while (extended) {
    const where: Where = () => `inside a sparse header of ${label()}`;
    const ext = await input.block(where);
    if (ext === null) throw truncated(where, input.offset);
    collect(ext, 0, 21);
    if (numbers.length / 2 > MAX_SPARSE_ENTRIES) {
      throw new MalformedArchiveError(`tar ${label()}: sparse map too large`);
    }
    extended = ext[504] !== 0;
  }
  return pairUp(numbers, label);
}

/**
 * GNU sparse 1.0 keeps its map in decimal lines at the start of the data, padded to a block:
 * the entry count, then offset and length of each entry. Returns the map and its size.
 */
async function readSparse1Map(
  input: ArchiveInput,
  stored: number,
  label: Where,
): Promise<{ segments: Array<[number, number]>; mapBytes: number }> {
  const what: Where = () => `inside the sparse map of ${label()}`;
  const numbers: number[] = [];
  let wanted = 1;
  let digits = '';
  let mapBytes = 0;
  while (numbers.length < wanted) {
    if (mapBytes + BLOCK > stored) throw new MalformedArchiveError(`tar ${label()}: sparse map runs past the entry`);
    const block = await input.block(what);
    if (block === null) throw truncated(what, input.offset);
    mapBytes += BLOCK;
    for (let i = 0; i < BLOCK && numbers.length < wanted; i++) {
      const byte = block[i]!;
      if (byte !== 0x0a) {
        digits += String.fromCharCode(byte);
        if (digits.length > 20) throw new MalformedArchiveError(`tar ${label()}: malformed sparse map`);
        continue;
      }
      numbers.push(parseDecimal(digits, 'sparse map value', label));
      digits = '';
      if (numbers.length === 1) {
        if (numbers[0]! > MAX_SPARSE_ENTRIES) throw new MalformedArchiveError(`tar ${label()}: sparse map too large`);
        wanted = 1 + 2 * numbers[0]!;
      }
    }
  }
  return { segments: pairUp(numbers.slice(1), label), mapBytes };
}

// ---------------------------------------------------------------------------------------------
// Entries

const TYPES: Record<string, TarEntryType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file', // contiguous file: a plain file everywhere but on one historic filesystem
  S: 'file', // old GNU sparse
  '1': 'link',
  '2': 'symlink',
  '3': 'character-device',
  '4': 'block-device',
  '5': 'directory',
  D: 'directory', // GNU incremental dumpdir: a directory whose body lists its contents
  '6': 'fifo',
};

/**
 * Metadata-only entries that nothing in a root filesystem can use: skipped with their data
 * (as GNU tar does; Go hands them out, and Docker then refuses the layer), with a warning.
 */
const SKIPPED: Record<string, { what: string; lost: string }> = {
  V: { what: 'a GNU volume label (type V)', lost: '' },
  A: { what: 'a Solaris ACL header (type A)', lost: '; its ACL is not applied' },
  N: { what: 'an old GNU rename list (type N)', lost: '; its renames are not applied' },
};

/** Types we know but cannot place in a root filesystem, explained in the error. */
const REFUSED: Record<string, string> = {
  M: 'a GNU multi-volume continuation, the rest of a file begun in another archive',
};

const INSIDE_END: Where = () => 'inside the end-of-archive marker';

/**
 * Reads extension headers and the entry header after them. Returns null at the end of the
 * archive: two zero blocks, one zero block and the end of the source (as Go and libarchive,
 * silently), or the end of the source at a header boundary (as Go, libarchive and GNU tar,
 * with a warning).
 */
async function readEntryPlan(
  input: ArchiveInput,
  ordinal: number,
  onWarning: ((warning: TarWarning) => void) | undefined,
  onHeader?: (flag: string, payload?: Buffer) => void,
): Promise<EntryPlan | null> {
  const ext: Extensions = { longName: undefined, longLink: undefined, records: NO_RECORDS };
  const label: Where = () => entryLabel(ordinal, undefined);
  const insideHeader: Where = () => `inside the header of ${label()}`;
  // An `x`, `L` or `K` header waits for its entry; a `g` header does not (`git archive` of a
  // commit with an empty tree writes a `g` header and the end marker).
  let pendingExtension = false;
  for (;;) {
    const start = input.offset;
    const block = input.blockNow() ?? (await input.block(insideHeader));
    if (block === null) {
      if (pendingExtension) danglingExtension(onWarning, start);
      onWarning?.({
        code: 'TAR_NO_END_MARKER',
        message: `tar archive ends at byte ${start} without an end-of-archive marker; read as complete, as Go's archive/tar and GNU tar do`,
      });
      return null;
    }
    if (isZeroBlock(block)) {
      if (pendingExtension) danglingExtension(onWarning, start);
      const second = await input.block(INSIDE_END);
      if (second === null || isZeroBlock(second)) return null;
      throw new MalformedArchiveError(`tar archive: a zero block followed by data (at byte ${start})`);
    }
    if (!checksumMatches(block, label)) {
      throw new MalformedArchiveError(`tar header of ${label()} has a bad checksum (at byte ${start})`);
    }
    const flag = String.fromCharCode(block[156]!);
    const type = TYPES[flag];
    if (type !== undefined) onHeader?.(flag);
    if (type !== undefined) return readEntry(input, block, flag, type, ext, ordinal);
    switch (flag) {
      case 'x':
      case 'X': // Solaris tar's name for the same header, read as such by GNU tar and libarchive
        // Of consecutive PAX headers only the last applies (Go, libarchive, GNU tar).
        ext.records = parsePaxRecords(tell(onHeader, flag, await readExtension(input, block, flag, label)), label);
        pendingExtension = true;
        continue;
      case 'L':
      case 'K': {
        const data = tell(onHeader, flag, await readExtension(input, block, flag, label));
        // As in Go, an empty long name leaves the header's own name in place.
        const text = cString(data, 0, data.length);
        if (flag === 'L') ext.longName = text.length > 0 ? text : undefined;
        else ext.longLink = text.length > 0 ? text : undefined;
        pendingExtension = true;
        continue;
      }
      case 'g':
        // Global headers would change every later entry; image layers have no business with
        // them, so (like Docker's tooling) we check them and drop them.
        parsePaxRecords(tell(onHeader, flag, await readExtension(input, block, flag, label)), label);
        continue;
      default:
        break;
    }
    onHeader?.(flag);
    const name = cString(block, 0, 100);
    const skipped = SKIPPED[flag];
    if (skipped === undefined) {
      // Go hands unknown types out and Docker and containerd then refuse the layer; libarchive
      // and GNU tar would extract them as regular files. We cannot know what they hold.
      const why = REFUSED[flag];
      throw new MalformedArchiveError(
        `tar ${entryLabel(ordinal, name)}: unsupported entry type ${JSON.stringify(flag)}${why === undefined ? '' : ` (${why})`}`,
      );
    }
    const size = parseNumber(block, 124, 12, 'size', label);
    if (size < 0) throw new MalformedArchiveError(`tar ${label()}: negative size`);
    const where: Where = () => `inside ${skipped.what} before ${label()}`;
    await input.skip(size, where);
    await input.skip(paddingOf(size), where);
    onWarning?.({
      code: 'TAR_SKIPPED_ENTRY',
      message: `tar archive: skipped ${skipped.what} ${JSON.stringify(name.toString('utf8'))} before ${label()}${skipped.lost}`,
    });
    if (flag !== 'A') {
      // The extension headers before a volume label or rename list were its own.
      ext.longName = undefined;
      ext.longLink = undefined;
      ext.records = NO_RECORDS;
      pendingExtension = false;
    }
  }
}

/** Passes an extension header's payload to `onHeader`, and on. */
function tell(onHeader: ((flag: string, payload?: Buffer) => void) | undefined, flag: string, payload: Buffer): Buffer {
  onHeader?.(flag, payload);
  return payload;
}

/**
 * An `x`, `L` or `K` header that the archive ends after describes no entry. Go's archive/tar
 * (what Docker and containerd apply layers with) reads such an archive as ending there, so we
 * do too: refusing it would fail an image that every runtime runs.
 */
function danglingExtension(onWarning: ((warning: TarWarning) => void) | undefined, at: number): void {
  onWarning?.({
    code: 'TAR_DANGLING_EXTENSION',
    message: `tar archive: the extension header before byte ${at} is followed by no entry; ignored, as Go's archive/tar does`,
  });
}

/** Reads the payload of an extension header (`x`, `X`, `g`, `L`, `K`) and its padding. */
async function readExtension(input: ArchiveInput, block: Buffer, flag: string, label: Where): Promise<Buffer> {
  const size = parseNumber(block, 124, 12, 'size', label);
  if (size > MAX_EXTENSION_BYTES || size < 0) {
    throw new MalformedArchiveError(`tar ${label()}: '${flag}' extension header of ${size} bytes is too large`);
  }
  const where: Where = () => `inside an extension header of ${label()}`;
  const data = await input.bytes(size, where);
  await input.skip(paddingOf(size), where);
  return data;
}

/**
 * An entry header with its extensions folded in, and its sparse map read. Not async unless
 * there is a map to read: a promise per entry costs more than parsing the header.
 */
function readEntry(
  input: ArchiveInput,
  block: Buffer,
  flag: string,
  type: TarEntryType,
  ext: Extensions,
  ordinal: number,
): EntryPlan | Promise<EntryPlan> {
  const layout = layoutOf(block);
  const { plan, pax, label } = buildPlan(block, layout, flag, type, ext, ordinal);
  if (flag === 'S') return applyOldGnuSparse(input, block, layout, plan, label).then(() => plan);
  if (plan.header.type === 'file' && (pax.sparse.size > 0 || pax.sparsePairs.length > 0)) {
    return applyPaxSparse(input, pax, plan, label).then(() => plan);
  }
  return plan;
}

/** The header fields of an entry, all extensions folded in; sparse maps are read after. */
function buildPlan(
  block: Buffer,
  layout: Layout,
  flag: string,
  ustarType: TarEntryType,
  ext: Extensions,
  ordinal: number,
): { plan: EntryPlan; pax: Folded; label: Where } {
  let label: Where = () => entryLabel(ordinal, undefined);
  let name = cString(block, 0, 100);
  let prefix: Buffer | undefined;
  if (layout === 'ustar' || layout === 'star') prefix = cString(block, 345, layout === 'star' ? 131 : 155);
  else if (layout === 'gnu' && (block[345] !== 0 || block[357] !== 0)) prefix = go17Prefix(block);
  if (prefix !== undefined && prefix.length > 0) name = Buffer.concat([prefix, SLASH, name]);
  const pax = foldPax(ext.records, label);
  // As in Go's archive/tar, a GNU long name beats a PAX path, and a sparse name beats both.
  name = ext.longName ?? pax.path ?? name;
  if (pax.sparseName !== undefined && pax.sparseName.length > 0) name = pax.sparseName;
  const finalName = name;
  label = () => entryLabel(ordinal, finalName);

  // Only regular files (and a dumpdir's listing) have data in the archive, as in POSIX and
  // Go; a size on a link or a device describes nothing that follows.
  let hasData = ustarType === 'file' || flag === 'D';
  let skipsData = false;
  let type = ustarType;
  let end = name.length;
  while (end > 1 && name[end - 1] === 0x2f) end--;
  if (end < name.length) {
    // v7 and old GNU mark a directory only by the trailing slash of a `\0` entry. Go,
    // libarchive and Python read no data after it, whatever its size field says. A `0` entry
    // with a slash is a directory to libarchive and GNU tar too, but its data is there to Go
    // (which keeps it a file), Python and GNU tar, so we skip that data like them.
    if (flag === '\0') {
      type = 'directory';
      hasData = false;
    } else if (flag === '0') {
      type = 'directory';
      skipsData = true;
    }
    name = name.subarray(0, end);
  }

  const hasOwners = layout !== 'v7';
  const header: TarHeader = {
    name,
    type,
    mode: parseNumber(block, 100, 8, 'mode', label) & 0o7777,
    uid: pax.uid ?? parseNumber(block, 108, 8, 'uid', label),
    gid: pax.gid ?? parseNumber(block, 116, 8, 'gid', label),
    size: 0,
    mtime: pax.mtime ?? parseNumber(block, 136, 12, 'mtime', label),
    linkname: EMPTY,
    uname: pax.uname ?? (hasOwners ? cString(block, 265, 32) : EMPTY),
    gname: pax.gname ?? (hasOwners ? cString(block, 297, 32) : EMPTY),
    devmajor: 0,
    devminor: 0,
    pax: pax.kept.size === 0 ? [] : [...pax.kept.values()],
  };
  if (header.uid < 0 || header.gid < 0) throw new MalformedArchiveError(`tar ${label()}: negative uid or gid`);
  if (type === 'link' || type === 'symlink') header.linkname = ext.longLink ?? pax.linkpath ?? cString(block, 157, 100);
  if (type === 'character-device' || type === 'block-device') {
    header.devmajor = pax.devmajor ?? (hasOwners ? parseNumber(block, 329, 8, 'devmajor', label) : 0);
    header.devminor = pax.devminor ?? (hasOwners ? parseNumber(block, 337, 8, 'devminor', label) : 0);
  }

  const storedSize = pax.size ?? parseNumber(block, 124, 12, 'size', label);
  if (storedSize < 0) throw new MalformedArchiveError(`tar ${label()}: negative size`);
  const plan: EntryPlan = {
    header,
    stored: hasData && !skipsData ? storedSize : 0,
    // Data nobody may read is skipped along with the padding.
    padding: hasData ? (skipsData ? storedSize : 0) + paddingOf(storedSize) : 0,
  };
  if (type === 'file') header.size = storedSize;
  return { plan, pax, label };
}

/**
 * Go before 1.8 wrote the ustar prefix into GNU headers, where atime and ctime live. Like
 * Go's reader, when those fields are not numbers, an ASCII prefix is taken as the prefix.
 */
function go17Prefix(block: Buffer): Buffer | undefined {
  const valid = (offset: number): boolean => block[offset] === 0 || numericFieldValid(block, offset, 12);
  if (valid(345) && valid(357)) return undefined;
  const prefix = cString(block, 345, 155);
  for (const byte of prefix) if (byte >= 0x80) return undefined;
  return prefix;
}

/** Whether a numeric field parses as Go parses it: base-256, or octal between spaces and NULs. */
function numericFieldValid(block: Buffer, offset: number, length: number): boolean {
  if ((block[offset]! & 0x80) !== 0) return true;
  let start = offset;
  let end = offset + length;
  while (start < end && isSpaceOrNul(block[start])) start++;
  while (end > start && isSpaceOrNul(block[end - 1])) end--;
  for (let i = start; i < end; i++) if (block[i]! < 0x30 || block[i]! > 0x37) return false;
  return true;
}

async function applyOldGnuSparse(
  input: ArchiveInput,
  block: Buffer,
  layout: Layout,
  plan: EntryPlan,
  label: Where,
): Promise<void> {
  // star's type S has a different layout; Go refuses it too.
  if (layout !== 'gnu') throw new MalformedArchiveError(`tar ${label()}: sparse entry (type S) without a GNU header`);
  const segments = await readOldGnuSparse(input, block, label);
  const size = parseNumber(block, 483, 12, 'sparse size', label);
  checkSparse(segments, size, plan.stored, label);
  plan.header.sparse = { segments };
  plan.header.size = size;
}

const SLASH = Buffer.from('/');

/** GNU sparse files in PAX form: versions 0.0, 0.1 (map in the records) and 1.0 (map in the data). */
async function applyPaxSparse(input: ArchiveInput, pax: Folded, plan: EntryPlan, label: Where): Promise<void> {
  const major = pax.sparse.get('GNU.sparse.major');
  const minor = pax.sparse.get('GNU.sparse.minor');
  const mapText = pax.sparse.get('GNU.sparse.map');
  // Go prefers the 0.x `size` to the 1.0 `realsize` when both are given.
  const sizeText = pax.sparse.get('GNU.sparse.size') ?? pax.sparse.get('GNU.sparse.realsize');
  const version = major === undefined && minor === undefined ? undefined : `${major}.${minor}`;
  if (version === undefined && mapText === undefined && pax.sparsePairs.length === 0) {
    // Only stray records such as GNU.sparse.numblocks: not a sparse file.
    return;
  }
  if (version !== undefined && version !== '0.0' && version !== '0.1' && version !== '1.0') {
    throw new MalformedArchiveError(`tar ${label()}: unsupported GNU sparse version ${version}`);
  }
  if (sizeText === undefined) throw new MalformedArchiveError(`tar ${label()}: GNU sparse file without a real size`);
  const size = parseDecimal(sizeText, 'GNU.sparse size', label);

  let segments: Array<[number, number]>;
  let stored = plan.stored;
  if (version === '1.0') {
    const map = await readSparse1Map(input, stored, label);
    segments = map.segments;
    stored -= map.mapBytes;
  } else {
    const values = mapText !== undefined ? (mapText === '' ? [] : mapText.split(',')) : pax.sparsePairs;
    segments = pairUp(
      values.map((v) => parseDecimal(v, 'GNU.sparse map value', label)),
      label,
    );
    const numblocks = pax.sparse.get('GNU.sparse.numblocks');
    if (numblocks !== undefined && parseDecimal(numblocks, 'GNU.sparse.numblocks', label) !== segments.length) {
      throw new MalformedArchiveError(`tar ${label()}: GNU.sparse.numblocks does not match the map`);
    }
  }
  checkSparse(segments, size, stored, label);
  plan.stored = stored;
  plan.header.sparse = { segments };
  plan.header.size = size;
}
