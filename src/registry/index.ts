export { Authenticator, parseTokenResponse, pullScope } from './auth.js';
export type { AuthTransport, AuthenticatorOptions } from './auth.js';
export { digestOf, openBlob, readBlob, verifyDigest } from './blob.js';
export type { BlobDescriptor, OpenBlobOptions } from './blob.js';
export { findChallenge, parseChallenges } from './challenge.js';
export type { Challenge } from './challenge.js';
export { RegistryClient, hostnameOf, isLoopbackHostname } from './client.js';
export type { RegistryClientOptions, RegistryRequest, RegistryResponse } from './client.js';
export {
  DOCKER_HUB_AUTH_KEY,
  registryKeyFor,
  resolveCredentials,
  runCredentialHelper,
} from './credentials.js';
export type { CredentialOptions, Credentials } from './credentials.js';
export {
  MAX_CONFIG_BYTES,
  MAX_ERROR_BYTES,
  MAX_MANIFEST_BYTES,
  MAX_TOKEN_BYTES,
  parseErrorEnvelope,
  parseRetryAfter,
} from './http.js';
export type { ResponseHeaders } from './http.js';
export {
  checkFetchedManifest,
  checkImageManifest,
  fetchManifest,
  manifestMediaType,
  parseConfig,
  parseDescriptor,
  resolveImage,
  singleImagePlatform,
  withDiffIds,
} from './manifest.js';
export * from './foreign.js';
export * from './schema1.js';
export type {
  Descriptor,
  FetchManifestOptions,
  FetchedManifest,
  ImageConfigJson,
  LayerDescriptor,
  ResolveImageOptions,
  ResolvedImage,
} from './manifest.js';
export {
  MANIFEST_ACCEPT,
  MediaType,
  isConfigMediaType,
  isForeignLayerMediaType,
  isImageManifestMediaType,
  isIndexMediaType,
  isSchema1MediaType,
  layerCompression,
} from './media-types.js';
export type { Compression } from './media-types.js';
export {
  defaultPlatform,
  formatPlatform,
  hostPlatform,
  isUnknownPlatform,
  normalizePlatform,
  parsePlatform,
  platformFromJson,
  platformMatches,
  platformScore,
  selectPlatform,
} from './platform.js';
export type { Platform, PlatformCandidate, PlatformJson } from './platform.js';
