/**
 * Typed arrays that grow in place. The flattener keeps its fields per path in arrays that grow
 * with the image (tens of MiB for a million paths, issue 10). Grown by copying, every step
 * leaves the old array behind as garbage, which V8 frees only at its next full collection:
 * the last steps alone put ~50 MiB on top of peak RSS. A resizable ArrayBuffer reserves
 * address space once and commits pages only as it grows, so nothing is left behind. Where one
 * cannot be had (a process short of address space), arrays are copied as before.
 */
export type IntArray = Int8Array | Uint8Array | Int16Array | Int32Array | Uint32Array;

interface IntArrayConstructor<T extends IntArray> {
  new (buffer: ArrayBuffer): T;
  new (length: number): T;
  readonly BYTES_PER_ELEMENT: number;
}

/** ES2024's resizable ArrayBuffer (Node >= 20), which our ES2022 lib does not declare. */
interface ResizableArrayBuffer extends ArrayBuffer {
  readonly resizable: boolean;
  readonly maxByteLength: number;
  resize(byteLength: number): void;
}
const ResizableArrayBuffer = ArrayBuffer as unknown as new (
  byteLength: number,
  options: { maxByteLength: number },
) => ResizableArrayBuffer;

/** Address space reserved per array: 2 GiB, 512 million nodes of an Int32Array. */
const MAX_BYTES = 2 ** 31;

/** The live buffers made here: memoryUsage().arrayBuffers does not count resizable ones. */
const made = new Set<WeakRef<ArrayBuffer>>();
/** Forgets a buffer once collected, so a process that flattens image after image keeps no trail. */
const forget = new FinalizationRegistry<WeakRef<ArrayBuffer>>((ref) => made.delete(ref));

/** An array of `capacity` elements (all `fill`, else 0) that {@link grown} can grow in place. */
export function growableArray<T extends IntArray>(type: IntArrayConstructor<T>, capacity: number, fill?: number): T {
  let array: T;
  try {
    const buffer = new ResizableArrayBuffer(capacity * type.BYTES_PER_ELEMENT, { maxByteLength: MAX_BYTES });
    const ref = new WeakRef(buffer);
    made.add(ref);
    forget.register(buffer, ref);
    // No length given: the view tracks the buffer's length as it grows.
    array = new type(buffer);
  } catch {
    array = new type(capacity);
  }
  if (fill !== undefined && fill !== 0) array.fill(fill);
  return array;
}

/**
 * `array` with room for `capacity` elements, the new ones `fill` (else 0): the same array grown
 * in place when it is growable, else a copy.
 */
export function grown<T extends IntArray>(array: T, capacity: number, fill?: number): T {
  const buffer = array.buffer as ResizableArrayBuffer;
  const old = array.length;
  const bytes = capacity * array.BYTES_PER_ELEMENT;
  if (buffer.resizable === true && bytes <= buffer.maxByteLength && array.byteOffset === 0) {
    buffer.resize(bytes);
  } else {
    const next = new (array.constructor as IntArrayConstructor<T>)(capacity);
    next.set(array);
    array = next;
  }
  if (fill !== undefined && fill !== 0) array.fill(fill, old);
  return array;
}

/** Bytes held by live growable arrays (for measurements: process.memoryUsage() misses them). */
export function growableBytes(): number {
  let total = 0;
  for (const ref of made) total += ref.deref()?.byteLength ?? 0;
  return total;
}
