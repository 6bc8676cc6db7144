/**
 * Hostile or broken tars, in process (issue #4; DESIGN.md §3): what the tar reader refuses,
 * with which error and message, and that the flattener passes the refusal on as it is. The
 * command line's side (exit codes, one stderr line, no file left) is test/e2e/hostile.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { MalformedArchiveError } from '../../src/errors.js';
import { flattenLayers, type FlattenLayer } from '../../src/flatten/flatten.js';
import { readTar } from '../../src/streams/tar/reader.js';
import { buildTar, encodeEntry, type FixtureEntry } from '../helpers/tar-fixture.js';

const BLOCK = 512;
const TIB = 2n ** 40n;

const file = (name: string, content: string | Buffer = 'content\n', more: Partial<FixtureEntry> = {}): FixtureEntry => ({
  name,
  type: 'file',
  content,
  ...more,
});

/** `header` (one 512-byte ustar block) with its checksum recomputed. */
function resum(header: Buffer): Buffer {
  const block = Buffer.from(header);
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return block;
}

/** The 12-byte size field in GNU base-256: 0x80, then the value big-endian. */
function base256Size(value: bigint): Buffer {
  const field = Buffer.alloc(12);
  field[0] = 0x80;
  let rest = value;
  for (let i = 11; i >= 1; i--) {
    field[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  return field;
}

async function* chunks(bytes: Buffer): AsyncGenerator<Uint8Array> {
  // Odd-sized chunks, so that a header or a number straddles two of them.
  for (let offset = 0; offset < bytes.length; offset += 700) yield bytes.subarray(offset, offset + 700);
}

/** Reads every entry and body; resolves to the error the reader threw. */
async function readFailure(tar: Buffer): Promise<Error> {
  try {
    for await (const entry of readTar(chunks(tar))) {
      for await (const _chunk of entry.body()) void _chunk;
    }
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected readTar to fail');
}

/** Flattens `tar` as the only layer; resolves to the error. */
async function flattenFailure(tar: Buffer): Promise<Error> {
  const layer: FlattenLayer = { index: 0, name: 'sha256:test', open: () => chunks(tar) };
  try {
    for await (const _chunk of flattenLayers([layer])) void _chunk;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected flattenLayers to fail');
}

/** The reader refuses `tar` as malformed with `message`, and the flattener says the same. */
async function expectMalformed(tar: Buffer, message: RegExp): Promise<void> {
  for (const error of [await readFailure(tar), await flattenFailure(tar)]) {
    expect(error).toBeInstanceOf(MalformedArchiveError);
    expect(error).toMatchObject({ code: 'ERR_MALFORMED_ARCHIVE', exitCode: 8 });
    expect(error.message).toMatch(message);
  }
}

describe('truncated tars', () => {
  // a: header at 0, 1000 bytes of body in blocks 1-2; b: header at 1536.
  const full = buildTar([file('a', Buffer.alloc(1000, 0x61)), file('b', 'bee\n')]);

  it('refuses a tar cut in the middle of a header', async () => {
    await expectMalformed(full.subarray(0, 3 * BLOCK + 200), /tar archive truncated inside the header of entry 1/);
  });

  it('refuses a tar cut in the middle of a file body, naming the entry', async () => {
    await expectMalformed(full.subarray(0, BLOCK + 300), /tar archive truncated inside the body of entry 0 \("a"\)/);
  });
});

describe('absurd sizes', () => {
  it('refuses an entry whose PAX size claims 1 TiB over a short body (a truncated tar)', async () => {
    await expectMalformed(buildTar([file('big', 'short body', { pax: { size: String(TIB) } })]), /truncated inside the body of entry 0 \("big"\)/);
  });

  it('refuses an entry whose base-256 size field claims 1 TiB over a short body, without waiting for a terabyte', async () => {
    const entry = encodeEntry(file('big', 'short body'));
    const header = Buffer.from(entry.subarray(0, BLOCK));
    base256Size(TIB).copy(header, 124);
    const tar = Buffer.concat([resum(header), entry.subarray(BLOCK), Buffer.alloc(2 * BLOCK)]);
    const started = performance.now();
    await expectMalformed(tar, /truncated inside the body of entry 0 \("big"\)/);
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it.each([
    ['a length field of 20 digits', '99999999999999999999 path=x\n'],
    ['a length field longer than the header body', '500 path=x\n'],
    ['a length field of zero', '0 path=x\n'],
  ])('refuses a PAX header with %s', async (_what, record) => {
    const pax: FixtureEntry = { name: 'PaxHeaders/x', type: 'file', content: record, rawTypeflag: 'x' };
    await expectMalformed(buildTar([pax, file('x', 'payload\n')]), /PAX header before entry 0 is malformed/);
  });

  it('refuses a PAX extension header whose own size claims 1 TiB', async () => {
    const entry = encodeEntry({ name: 'PaxHeaders/x', type: 'file', content: '11 path=x\n', rawTypeflag: 'x' });
    const header = Buffer.from(entry.subarray(0, BLOCK));
    base256Size(TIB).copy(header, 124);
    const tar = Buffer.concat([resum(header), entry.subarray(BLOCK), encodeEntry(file('x', 'payload\n')), Buffer.alloc(2 * BLOCK)]);
    await expectMalformed(tar, /extension header of 1099511627776 bytes is too large/);
  });
});

describe('whiteouts', () => {
  it('refuses a bare .wh. whiteout, naming it', async () => {
    const error = await flattenFailure(buildTar([{ name: 'a', type: 'dir' }, file('a/.wh.', '')]));
    expect(error).toBeInstanceOf(MalformedArchiveError);
    expect(error.message).toMatch(/invalid whiteout entry "\.wh\."/);
  });
});
