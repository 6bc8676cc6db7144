/**
 * What a pull reports while it runs (DESIGN.md §6): a union discriminated on `type`.
 * `--progress json` writes exactly these, one per line.
 */

export interface PlatformInfo {
  os: string;
  architecture: string;
  variant?: string;
}

export interface LayerInfo {
  index: number;
  digest: string;
  size: number;
  mediaType: string;
}

/** The reference was resolved to one image manifest. */
export interface ResolvedEvent {
  type: 'resolved';
  reference: string;
  /** Digest of the index or list when the tag pointed at one. */
  indexDigest?: string;
  manifestDigest: string;
  manifestMediaType: string;
  platform: PlatformInfo;
  configDigest: string;
  /** Base first. */
  layers: LayerInfo[];
}

export interface LayerStartEvent {
  type: 'layer-start';
  index: number;
  digest: string;
  size: number;
}

/** Compressed bytes received for one layer; throttled. */
export interface ProgressEvent {
  type: 'progress';
  index: number;
  bytes: number;
  total: number;
}

/** One layer was read to its end and every check of it passed. */
export interface LayerDoneEvent {
  type: 'layer-done';
  index: number;
  /** Stored (usually compressed) bytes received for this layer, over every pass of it. */
  bytesIn: number;
  /**
   * Uncompressed tar bytes written while this layer was read. Entries held for later (a
   * hardlink waiting for its target, a pending parent) count where they are written.
   */
  bytesOut: number;
  entriesWritten: number;
  entriesSkipped: number;
}

export interface RetryEvent {
  type: 'retry';
  what: string;
  attempt: number;
  reason: string;
  delayMs: number;
}

export interface ResumeEvent {
  type: 'resume';
  index: number;
  offset: number;
}

export interface RateLimitEvent {
  type: 'rate-limit';
  limit?: string;
  remaining?: string;
  retryAfterSeconds?: number;
}

export interface WarningEvent {
  type: 'warning';
  code: string;
  message: string;
}

export interface DoneEvent {
  type: 'done';
  manifestDigest: string;
  /** Compressed layer bytes received (all passes). */
  bytesIn: number;
  /** Uncompressed tar bytes produced. */
  bytesOut: number;
  entries: number;
  seconds: number;
  /**
   * Set by `oci-rootfs pull` for gzip output: the engine that deflated it (`native` =
   * libdeflate, `zlib` = node:zlib, `pako`). Each engine writes its own gzip bytes of the
   * same tar. pullRootfs itself writes an uncompressed tar and leaves this out.
   */
  gzipEngine?: 'native' | 'zlib' | 'pako';
  /**
   * How the output was made: `passthrough`, the single gzip layer's bytes as published
   * (byte-identical to the blob), or `flatten`, the flattener's tar.
   */
  path: 'passthrough' | 'flatten';
}

export type PullEvent =
  | ResolvedEvent
  | LayerStartEvent
  | ProgressEvent
  | LayerDoneEvent
  | RetryEvent
  | ResumeEvent
  | RateLimitEvent
  | WarningEvent
  | DoneEvent;
