/**
 * oci-rootfs: pull an image from any OCI / Docker registry (or an OCI layout, or a
 * `docker save` archive) into one flattened rootfs tar.
 *
 * Three levels (docs/architecture.md):
 * 1. {@link pullRootfs}: one call, one Readable of the uncompressed tar;
 * 2. {@link pullRootfs$}: the same pull as an Observable of {@link PullEvent}s;
 *    ({@link unpackRootfs} / {@link unpackRootfs$}: the same pull written to a directory);
 * 3. the parts of that pull, to build a pipeline of your own: a store ({@link openStore}),
 *    the resolver ({@link resolveImage}), the verified layers ({@link layerSources}), the
 *    flattener ({@link flattenLayers}), compressors and atomic output.
 * Beside them, questions that need no layer: {@link inspectImage}, {@link imageExists},
 * {@link checkImageChanged}, {@link readManifest}.
 *
 * Everything else in the package is internal and may change in any release.
 */

// Level 1 and 2: the whole pull.
export { pullRootfs, pullRootfs$, type PullRootfs$Options } from './pull/pull-rootfs.js';
export type { PullOptions } from './pull/pull-options.js';
export {
  checkUnpackSupported,
  unpackRootfs,
  unpackRootfs$,
  type UnpackOptions,
  type UnpackResult,
} from './unpack/unpack-rootfs.js';
export type {
  DoneEvent,
  LayerDoneEvent,
  LayerInfo,
  LayerStartEvent,
  PlatformInfo,
  ProgressEvent,
  PullEvent,
  RateLimitEvent,
  ResolvedEvent,
  ResumeEvent,
  RetryEvent,
  WarningEvent,
} from './pull/events.js';

// Questions about an image.
export type { ConnectionOptions, QueryOptions } from './queries/options.js';
export {
  imageExists,
  inspectImage,
  readManifest,
  type ImageExistence,
  type InspectedConfig,
  type InspectedIndex,
  type InspectedIndexEntry,
  type InspectedLayer,
  type InspectedManifest,
  type InspectResult,
} from './queries/inspect.js';
export { checkImageChanged, type ImageChangeCheck, type PulledImageDigests } from './queries/image-changed.js';

// Level 3: the parts of a pull.
export { openStore, parseSourceReference, type OpenStoreOptions, type SourceReference } from './stores/index.js';
export { registryStore } from './stores/registry-store.js';
export { ociLayoutStore, type OciLayoutStoreOptions } from './stores/oci-layout.js';
export { dockerArchiveStore } from './stores/docker-archive.js';
export type { ImageStore, OpenLayerHooks, StoreRoot, StoredBlob } from './stores/store.js';
export { RegistryClient, type RegistryClientOptions } from './registry/client.js';
export { resolveImage, type ResolvedConfig, type ResolvedImage, type ResolveOptions } from './queries/resolve.js';
export { layerSources, type LayerSourceOptions } from './stores/layer-sources.js';
export {
  flattenLayers,
  FlattenRestart,
  type FlattenLayer,
  type FlattenLessons,
  type FlattenOptions,
  type FlattenWarning,
  type LayerFlattenStats,
  type Superseded,
} from './flatten/flatten.js';
export { flattenTo$, type FlattenEvent, type FlattenToOptions, type RestartableOutput } from './pull/flatten-to.js';
export { passthroughLayer, type PassthroughOutput } from './pull/passthrough.js';
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
export { decompressor, type DecompressorKind } from './streams/decompress.js';
export { verifyDigestStream, type DigestVerifierOptions } from './streams/digest-verifier.js';
export { createByteMeter, type ByteMeterOptions } from './streams/byte-meter.js';
export {
  createAtomicFile,
  writeAtomically,
  writeToStdout,
  type AtomicFile,
  type StdoutLike,
  type WriteOutputResult,
} from './streams/output-file.js';
// Our tar codec (reader, header encoder): its barrel is curated where it lives.
export * from './streams/tar/index.js';

// The image model.
export { parseReference, type ImageReference } from './reference/index.js';
export { formatPlatform, parsePlatform, type Platform } from './image/platform.js';
export { MediaType, type Compression } from './image/media-types.js';
export type { Descriptor, FetchedManifest, ImageConfigJson, LayerDescriptor, RuntimeConfigJson } from './image/types.js';

// Errors: one base with a stable `code` and the exit status the CLI uses (docs/errors.md).
export {
  AbortError,
  AuthError,
  DigestMismatchError,
  EngineUnavailableError,
  ExitCode,
  HardlinkTargetError,
  InvalidReferenceError,
  MalformedArchiveError,
  ManifestError,
  NetworkError,
  NotFoundError,
  OciRootfsError,
  PlatformNotFoundError,
  RateLimitError,
  RegistryError,
  SizeMismatchError,
  UnsafeEntryError,
  UsageError,
  type ErrorCode,
  type NotFoundErrorInit,
  type OciRootfsErrorOptions,
  type RegistryErrorDetail,
  type RegistryErrorInit,
} from './errors.js';
