import type { TarHeader } from '../streams/tar/types.js';
import { encodeHeader, encodeHeaderInto, paddingFor } from '../streams/tar/writer.js';

/**
 * Small writes (headers, links, small bodies) are gathered up to this size before they are
 * yielded: each chunk costs a write downstream (a thread-pool round trip for a file), and
 * 64 KiB batches left the flattener waiting on those (many: 7.5 s → 6.4 s end to end).
 */
export const OUTPUT_BATCH = 256 * 1024;
/** Bodies up to this size are copied into the output batch instead of yielded alone. */
export const SMALL_BODY = 32 * 1024;
const BLOCK = 512;
/** Room for a few output batches: a full one is sealed and a new one allocated. */
const BATCH_CAPACITY = 1024 * 1024;

/**
 * The flattener's output bytes not yet yielded. Small writes (headers, padding, small bodies)
 * go straight into `batch`; what is handed out is a slice of it that is never written again
 * (the next writes go after it). Large buffers are queued as they are, without a copy.
 */
export class OutputBatch {
  private batch: Buffer = Buffer.allocUnsafe(BATCH_CAPACITY);
  /** Start of the bytes of `batch` not yet moved to `pending`. */
  private batchStart = 0;
  private batchEnd = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  /** Whether enough is gathered to be worth yielding. */
  get full(): boolean {
    return this.pendingBytes >= OUTPUT_BATCH;
  }

  pushHeader(header: TarHeader): void {
    if (this.room(BLOCK) && encodeHeaderInto(header, this.batch, this.batchEnd)) {
      this.batchEnd += BLOCK;
      this.pendingBytes += BLOCK;
      return;
    }
    this.push(encodeHeader(header));
  }

  /** The zeros that complete a body of `size` bytes to whole blocks. */
  pushPadding(size: number): void {
    const length = paddingFor(size).length;
    if (length === 0) return;
    this.room(length);
    this.batch.fill(0, this.batchEnd, this.batchEnd + length);
    this.batchEnd += length;
    this.pendingBytes += length;
  }

  push(buffer: Buffer): void {
    const length = buffer.length;
    if (length === 0) return;
    if (length <= SMALL_BODY && this.room(length)) {
      buffer.copy(this.batch, this.batchEnd);
      this.batchEnd += length;
    } else {
      this.sealBatch();
      this.pending.push(buffer);
    }
    this.pendingBytes += length;
  }

  /** Everything gathered, as one buffer (nothing when empty). */
  *drain(): Generator<Buffer> {
    if (this.pendingBytes === 0) return;
    this.sealBatch();
    const out = this.pending.length === 1 ? (this.pending[0] as Buffer) : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    yield out;
  }

  private room(length: number): boolean {
    if (this.batchEnd + length <= this.batch.length) return true;
    if (length > SMALL_BODY + BLOCK) return false;
    this.sealBatch();
    this.batch = Buffer.allocUnsafe(BATCH_CAPACITY);
    this.batchStart = this.batchEnd = 0;
    return true;
  }

  /** Moves the unsealed bytes of `batch` to `pending`. */
  private sealBatch(): void {
    if (this.batchEnd === this.batchStart) return;
    this.pending.push(this.batch.subarray(this.batchStart, this.batchEnd));
    this.batchStart = this.batchEnd;
  }
}
