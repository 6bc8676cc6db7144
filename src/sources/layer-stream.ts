/**
 * A stored layer's bytes → its verified, uncompressed tar: the same checks as a registry
 * layer (DESIGN.md §3): stored digest and size when known, decompression, diffID when
 * known. Every check runs at EOF, so a pass counts only once the stream has ended.
 */
import { addAbortSignal, pipeline, type Readable } from 'node:stream';
import type { Compression } from '../registry/media-types.js';
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

/** Pipes `raw` through the checks and the decompressor; the result fails with whatever failed. */
export function verifiedLayerStream(raw: Readable, check: LayerCheck, signal: AbortSignal): Readable {
  const stages: NodeJS.ReadWriteStream[] = [];
  if (check.digest !== undefined) {
    stages.push(
      verifyDigestStream({
        digest: check.digest,
        ...(check.size === undefined ? {} : { size: check.size }),
        what: check.what,
      }),
    );
  }
  stages.push(decompressor(check.compression));
  if (check.diffId !== undefined) {
    stages.push(verifyDigestStream({ digest: check.diffId, what: `${check.what} uncompressed, diffID` }));
  }
  const last = stages[stages.length - 1] as unknown as Readable;
  // The last stream is what the flattener reads: any failure upstream must reach it.
  pipeline([addAbortSignal(signal, raw), ...stages], (error) => {
    if (error) last.destroy(error);
  });
  return last;
}
