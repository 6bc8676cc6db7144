/**
 * The flattener's side of the reader contracts (notes/contracts.md B and C), with the reader
 * stood in for, so that each map and warning is exactly the one under test:
 * - sparse files stay sparse: the header as it is (with its map) and the stored segments
 *   only; `expandSparse` writes them whole, holes as zeros, without the map;
 * - the reader's warnings reach `onWarning`, prefixed with the layer, once per layer.
 */
import { describe, expect, it, vi } from 'vitest';
import { MalformedArchiveError } from '../../src/errors.js';
import type { FlattenWarning } from '../../src/flatten/flatten.js';
import { buildTar, tarHeader } from '../helpers/tar-fixture.js';
import type { ReadTarOptions } from '../../src/streams/tar/reader.js';
import type { TarEntry, TarHeader } from '../../src/streams/tar/types.js';

const SIZE = 1024 * 1024;
/** 512 bytes at the start (a whole block, as GNU tar needs for any segment but the last), 3 at the end. */
const STORED = Buffer.concat([Buffer.alloc(512, 'a'), Buffer.from('xyz')]);
let segments: ReadonlyArray<readonly [number, number]> = [[0, 512], [SIZE - 3, 3]];
const reads: string[] = [];
let storedBytes = STORED;

const sparseHeader = (): TarHeader =>
  tarHeader({ name: Buffer.from('var/lib/sparse.img'), size: SIZE, mtime: 1_700_000_000, sparse: { segments } });

/** The whole content: the segments' bytes where they lie, zeros elsewhere. */
function expanded(): Buffer {
  const out = Buffer.alloc(SIZE);
  let at = 0;
  for (const [offset, length] of segments) {
    STORED.copy(out, offset, at, at + length);
    at += length;
  }
  return out;
}

vi.mock('../../src/streams/tar/reader.js', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../../src/streams/tar/reader.js')>();
  return {
    ...actual,
    // Layers whose first byte is 'S' hold the sparse entry; everything else is a real tar.
    readTar: async function* (source: AsyncIterable<Uint8Array>, options: ReadTarOptions = {}): AsyncGenerator<TarEntry> {
      const chunks: Buffer[] = [];
      for await (const chunk of source) chunks.push(Buffer.from(chunk));
      const bytes = Buffer.concat(chunks);
      if (bytes[0] === 0x57) {
        // 'W': a reader that warns (twice, as a layer read twice would) about a real tar.
        const warning = { code: 'TAR_NO_END_MARKER', message: 'the archive ends without its end-of-archive marker' };
        options.onWarning?.(warning);
        options.onWarning?.(warning);
        yield* actual.readTar((async function* () { yield bytes.subarray(1); })(), options);
        return;
      }
      if (bytes[0] !== 0x53) {
        yield* actual.readTar((async function* () { yield bytes; })(), options);
        return;
      }
      yield {
        header: sparseHeader(),
        ordinal: 0,
        body: async function* () {
          reads.push('body');
          yield expanded();
        },
        storedBody: async function* () {
          reads.push('storedBody');
          yield storedBytes;
        },
      };
    },
  };
});

const { flattenLayers } = await import('../../src/flatten/flatten.js');
const { readTar } = await import('../../src/streams/tar/reader.js');

async function* once(bytes: Buffer): AsyncGenerator<Uint8Array> {
  yield bytes;
}

async function flatten(expandSparse: boolean): Promise<Buffer> {
  reads.length = 0;
  const parts: Buffer[] = [];
  const layers = [{ index: 0, name: 'layer0', open: () => once(Buffer.from('S')) }];
  for await (const chunk of flattenLayers(layers, { expandSparse })) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}

describe('sparse files', () => {
  it('are written sparse: the header with its map, then only the stored segments', async () => {
    storedBytes = STORED;
    const out = await flatten(false);
    expect(reads).toEqual(['storedBody']);
    expect(out.includes(STORED)).toBe(true);
    // a megabyte of holes is not in the output
    expect(out.length).toBeLessThan(16 * 1024);
  });

  it('are written whole with expandSparse, holes as zeros and no map', async () => {
    storedBytes = STORED;
    const out = await flatten(true);
    expect(reads).toEqual(['body']);
    const entries: Array<{ header: TarHeader; body: Buffer }> = [];
    for await (const entry of readTar(once(out))) {
      const chunks: Buffer[] = [];
      for await (const chunk of entry.body()) chunks.push(Buffer.from(chunk));
      entries.push({ header: entry.header, body: Buffer.concat(chunks) });
    }
    const file = entries.find((e) => e.header.name.toString() === 'var/lib/sparse.img');
    expect(file?.header.size).toBe(SIZE);
    expect(file?.header.sparse).toBeUndefined();
    expect(file?.body.equals(expanded())).toBe(true);
  });

  it('refuses a sparse entry whose stored bytes are not the sum of its segments', async () => {
    storedBytes = STORED.subarray(0, 6);
    await expect(flatten(false)).rejects.toBeInstanceOf(MalformedArchiveError);
    await expect(flatten(false)).rejects.toThrow(/body is 6 bytes, header says 515/);
  });

  it('stay sparse when a data segment before the last is not a whole number of blocks: the map grows to whole blocks, the content stays', async () => {
    storedBytes = STORED;
    segments = [[0, 5], [4096, 510]];
    try {
      const out = await flatten(false);
      expect(reads).toEqual(['storedBody']);
      const entries: Array<{ header: TarHeader; body: Buffer }> = [];
      for await (const entry of readTar(once(out))) {
        const chunks: Buffer[] = [];
        for await (const chunk of entry.body()) chunks.push(Buffer.from(chunk));
        entries.push({ header: entry.header, body: Buffer.concat(chunks) });
      }
      const file = entries.find((e) => e.header.name.toString() === 'var/lib/sparse.img');
      expect(file?.header.size).toBe(SIZE);
      expect(file?.header.sparse?.segments.filter(([, length]) => length > 0)).toEqual([[0, 512], [4096, 510]]);
      expect(file?.body.equals(expanded())).toBe(true);
    } finally {
      segments = [[0, 512], [SIZE - 3, 3]];
    }
  });
});

describe('reader warnings', () => {
  it('reach onWarning with the layer named, once per layer', async () => {
    const warnings: FlattenWarning[] = [];
    const tar = Buffer.concat([Buffer.from('W'), buildTar([{ name: 'a', type: 'file', content: 'x' }])]);
    const layers = [
      { index: 0, name: 'sha256:base', open: () => once(buildTar([{ name: 'b', type: 'file', content: 'y' }])) },
      { index: 1, name: 'sha256:top', open: () => once(tar) },
    ];
    for await (const _chunk of flattenLayers(layers, { onWarning: (warning) => warnings.push(warning) })) void _chunk;
    expect(warnings).toEqual([
      { code: 'TAR_NO_END_MARKER', message: 'layer 1 (sha256:top): the archive ends without its end-of-archive marker', layer: 1 },
    ]);
  });
});
