/**
 * gzip on every core: the input is cut into fixed-size blocks, each block is deflated off
 * the main thread as an independent gzip member, and the members are written in order.
 * Every gzip reader accepts a multi-member stream as one file (RFC 1952 §2.2), deflate is by
 * far the costliest stage of a pull (DESIGN.md §8), and one deflate stream uses one core.
 *
 * Who deflates a member is a parameter: node:zlib on libuv's pool (the default, always
 * there) or libdeflate through our addon (src/streams/native-deflate.ts), which deflates the
 * same block in about half the CPU time. Both run on libuv's thread pool.
 *
 * Independent blocks cost a little ratio (no shared window across a boundary: about 0.3 %
 * at 1 MiB blocks) and buy determinism for free: block boundaries depend on the input only.
 */
import { availableParallelism } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import { gzip as zlibGzip } from 'node:zlib';

/** The OS byte every member carries, whatever platform deflated it (3 = Unix, as GNU gzip). */
const GZIP_OS_UNIX = 3;
const GZIP_OS_OFFSET = 9;

/** Deflates one block into one complete gzip member (header, deflate stream, trailer). */
export type MemberDeflater = (block: Buffer, level: number) => Promise<Buffer>;

export interface ParallelGzipOptions {
  /** Deflate level 0-9 (default 6). */
  level?: number;
  /** Uncompressed bytes per member (default 1 MiB). */
  blockSize?: number;
  /**
   * Members in memory at once, being deflated or queued (default {@link defaultConcurrency}).
   */
  concurrency?: number;
  /** Who deflates a member (default: node:zlib, {@link zlibMember}). */
  deflateMember?: MemberDeflater;
}

export const DEFAULT_BLOCK_SIZE = 1024 * 1024;

/**
 * The default number of members in flight: one per core, capped by libuv's thread pool
 * (`UV_THREADPOOL_SIZE`, 4 unless set: more members than pool threads would only wait in
 * memory), plus one, so that a thread whose member finished finds the next one queued
 * rather than waiting for the main thread to fill it.
 */
export function defaultConcurrency(env: NodeJS.ProcessEnv = process.env): number {
  const pool = Number(env['UV_THREADPOOL_SIZE']);
  const threads = Number.isInteger(pool) && pool > 0 ? pool : 4;
  return Math.min(availableParallelism(), threads) + 1;
}

/**
 * node:zlib's one-shot gzip. Its output buffer (`chunkSize`) is sized to hold a whole
 * member: at zlib's default 16 KiB, every 16 KiB of output is one round trip from the pool
 * back to the main thread and a new pool job, so the pool idles while the main thread is
 * busy (about 1.4 of 2 cores were used); one buffer per member is one round trip per member.
 */
export function zlibMember(block: Buffer, level: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // deflateBound: stored blocks add 5 bytes per 16 KiB; gzip adds 18; a little slack.
    const chunkSize = Math.max(64 * 1024, block.length + (block.length >>> 10) * 5 + 1024);
    zlibGzip(block, { level, chunkSize }, (error, member) => (error === null ? resolve(member) : reject(error)));
  });
}

export class ParallelGzip extends Transform {
  private readonly level: number;
  private readonly blockSize: number;
  private readonly concurrency: number;
  private readonly deflateMember: MemberDeflater;
  private block: Buffer[] = [];
  private blockBytes = 0;
  /** Members being deflated, oldest first: written in this order. */
  private readonly inFlight: Array<Promise<Buffer>> = [];
  private membersWritten = 0;

  constructor(options: ParallelGzipOptions = {}) {
    super();
    this.level = options.level ?? 6;
    this.blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
    this.concurrency = Math.max(1, options.concurrency ?? defaultConcurrency());
    this.deflateMember = options.deflateMember ?? zlibMember;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.addChunk(chunk).then(() => callback(), callback);
  }

  override _flush(callback: TransformCallback): void {
    // An empty input still gives a valid (empty) gzip file.
    if (this.blockBytes > 0 || this.membersWritten + this.inFlight.length === 0) this.submit();
    this.drain(0).then(() => callback(), callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // Members already handed to the pool finish there (a running deflate cannot be
    // stopped) and are dropped; drain() pushes nothing more once destroyed.
    this.inFlight.length = 0;
    this.block = [];
    callback(error);
  }

  private async addChunk(chunk: Buffer): Promise<void> {
    let rest = chunk;
    while (rest.length > 0 && !this.destroyed) {
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
    const member = this.deflateMember(input, this.level);
    // Rejections are awaited in order by drain(); this only keeps Node from calling one unhandled meanwhile.
    member.catch(() => undefined);
    this.inFlight.push(member);
  }

  /** Writes finished members, oldest first, until at most `keep` are still in flight. */
  private async drain(keep: number): Promise<void> {
    while (this.inFlight.length > keep && !this.destroyed) {
      const member = await (this.inFlight[0] as Promise<Buffer>);
      if (this.destroyed) return;
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
