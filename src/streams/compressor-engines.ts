/**
 * The names of the gzip engines, apart from the engines themselves: the CLI lists them in
 * `--gzip-engine`'s choices at start-up, before any command runs, and must not load pako,
 * the zstd binding and the native addon to do so (issue 10, start-up).
 */

/** Which deflate implementation compresses a gzip output. */
export type CompressorEngine = 'native' | 'zlib' | 'pako';

export const COMPRESSOR_ENGINES: readonly CompressorEngine[] = ['native', 'zlib', 'pako'];
