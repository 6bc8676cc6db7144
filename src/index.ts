/**
 * oci-rootfs: pull an image from any OCI / Docker registry into one flattened rootfs tar.
 *
 * Three levels (DESIGN.md §2):
 * - {@link pullRootfs}: one call, one Readable of the uncompressed tar;
 * - {@link pullRootfs$}: the same pull as an Observable of {@link PullEvent}s;
 * - the operators and stream factories below, to build a pipeline of your own.
 */
export * from './errors.js';

export { pullRootfs, pullRootfs$, type PullRootfs$Options } from './operators/pull-rootfs.js';
export type { PullOptions } from './operators/pull-options.js';
export type * from './operators/events.js';
export { resolveImage$, type ResolveImageOperatorOptions } from './operators/resolve-image.js';
export { layerSources, openLayerTar, type LayerSourceOptions } from './operators/layer-sources.js';
export { flattenTo$, type FlattenEvent, type FlattenToOptions } from './operators/flatten-to.js';
export {
  currentDigest,
  headManifest,
  imageExists,
  inspectImage,
  inspectWith,
  type CurrentDigest,
  type ImageExistence,
  type ImageQueryOptions,
  type InspectedConfig,
  type InspectedIndex,
  type InspectedIndexEntry,
  type InspectedLayer,
  type InspectedManifest,
  type InspectResult,
  type ManifestHead,
} from './operators/inspect.js';
export { checkImageChanged, type ImageChangeCheck, type PulledImageDigests } from './operators/image-changed.js';

export {
  flattenLayers,
  type FlattenLayer,
  type FlattenOptions,
  type LayerFlattenStats,
} from './flatten/flatten.js';

export * from './reference/index.js';
export * from './registry/index.js';
export * from './sources/index.js';

export * from './streams/tar/index.js';
export {
  COMPRESSOR_ENGINES,
  compressionEngines,
  createCompressor,
  formatFromPath,
  resolveGzipEngine,
  type CompressorEngine,
  type CompressorOptions,
  type OutputFormat,
} from './streams/compress.js';
export {
  createZstdCompressor,
  createZstdDecompressor,
  nodeHasZstd,
  zstdAvailable,
  type ZstdEngine,
} from './streams/zstd.js';
export { createParallelGzip, ParallelGzip, type MemberDeflater, type ParallelGzipOptions } from './streams/parallel-gzip.js';
export { decompressor, StrictGunzip, type DecompressorKind } from './streams/decompress.js';
export { DigestVerifier, verifyDigestStream, type DigestVerifierOptions } from './streams/digest-verifier.js';
export { ByteMeter, createByteMeter, type ByteMeterOptions } from './streams/byte-meter.js';
export { writeAtomically, writeToStdout, type StdoutLike } from './streams/output-file.js';
