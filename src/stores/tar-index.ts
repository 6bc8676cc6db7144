/**
 * Where each member of a tar file starts, found by reading only the headers: a positional
 * read of 512 bytes per member (plus PAX / GNU long-name bodies), the bodies skipped by
 * offset arithmetic. A `docker save` archive puts `manifest.json` last and the layers we
 * need newest-first anywhere before it, so we index once and then open any member as a
 * byte range of the file. Understands ustar, GNU long names (`L`, `K`), base-256 sizes and
 * PAX `path` / `linkpath` / `size`; global PAX headers are skipped.
 */
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { posix } from 'node:path';
import { MalformedArchiveError } from '../errors.js';

const BLOCK = 512;
/** Extension bodies (PAX, long names) larger than this are refused: they are a few KiB at most. */
const MAX_EXTENSION_BYTES = 1024 * 1024;

export type TarIndexType = 'file' | 'link' | 'symlink' | 'directory' | 'other';

export interface TarIndexEntry {
  /** Normalised path: no leading `./` or `/`, no trailing `/`. */
  name: string;
  type: TarIndexType;
  /** Byte offset of the body in the file. */
  offset: number;
  size: number;
  /** Hardlink or symlink target, as stored. */
  linkname: string;
}

/** Indexes the tar at `path`: every member by normalised name (a later duplicate wins). */
export async function indexTarFile(path: string): Promise<Map<string, TarIndexEntry>> {
  const handle = await open(path, 'r');
  try {
    return await indexTar(handle, (await handle.stat()).size);
  } finally {
    await handle.close();
  }
}

async function indexTar(handle: FileHandle, fileSize: number): Promise<Map<string, TarIndexEntry>> {
  const entries = new Map<string, TarIndexEntry>();
  const header = Buffer.alloc(BLOCK);
  let position = 0;
  let longName: string | undefined;
  let longLink: string | undefined;
  let pax: Map<string, string> | undefined;
  for (;;) {
    if (position + BLOCK > fileSize) {
      if (position === fileSize) break; // no end marker: tolerated, as GNU tar does
      throw new MalformedArchiveError(`truncated tar: a header at byte ${position} runs past the end (${fileSize} bytes)`);
    }
    const { bytesRead } = await handle.read(header, 0, BLOCK, position);
    if (bytesRead !== BLOCK) throw new MalformedArchiveError(`truncated tar at byte ${position}`);
    if (header.every((byte) => byte === 0)) break;
    checkChecksum(header, position);
    const typeflag = String.fromCharCode(header[156] ?? 0);
    let size = pax?.get('size') !== undefined ? Number(pax.get('size')) : readNumber(header.subarray(124, 136), position);
    if (typeflag === 'x' || typeflag === 'g' || typeflag === 'L' || typeflag === 'K') {
      size = readNumber(header.subarray(124, 136), position);
    }
    if (!Number.isSafeInteger(size) || size < 0) throw new MalformedArchiveError(`tar header at byte ${position}: invalid size`);
    const bodyStart = position + BLOCK;
    const next = bodyStart + Math.ceil(size / BLOCK) * BLOCK;
    if (bodyStart + size > fileSize) {
      throw new MalformedArchiveError(`truncated tar: the member at byte ${position} runs past the end of the file`);
    }
    if (typeflag === 'x' || typeflag === 'g' || typeflag === 'L' || typeflag === 'K') {
      if (size > MAX_EXTENSION_BYTES) throw new MalformedArchiveError(`tar extension header at byte ${position} is too large`);
      const body = Buffer.alloc(size);
      await handle.read(body, 0, size, bodyStart);
      if (typeflag === 'x') pax = parsePax(body, position);
      else if (typeflag === 'L') longName = cString(body);
      else if (typeflag === 'K') longLink = cString(body);
      position = next;
      continue;
    }
    const magic = header.subarray(257, 263).toString('latin1');
    const prefix = magic.startsWith('ustar') ? cString(header.subarray(345, 500)) : '';
    const shortName = cString(header.subarray(0, 100));
    const rawName = pax?.get('path') ?? longName ?? (prefix === '' ? shortName : `${prefix}/${shortName}`);
    const linkname = pax?.get('linkpath') ?? longLink ?? cString(header.subarray(157, 257));
    const name = normaliseName(rawName);
    entries.set(name, { name, type: entryType(typeflag), offset: bodyStart, size, linkname });
    pax = undefined;
    longName = undefined;
    longLink = undefined;
    position = next;
  }
  return entries;
}

/** `./a//b/` → `a/b`. */
export function normaliseName(name: string): string {
  const normal = posix.normalize(`/${name}`).replace(/^\/+/, '').replace(/\/+$/, '');
  return normal === '.' ? '' : normal;
}

function entryType(typeflag: string): TarIndexType {
  switch (typeflag) {
    case '0':
    case '\0':
    case '7':
      return 'file';
    case '1':
      return 'link';
    case '2':
      return 'symlink';
    case '5':
      return 'directory';
    default:
      return 'other';
  }
}

function cString(bytes: Buffer): string {
  const nul = bytes.indexOf(0);
  return (nul === -1 ? bytes : bytes.subarray(0, nul)).toString('utf8');
}

/** Octal, or base-256 when the top bit of the first byte is set. */
function readNumber(field: Buffer, position: number): number {
  if (((field[0] ?? 0) & 0x80) !== 0) {
    let value = (field[0] ?? 0) & 0x7f;
    for (let i = 1; i < field.length; i++) value = value * 256 + (field[i] ?? 0);
    return value;
  }
  const text = cString(field).trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new MalformedArchiveError(`tar header at byte ${position}: invalid number ${JSON.stringify(text)}`);
  return parseInt(text, 8);
}

function checkChecksum(header: Buffer, position: number): void {
  const stored = readNumber(header.subarray(148, 156), position);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (header[i] ?? 0);
  if (sum !== stored) throw new MalformedArchiveError(`tar header at byte ${position}: bad checksum (not a tar file?)`);
}

/** PAX records `"<len> <key>=<value>\n"`. */
function parsePax(body: Buffer, position: number): Map<string, string> {
  const records = new Map<string, string>();
  let offset = 0;
  while (offset < body.length) {
    if (body[offset] === 0) break;
    const space = body.indexOf(0x20, offset);
    const length = space === -1 ? Number.NaN : Number(body.subarray(offset, space).toString('latin1'));
    if (!Number.isSafeInteger(length) || length <= 0 || offset + length > body.length) {
      throw new MalformedArchiveError(`tar PAX header at byte ${position}: malformed record`);
    }
    const record = body.subarray(space + 1, offset + length - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq > 0) records.set(record.slice(0, eq), record.slice(eq + 1));
    offset += length;
  }
  return records;
}
