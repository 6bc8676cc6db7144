/**
 * zstd both ways, for `tar+zstd` layers and `.tar.zst` output (DESIGN.md §2, §5).
 *
 * Two engines sit behind the same two factories: node:zlib, where the running Node has zstd
 * (`zlib.createZstdDecompress`, Node >= 22.15 / 23.8), and otherwise the `zstd-napi`
 * binding, an optional dependency (a prebuilt binary, or libzstd built at install time). The
 * binding is loaded lazily, the first time a zstd stream is asked for, so a gzip-only pull
 * never needs it, and a missing or unbuilt binding is an {@link EngineUnavailableError}
 * naming the fix instead of a failed import.
 *
 * The decompressor is strict, as {@link StrictGunzip} is for gzip: a stream that ends inside
 * a frame, holds no frame at all, or has bytes after the last frame that are not another
 * zstd frame (skippable frames are frames) is a {@link MalformedArchiveError}. Zero padding
 * is not tolerated: zstd has no padding convention and `zstd -d` refuses it too.
 *
 * The binding's own `DecompressStream` pushes all output of one input chunk without
 * looking at `push()`'s answer; one 64 KiB chunk of zstd can inflate to gigabytes (a 4-byte
 * RLE block is 128 KiB), so ours stops inflating as soon as the consumer is full and goes
 * on from `_read()`.
 */
import { createRequire } from 'node:module';
import { Duplex, Transform, type TransformCallback } from 'node:stream';
import * as zlib from 'node:zlib';
import { EngineUnavailableError, MalformedArchiveError, UsageError } from '../errors.js';
import { StrictInflater, type ZlibTransform } from './strict-inflater.js';

/** Which zstd implementation: node:zlib or the `zstd-napi` binding. */
export type ZstdEngine = 'node' | 'napi';

export interface ZstdOptions {
  /** Default: `node` where node:zlib has zstd, else `napi`. */
  engine?: ZstdEngine;
}

export interface ZstdCompressorOptions extends ZstdOptions {
  /** 1 (fastest) to 19 (smallest); 3 when absent, as zstd(1). */
  level?: number;
}

export const ZSTD_DEFAULT_LEVEL = 3;
export const ZSTD_MAX_LEVEL = 19;

type ZlibZstdFactory = (options?: { params?: Record<number, number> }) => ZlibTransform;

interface ZlibWithZstd {
  createZstdDecompress?: ZlibZstdFactory;
  createZstdCompress?: ZlibZstdFactory;
}

const zlibZstd = zlib as unknown as ZlibWithZstd;

/** Whether the running Node has zstd in node:zlib. */
export function nodeHasZstd(): boolean {
  return typeof zlibZstd.createZstdDecompress === 'function' && typeof zlibZstd.createZstdCompress === 'function';
}

/** The engine used when none is asked for. */
export function defaultZstdEngine(): ZstdEngine {
  return nodeHasZstd() ? 'node' : 'napi';
}

/**
 * The part of `zstd-napi/binding.js` we use, declared here rather than imported: zstd-napi
 * is an optional dependency, and a missing one must not break the build.
 */
declare namespace ZstdBinding {
  /** [ZSTD return value, bytes produced, bytes consumed] */
  type StreamResult = [number, number, number];
  type EndDirective = number;
  interface DCtx {
    decompressStream(dstBuf: Uint8Array, srcBuf: Uint8Array): StreamResult;
  }
  interface CCtx {
    setParameter(param: number, value: number): void;
    compressStream2(dstBuf: Uint8Array, srcBuf: Uint8Array, endOp: EndDirective): StreamResult;
  }
}

interface ZstdNapi {
  DCtx: new () => ZstdBinding.DCtx;
  CCtx: new () => ZstdBinding.CCtx;
  CParameter: { compressionLevel: number; checksumFlag: number };
  EndDirective: { continue: number; end: number };
  dStreamOutSize(): number;
  cStreamOutSize(): number;
}

let binding: ZstdNapi | undefined;

/** Loads the `zstd-napi` binding once; a clear error naming the fix when it is not there. */
function loadBinding(): ZstdNapi {
  if (binding !== undefined) return binding;
  try {
    binding = createRequire(import.meta.url)('zstd-napi/binding.js') as ZstdNapi;
  } catch (error) {
    throw new EngineUnavailableError(
      `zstd needs Node.js >= 22.15 (zstd in node:zlib; this is ${process.version}) or the optional zstd-napi ` +
        `package built for this platform: upgrade Node.js, or npm install zstd-napi (it needs a C++ compiler ` +
        `where no prebuilt binary exists)`,
      { cause: error },
    );
  }
  return binding;
}

/** Whether zstd can be used at all here (node:zlib or a loadable binding). */
export function zstdAvailable(): boolean {
  if (nodeHasZstd()) return true;
  try {
    loadBinding();
    return true;
  } catch {
    return false;
  }
}

/** A stream that inflates a zstd stream (one or more frames), strictly. */
export function createZstdDecompressor(options: ZstdOptions = {}): Duplex {
  const engine = options.engine ?? defaultZstdEngine();
  if (engine === 'node') {
    const factory = zlibZstd.createZstdDecompress;
    if (factory === undefined) throw new EngineUnavailableError(`node:zlib has no zstd in Node.js ${process.version}: use Node.js >= 22.15`);
    return new NodeZstdDecompressor(factory());
  }
  return new NapiZstdDecompressor(loadBinding());
}

/**
 * A Transform from bytes to one zstd frame, with a content checksum. Single-threaded, so
 * the same input at the same level gives the same bytes however it is chunked (for one
 * engine and libzstd version: node:zlib and zstd-napi may bundle different ones).
 */
export function createZstdCompressor(options: ZstdCompressorOptions = {}): Transform {
  const level = checkZstdLevel(options.level ?? ZSTD_DEFAULT_LEVEL);
  const engine = options.engine ?? defaultZstdEngine();
  if (engine === 'node') {
    const factory = zlibZstd.createZstdCompress;
    if (factory === undefined) throw new EngineUnavailableError(`node:zlib has no zstd in Node.js ${process.version}: use Node.js >= 22.15`);
    const constants = zlib.constants as unknown as Record<string, number | undefined>;
    const params: Record<number, number> = {};
    const levelParam = constants['ZSTD_c_compressionLevel'];
    const checksumParam = constants['ZSTD_c_checksumFlag'];
    if (levelParam !== undefined) params[levelParam] = level;
    if (checksumParam !== undefined) params[checksumParam] = 1;
    return new NodeZstdCompressor(factory({ params }));
  }
  return new NapiZstdCompressor(loadBinding(), level);
}

export function checkZstdLevel(level: number): number {
  if (!Number.isInteger(level) || level < 1 || level > ZSTD_MAX_LEVEL) {
    throw new UsageError(`invalid zstd compression level ${level}: expected an integer from 1 to ${ZSTD_MAX_LEVEL}`);
  }
  return level;
}

/**
 * `ZSTD_decompressStream` driven by hand. `inFrame` follows its return value: 0 means a
 * frame was fully decoded and flushed, anything else that more input is needed.
 */
class NapiZstdDecompressor extends Duplex {
  private readonly dctx: ZstdBinding.DCtx;
  private readonly outSize: number;
  private out: Buffer;
  /** Input not yet consumed, and the write callback that waits for it. */
  private src: Buffer | undefined;
  private writeCallback: ((error?: Error | null) => void) | undefined;
  private inFrame = false;
  private frames = 0;
  private consumedTotal = 0;

  constructor(zstd: ZstdNapi) {
    super();
    this.dctx = new zstd.DCtx();
    this.outSize = zstd.dStreamOutSize();
    this.out = Buffer.allocUnsafe(this.outSize);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.src = chunk;
    this.writeCallback = callback;
    this.pump();
  }

  override _read(): void {
    if (this.src !== undefined) this.pump();
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.frames === 0 && !this.inFrame) {
      callback(new MalformedArchiveError('empty zstd stream (no frame)'));
      return;
    }
    if (this.inFrame) {
      callback(new MalformedArchiveError(`truncated zstd stream (ends inside a frame after ${this.consumedTotal} bytes)`));
      return;
    }
    this.push(null);
    callback();
  }

  /** Inflates the pending input until it is consumed and flushed, or the reader is full. */
  private pump(): void {
    const src = this.src;
    if (src === undefined) return;
    let rest = src;
    for (;;) {
      let result: ReturnType<ZstdBinding.DCtx['decompressStream']>;
      try {
        result = this.dctx.decompressStream(this.out, rest);
      } catch (error) {
        this.fail(this.malformed(error));
        return;
      }
      const [ret, produced, consumed] = result;
      rest = rest.subarray(consumed);
      this.consumedTotal += consumed;
      if (ret === 0) {
        if (this.inFrame || consumed > 0) this.frames++;
        this.inFrame = false;
      } else if (consumed > 0 || produced > 0) {
        this.inFrame = true;
      }
      let more = true;
      if (produced > 0) {
        const chunk = this.out.subarray(0, produced);
        this.out = Buffer.allocUnsafe(this.outSize);
        more = this.push(chunk);
      }
      const drained = rest.length === 0 && (produced < this.outSize || ret === 0);
      if (drained) {
        const callback = this.writeCallback;
        this.src = undefined;
        this.writeCallback = undefined;
        callback?.();
        return;
      }
      if (!more) {
        // The reader is full: keep the rest for `_read()`.
        this.src = rest;
        return;
      }
    }
  }

  private malformed(error: unknown): MalformedArchiveError {
    const message = error instanceof Error ? error.message : String(error);
    if (!this.inFrame && this.frames > 0) {
      return new MalformedArchiveError(
        `zstd stream: unexpected data after the last frame at byte ${this.consumedTotal} (${message})`,
        { cause: error },
      );
    }
    return new MalformedArchiveError(`corrupt zstd stream: ${message}`, { cause: error });
  }

  private fail(error: Error): void {
    const callback = this.writeCallback;
    this.src = undefined;
    this.writeCallback = undefined;
    if (callback !== undefined) callback(error);
    else this.destroy(error);
  }
}

/** `ZSTD_compressStream2` driven by hand: one frame, level and checksum set, one thread. */
class NapiZstdCompressor extends Transform {
  private readonly cctx: ZstdBinding.CCtx;
  private readonly zstd: ZstdNapi;
  private readonly outSize: number;

  constructor(zstd: ZstdNapi, level: number) {
    super();
    this.zstd = zstd;
    this.cctx = new zstd.CCtx();
    this.cctx.setParameter(zstd.CParameter.compressionLevel, level);
    this.cctx.setParameter(zstd.CParameter.checksumFlag, 1);
    this.outSize = zstd.cStreamOutSize();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    callback(this.compress(chunk, this.zstd.EndDirective.continue));
  }

  override _flush(callback: TransformCallback): void {
    callback(this.compress(Buffer.alloc(0), this.zstd.EndDirective.end));
  }

  private compress(chunk: Buffer, end: ZstdBinding.EndDirective): Error | null {
    let rest = chunk;
    try {
      for (;;) {
        const out = Buffer.allocUnsafe(this.outSize);
        const [ret, produced, consumed] = this.cctx.compressStream2(out, rest, end);
        rest = rest.subarray(consumed);
        if (produced > 0) this.push(out.subarray(0, produced));
        const finished = end === this.zstd.EndDirective.continue ? rest.length === 0 && produced < this.outSize : ret === 0;
        if (finished) return null;
      }
    } catch (error) {
      return new Error(`zstd compression failed: ${error instanceof Error ? error.message : String(error)}`, {
        cause: error,
      });
    }
  }
}

/**
 * node:zlib's zstd compressor with every input chunk compressed as `ZSTD_e_continue` and the
 * frame ended by an empty `ZSTD_e_end`. Used directly, node:zlib ends the frame with the
 * last chunk when `end()` came before that chunk was processed, and a frame whose whole
 * input came in that one call is compressed as one known-size block (other parameters, a
 * content size in the header): other bytes for the same input, depending on chunking and
 * timing. Fed this way, zstd's output depends on the input only.
 */
class NodeZstdCompressor extends Transform {
  constructor(private readonly inner: ZlibTransform) {
    super();
    inner.on('data', (chunk: Buffer) => this.push(chunk));
    inner.on('error', (error: Error) => this.destroy(wrapCompressError(error)));
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    // The write callback comes once zlib consumed the chunk; our own push() backpressure
    // then holds the next chunk (Transform keeps the callback while our reader is full).
    this.inner.write(chunk, (error) => callback(error === undefined || error === null ? null : wrapCompressError(error)));
  }

  override _flush(callback: TransformCallback): void {
    this.inner.once('end', () => callback());
    this.inner.end();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.inner.destroy();
    callback(error);
  }
}

function wrapCompressError(error: unknown): Error {
  return new Error(`zstd compression failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
}

/**
 * node:zlib's zstd decompressor, strict as {@link StrictGunzip} is (both are a
 * {@link StrictInflater}): its errors become {@link MalformedArchiveError}, and since
 * node:zlib stops quietly at bytes after the last frame that are not another frame, any
 * such byte is refused here, zeros included (as the binding engine and `zstd -d` do).
 */
class NodeZstdDecompressor extends StrictInflater {
  constructor(inner: ZlibTransform) {
    super(inner);
  }

  protected override checkTrailer(_bytes: Buffer, offset: number): MalformedArchiveError {
    return new MalformedArchiveError(`zstd stream: unexpected data after the last frame at byte ${offset}`);
  }

  protected override malformed(error: Error): MalformedArchiveError {
    if (error instanceof MalformedArchiveError) return error;
    return new MalformedArchiveError(`corrupt zstd stream: ${error.message}`, { cause: error });
  }
}
