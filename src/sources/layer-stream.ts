/**
 * A stored layer's bytes → its verified, uncompressed tar: the same checks as a registry
 * layer (DESIGN.md §3): stored digest and size when known, decompression, diffID when
 * known. Every check runs at EOF, so a pass counts only once the stream has ended.
 */
import type { Readable } from 'node:stream';
import type { Compression } from '../registry/media-types.js';
import { checkedLayer } from '../streams/checked-layer.js';
import { decompressor } from '../streams/decompress.js';
import { verifyDigestStream } from '../streams/digest-verifier.js';

export interface LayerCheck {
  /** Digest of the bytes as stored; unchecked when absent. */
  digest?: string;
  /** Bytes as stored; unchecked when absent (and no digest). */
  size?: number;
  compression: Compression;
  /** sha256 of the uncompressed tar; unchecked when absent (schema 1). */
  diffId?: string;
  /** For error messages, e.g. `layer 2 (sha256:…)`. */
  what: string;
}

/**
 * Pipes `raw` through the checks and the decompressor; the result fails with whatever failed.
 * A layer that fails to decompress is read on to its stored digest first, so that damaged
 * bytes are reported as such (an integrity error), not as a malformed image.
 */
export function verifiedLayerStream(raw: Readable, check: LayerCheck, signal: AbortSignal): Readable {
  const stored =
    check.digest === undefined
      ? []
      : [
          verifyDigestStream({
            digest: check.digest,
            ...(check.size === undefined ? {} : { size: check.size }),
            what: check.what,
          }),
        ];
  return checkedLayer({
    raw,
    stored,
    verifies: stored.length > 0,
    inflate: decompressor(check.compression),
    ...(check.diffId === undefined
      ? {}
      : { diffId: verifyDigestStream({ digest: check.diffId, what: `${check.what} uncompressed, diffID` }) }),
    signal,
  }).tar;
}
