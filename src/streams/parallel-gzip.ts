/**
 * gzip on every core: the input is cut into fixed-size blocks, each block is deflated on
 * libuv's thread pool as an independent gzip member, and the members are written in order.
 * Every gzip reader accepts a multi-member stream as one file (RFC 1952 §2.2), deflate is by
 * far the costliest stage of a pull (DESIGN.md §8), and one zlib stream uses one core.
 *
 * Independent blocks cost a little ratio (no shared window across a boundary: about 0.3 %
 * at 1 MiB blocks) and buy determinism for free: block boundaries depend on the input only.
 */
import { availableParallelism } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import { promisify } from 'node:util';
import { gzip as gzipCallback, type ZlibOptions } from 'node:zlib';

const gzip = promisify<Buffer, ZlibOptions, Buffer>(gzipCallback);

/** The OS byte every member carries, whatever platform deflated it (3 = Unix, as GNU gzip). */
const GZIP_OS_UNIX = 3;
const GZIP_OS_OFFSET = 9;

export interface ParallelGzipOptions {
  /** zlib level 0-9 (default 6). */
  level?: number;
  /** Uncompressed bytes per member (default 1 MiB). */
  blockSize?: number;
  /** Members deflated at once (default: the number of cores). */
  concurrency?: number;
}

export class ParallelGzip extends Transform {
  private readonly level: number;
  private readonly blockSize: number;
  private readonly concurrency: number;
  private block: Buffer[] = [];
  private blockBytes = 0;
  /** Members being deflated, oldest first: written in this order. */
  private readonly inFlight: Array<Promise<Buffer>> = [];
  private membersWritten = 0;

  constructor(options: ParallelGzipOptions = {}) {
    super();
    this.level = options.level ?? 6;
    this.blockSize = options.blockSize ?? 1024 * 1024;
    this.concurrency = Math.max(1, options.concurrency ?? availableParallelism());
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.addChunk(chunk).then(() => callback(), callback);
  }

  override _flush(callback: TransformCallback): void {
    // An empty input still gives a valid (empty) gzip file.
    if (this.blockBytes > 0 || this.membersWritten + this.inFlight.length === 0) this.submit();
    this.drain(0).then(() => callback(), callback);
  }

  private async addChunk(chunk: Buffer): Promise<void> {
    let rest = chunk;
    while (rest.length > 0) {
      const room = this.blockSize - this.blockBytes;
      const part = rest.length > room ? rest.subarray(0, room) : rest;
      this.block.push(part);
      this.blockBytes += part.length;
      rest = rest.subarray(part.length);
      if (this.blockBytes === this.blockSize) {
        this.submit();
        // Backpressure: no more than `concurrency` members in memory at once.
        await this.drain(this.concurrency - 1);
      }
    }
  }

  private submit(): void {
    const input = this.block.length === 1 ? (this.block[0] as Buffer) : Buffer.concat(this.block, this.blockBytes);
    this.block = [];
    this.blockBytes = 0;
    const member = gzip(input, { level: this.level });
    // Rejections are awaited in order by drain(); this only keeps Node from calling one unhandled meanwhile.
    member.catch(() => undefined);
    this.inFlight.push(member);
  }

  /** Writes finished members, oldest first, until at most `keep` are still in flight. */
  private async drain(keep: number): Promise<void> {
    while (this.inFlight.length > keep) {
      const member = await (this.inFlight[0] as Promise<Buffer>);
      this.inFlight.shift();
      member[GZIP_OS_OFFSET] = GZIP_OS_UNIX;
      this.membersWritten++;
      this.push(member);
    }
  }
}

/** A {@link ParallelGzip} transform. */
export function createParallelGzip(options: ParallelGzipOptions = {}): ParallelGzip {
  return new ParallelGzip(options);
}
