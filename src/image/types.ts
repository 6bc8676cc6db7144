/**
 * The shapes of the image model: descriptors, layers, the config, a manifest as read.
 * Types only, so every module of the model (and schema 1) can share them without a cycle.
 */
import type { Compression } from './media-types.js';
import type { PlatformJson } from './platform.js';

/** A content descriptor as it appears in manifests and indexes. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  platform?: PlatformJson;
}

/** A filesystem layer of a resolved image, checked and ready to be fetched. */
export interface LayerDescriptor {
  /** Digest of the bytes as stored (compressed or not). */
  digest: string;
  /** Bytes as stored. */
  size: number;
  mediaType: string;
  /** Where a foreign / non-distributable layer is served (only when foreign layers are allowed). */
  urls?: string[];
  compression: Compression;
  /**
   * sha256 of the uncompressed tar, from the config's `rootfs.diff_ids` (same position).
   * Absent for Docker schema 1 images, which have no diffIDs: their layers are checked by
   * stored digest and size only.
   */
  diffId?: string;
}

/** The runtime part of an image config (`config` in the JSON); every field checked when read. */
export interface RuntimeConfigJson {
  User?: string;
  Env?: string[] | null;
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  WorkingDir?: string;
  ExposedPorts?: Record<string, object> | null;
  Volumes?: Record<string, object> | null;
  Labels?: Record<string, string> | null;
  StopSignal?: string;
  [key: string]: unknown;
}

/** The parts of an image config rootfs users need (the rest stays in the JSON). */
export interface ImageConfigJson {
  architecture?: string;
  os?: string;
  variant?: string;
  config?: RuntimeConfigJson | null;
  rootfs: { type: string; diff_ids: string[] };
  history?: unknown[];
  [key: string]: unknown;
}

/** A manifest or index as read from a store: its bytes are what the digest covers. */
export interface FetchedManifest {
  mediaType: string;
  /** Digest of `bytes` (algorithm of the requested digest, else sha256). */
  digest: string;
  /**
   * What the digest covers: the body, except for a signed schema 1 manifest, where it is
   * the JWS payload (the body without its signatures) and `json` is parsed from it.
   */
  bytes: Buffer;
  /** The body as served, when it differs from `bytes` (a signed schema 1 manifest). */
  signedBytes?: Buffer;
  json: Record<string, unknown>;
}
