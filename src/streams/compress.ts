/**
 * The last byte stage of the pipeline: the flattened tar, compressed or not (DESIGN.md §5).
 *
 * Three gzip engines sit behind one factory (DESIGN.md §8):
 * - `native`, the default where it loads: libdeflate through our optional addon
 *   (native/oci_deflate.c), independent 1 MiB gzip members deflated on libuv's thread
 *   pool, every core busy; about half the CPU of node:zlib and a smaller output;
 * - `zlib`, the fallback that always works: the same scheme with node:zlib;
 * - `pako`, pure JS, one member on one core (about 2.5x slower than node:zlib), for
 *   runtimes without node:zlib.
 * All give gzip whose headers carry no time and the same OS byte everywhere, so the same
 * tar gives the same bytes on every machine for one engine (§1); block boundaries depend on
 * the input only. Different engines give different gzip bytes of the same tar.
 */
import { PassThrough, Transform, type TransformCallback } from 'node:stream';
import { Deflate } from 'pako';
import { EngineUnavailableError, UsageError } from '../errors.js';
import { NATIVE_ENV, nativeDisabled } from '../native-addon.js';
import { loadNativeDeflate, nativeLoadError, nativeMember } from './native-deflate.js';
import { ParallelGzip } from './parallel-gzip.js';
import { createZstdCompressor, nodeHasZstd, zstdAvailable } from './zstd.js';

/** What `-o` / `--format` can name. */
export type OutputFormat = 'tar' | 'gzip' | 'zstd';

import type { CompressorEngine } from './compressor-engines.js';
export { COMPRESSOR_ENGINES, type CompressorEngine } from './compressor-engines.js';

export interface CompressorOptions {
  /**
   * gzip: deflate level 0 (store) to 9 (smallest), 6 when absent, as gzip(1).
   * zstd: 1 (fastest) to 19 (smallest), 3 when absent, as zstd(1).
   */
  level?: number;
  /**
   * gzip only: `native` (libdeflate, the default where the addon loads), `zlib` (node:zlib,
   * the default elsewhere) or `pako` (pure JS). Asking for `native` where the addon is not
   * there is an {@link EngineUnavailableError}. zstd takes node:zlib where the running Node
   * has zstd, else the zstd-napi binding.
   */
  engine?: CompressorEngine;
}

const DEFAULT_LEVEL = 6;

/**
 * The gzip engine {@link createCompressor} uses for `requested`: `native` when the addon
 * loads (and `OCI_ROOTFS_NATIVE` is not `0`), else `zlib`. A requested engine is returned
 * as it is; `native` that cannot load is an {@link EngineUnavailableError}.
 */
export function resolveGzipEngine(requested?: CompressorEngine): CompressorEngine {
  if (requested === 'zlib' || requested === 'pako') return requested;
  if (loadNativeDeflate() !== undefined) return 'native';
  if (requested === undefined) return 'zlib';
  const why = nativeDisabled()
    ? `${NATIVE_ENV}=${process.env[NATIVE_ENV] ?? ''} turns it off`
    : `the libdeflate addon is not built or does not load (${describe(nativeLoadError())}); it is built at npm install on Linux with a C compiler and libdeflate-dev`;
  throw new EngineUnavailableError(`gzip engine native is not available: ${why}; use --gzip-engine zlib`);
}

/**
 * A Transform from tar bytes to the output format's bytes. `tar` is a PassThrough so the
 * caller composes the same pipeline whatever the format.
 *
 * @example
 * ```ts
 * await pipeline(pullRootfs('alpine', {}), createCompressor('gzip'), createWriteStream('a.tgz'));
 * ```
 */
export function createCompressor(format: OutputFormat, options: CompressorOptions = {}): Transform {
  switch (format) {
    case 'tar':
      return new PassThrough();
    case 'gzip':
      return createGzipCompressor(checkLevel(options.level ?? DEFAULT_LEVEL), resolveGzipEngine(options.engine));
    case 'zstd':
      return createZstdCompressor(options.level === undefined ? {} : { level: options.level });
  }
}

/**
 * What this runtime compresses with by default, as `oci-rootfs --version` prints it: gzip
 * `libdeflate <version>` or `node:zlib` (with the reason the addon is not used), zstd
 * `node:zlib`, `zstd-napi` or `none`.
 */
export function compressionEngines(): { gzip: string; zstd: string } {
  const addon = loadNativeDeflate();
  const gzip =
    addon !== undefined
      ? `libdeflate ${addon.libdeflateVersion}`
      : `node:zlib (${nativeDisabled() ? `${NATIVE_ENV}=${process.env[NATIVE_ENV] ?? ''}` : 'no libdeflate addon'})`;
  const zstd = nodeHasZstd() ? 'node:zlib' : zstdAvailable() ? 'zstd-napi' : 'none (needs Node.js >= 22.15 or zstd-napi)';
  return { gzip, zstd };
}

function createGzipCompressor(level: number, engine: CompressorEngine): Transform {
  if (engine === 'pako') return new PakoGzip(level);
  const addon = engine === 'native' ? loadNativeDeflate() : undefined;
  return new ParallelGzip(addon === undefined ? { level } : { level, deflateMember: nativeMember(addon) });
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message.split('\n')[0] ?? error.message;
  return 'not loaded';
}

/**
 * The format a file name asks for, from its extension: `.tar`; `.tar.gz`, `.tgz`, `.gz`;
 * `.tar.zst`, `.tzst`, `.zst`. `undefined` when the name says nothing (the CLI then writes
 * plain tar). A bare `.gz` counts as gzip because writing plain tar under that name would
 * be a trap.
 */
export function formatFromPath(path: string): OutputFormat | undefined {
  const name = path.toLowerCase();
  if (name.endsWith('.tar')) return 'tar';
  if (name.endsWith('.tgz') || name.endsWith('.gz')) return 'gzip';
  if (name.endsWith('.tzst') || name.endsWith('.zst')) return 'zstd';
  return undefined;
}

function checkLevel(level: number): number {
  if (!Number.isInteger(level) || level < 0 || level > 9) {
    throw new UsageError(`invalid compression level ${level}: expected an integer from 0 to 9`);
  }
  return level;
}

/**
 * RFC 1952 header: bytes 4-7 are MTIME, byte 9 is OS. zlib never writes a time (we never
 * call deflateSetHeader), but its OS byte is a compile-time constant of the platform:
 * 3 (Unix) on Linux, 19 on macOS, 10 on Windows. We write 3 everywhere: it is what Linux
 * node:zlib, GNU gzip on Unix and pako (always 3) already write, so the common case is
 * unchanged and both engines agree without patching pako; and the archive is a Unix root
 * filesystem. (npm's tar writes 255 "unknown" instead; either would be deterministic.)
 * MTIME is zeroed here too so the promise "the gzip header carries no time" lives in one
 * place rather than in an assumption about each engine.
 */
const MTIME_START = 4;
const MTIME_END = 8;
const OS_OFFSET = 9;
const OS_UNIX = 3;
const HEADER_LENGTH = 10;

/**
 * Rewrites the header bytes of a gzip stream in place as they pass, chunk by chunk (the
 * header may be split across chunks). Exported for the tests: on Linux zlib already writes
 * 3, so only a direct test shows the patch works where it does not.
 * @internal
 */
export function gzipHeaderNormaliser(): (chunk: Uint8Array) => void {
  let offset = 0;
  return (chunk) => {
    if (offset >= HEADER_LENGTH) return;
    for (let i = offset; i < Math.min(HEADER_LENGTH, offset + chunk.length); i++) {
      if (i >= MTIME_START && i < MTIME_END) chunk[i - offset] = 0;
      else if (i === OS_OFFSET) chunk[i - offset] = OS_UNIX;
    }
    offset += chunk.length;
  };
}

/**
 * pako's streaming Deflate as a Transform. Backpressure is the Transform's own: the
 * callback of `_transform` is held while the readable side is over its high-water mark, so
 * no more input is deflated until the consumer reads. The output of one input chunk is
 * pushed at once; it is bounded by that chunk's size.
 */
class PakoGzip extends Transform {
  readonly #deflate: Deflate;

  constructor(level: number) {
    super();
    const normalise = gzipHeaderNormaliser();
    // 64 KiB output chunks, as node:zlib's default, rather than pako's 16 KiB.
    this.#deflate = new Deflate({ level, gzip: true, chunkSize: 64 * 1024 });
    // pako allocates a new output buffer after each onData call, so no copy is needed.
    this.#deflate.onData = (chunk) => {
      normalise(chunk);
      this.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    };
    // The default onEnd concatenates every chunk into `result`; we keep nothing.
    this.#deflate.onEnd = () => {};
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    callback(this.#deflate.push(chunk, false) ? null : this.#error());
  }

  override _flush(callback: TransformCallback): void {
    callback(this.#deflate.push(new Uint8Array(0), true) ? null : this.#error());
  }

  #error(): Error {
    return new Error(`gzip (pako) failed: ${this.#deflate.msg || `status ${this.#deflate.err}`}`);
  }
}
