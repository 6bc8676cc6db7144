/**
 * GNU tar reads the data of each sparse segment from a block boundary of its own, so a map
 * whose segments before the last are not whole blocks (what Go's test archives and some
 * writers hold) would be extracted wrong by it. Any map can be made safe without giving up
 * sparseness: each such segment grows over the hole after it to the next block boundary
 * (a hole reads as zeros, so the content is the same), merging with the next segment where
 * they meet. Only the map and the stored bytes change; the file does not.
 */
import { BLOCK } from './layout.js';
import type { SparseMap } from './types.js';

const ZEROS = Buffer.alloc(64 * 1024);

/** Whether GNU tar reads `map` right: every data segment but the last is whole blocks. */
export function isBlockAligned(map: SparseMap): boolean {
  const segments = map.segments;
  let last = segments.length - 1;
  while (last >= 0 && segments[last]![1] === 0) last--;
  for (let i = 0; i < last; i++) if (segments[i]![1] % BLOCK !== 0) return false;
  return true;
}

/**
 * `map` with every data segment but the last grown to whole blocks over the hole after it,
 * merged with the next one where they meet. Empty segments go (the writer adds the final
 * `[size, 0]` GNU tar needs). Segments must be ascending and disjoint, within the file.
 */
export function alignSparse(map: SparseMap): SparseMap {
  const out: Array<[number, number]> = [];
  let current: [number, number] | undefined;
  for (const [offset, length] of map.segments) {
    if (length === 0) continue;
    if (current !== undefined) {
      const grownEnd = current[0] + Math.ceil(current[1] / BLOCK) * BLOCK;
      if (grownEnd >= offset) {
        current[1] = offset + length - current[0];
        continue;
      }
      out.push([current[0], grownEnd - current[0]]);
    }
    current = [offset, length];
  }
  if (current !== undefined) out.push(current);
  return { segments: out };
}

/**
 * The stored bytes of `to` (made by {@link alignSparse} from `from`) out of the stored bytes
 * of `from`: `from`'s data where it lies, zeros where `to` grew over a hole. Ends early if
 * `stored` does (the caller's byte count then reports it).
 */
export async function* alignedData(stored: AsyncIterable<Buffer>, from: SparseMap, to: SparseMap): AsyncGenerator<Buffer> {
  const iterator = stored[Symbol.asyncIterator]();
  let chunk: Buffer = Buffer.alloc(0);
  let pos = 0;
  const olds = from.segments.filter(([, length]) => length > 0);
  let next = 0;
  for (const [offset, length] of to.segments) {
    const end = offset + length;
    for (let at = offset; at < end; ) {
      const old = olds[next];
      if (old !== undefined && old[0] <= at) {
        const oldEnd = old[0] + old[1];
        const upTo = Math.min(end, oldEnd);
        while (at < upTo) {
          if (pos >= chunk.length) {
            const result = await iterator.next();
            if (result.done === true) return;
            chunk = result.value;
            pos = 0;
            continue;
          }
          const n = Math.min(upTo - at, chunk.length - pos);
          yield chunk.subarray(pos, pos + n);
          pos += n;
          at += n;
        }
        if (at >= oldEnd) next++;
      } else {
        const upTo = old === undefined ? end : Math.min(end, old[0]);
        for (; at < upTo; ) {
          const n = Math.min(upTo - at, ZEROS.length);
          yield ZEROS.subarray(0, n);
          at += n;
        }
      }
    }
  }
}
