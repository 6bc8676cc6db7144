/**
 * Layer decompression. node:zlib's gunzip already reads multi-member gzip, but what it
 * does after the last member depends on chunk boundaries: a non-zero byte right after a
 * member is an error, zeros end the stream, and anything after those zeros is silently
 * dropped when it arrives in the same chunk (or breaks the pipe with "premature close"
 * when it arrives in a later one). DESIGN §3 wants exactly "zeros are tolerated, anything
 * else is an integrity error", so {@link StrictGunzip} watches how much input zlib consumed
 * (`bytesWritten`) and checks every byte after the last member itself.
 */
import { type Duplex, PassThrough } from 'node:stream';
import * as zlib from 'node:zlib';
import { MalformedArchiveError } from '../errors.js';
import { StrictInflater } from './strict-inflater.js';
import { createZstdDecompressor } from './zstd.js';

export type DecompressorKind = 'gzip' | 'zstd' | 'none';

/** A stream that inflates `kind` (`none` passes bytes through). */
export function decompressor(kind: DecompressorKind): Duplex {
  switch (kind) {
    case 'gzip':
      return new StrictGunzip();
    case 'none':
      return new PassThrough();
    case 'zstd':
      return createZstdDecompressor();
  }
}

/** Gunzip that refuses truncation and any non-zero byte after the last member. */
export class StrictGunzip extends StrictInflater<zlib.Gunzip> {
  /** Input bytes handed to zlib so far. */
  private fed = 0;
  /** The last member has ended: only zero padding may follow. */
  private inTrailer = false;

  constructor() {
    // 256 KiB output chunks: at the 16 KiB default, node:zlib inflates no faster than `gzip -dc`.
    super(zlib.createGunzip({ chunkSize: 256 * 1024 }));
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.inTrailer) {
      callback(checkPadding(chunk));
      return;
    }
    this.fed += chunk.length;
    this.feed(chunk, callback, () => {
      // zlib stops consuming input only where the last member ended.
      const unconsumed = Math.min(chunk.length, this.fed - this.inner.bytesWritten);
      if (unconsumed === 0) return null;
      this.inTrailer = true;
      const problem = checkPadding(chunk.subarray(chunk.length - unconsumed));
      if (problem === null) this.inner.end();
      return problem;
    });
  }

  /** After the last member zlib was ended already (see `_write`). */
  protected override endInner(): void {
    if (!this.inTrailer) this.inner.end();
  }

  protected override malformed(error: Error): MalformedArchiveError {
    return malformed(error);
  }
}

function checkPadding(bytes: Buffer): MalformedArchiveError | null {
  const bad = bytes.findIndex((byte) => byte !== 0);
  return bad === -1
    ? null
    : new MalformedArchiveError('gzip stream: unexpected data after the last member (only zero padding is allowed)');
}

function malformed(error: Error): MalformedArchiveError {
  if (error instanceof MalformedArchiveError) return error;
  const code = (error as { code?: unknown }).code;
  const message =
    code === 'Z_BUF_ERROR' ? 'truncated gzip stream (unexpected end of file)' : `corrupt gzip stream: ${error.message}`;
  return new MalformedArchiveError(message, { cause: error });
}
