import { pipeline, type Readable } from 'node:stream';
import { addAbortSignal } from 'node:stream';
import type { FlattenLayer } from '../flatten/flatten.js';
import type { ImageReference } from '../reference/index.js';
import { openBlobPart } from '../registry/blob.js';
import { openForeignBlob } from '../registry/foreign.js';
import type { RegistryClient } from '../registry/client.js';
import { toTransportError } from '../registry/http.js';
import type { LayerDescriptor } from '../registry/manifest.js';
import { createByteMeter } from '../streams/byte-meter.js';
import { decompressor } from '../streams/decompress.js';
import { verifyDigestStream } from '../streams/digest-verifier.js';
import { openResumableBlob } from '../streams/resumable-blob.js';

export interface LayerSourceOptions {
  /** Compressed bytes received for layer `index` in the current pass, throttled. */
  onProgress?: (index: number, bytes: number, total: number) => void;
  /** Every compressed byte received, across passes. */
  onBytes?: (index: number, bytes: number) => void;
  /** The blob of layer `index` broke off and goes on from byte `offset`. */
  onResume?: (index: number, offset: number) => void;
}

/**
 * One cold source per layer: each `open()` is a new request whose bytes are checked against
 * the layer digest and size, inflated, and checked against the diffID. A pass counts only
 * once its stream reached EOF, which is when both checks ran (DESIGN.md §3).
 */
export function layerSources(
  client: RegistryClient,
  ref: ImageReference,
  layers: readonly LayerDescriptor[],
  options: LayerSourceOptions = {},
): FlattenLayer[] {
  return layers.map((layer, index) => ({
    index,
    name: layer.digest,
    open: (signal: AbortSignal) => openLayerTar(client, ref, layer, index, signal, options),
  }));
}

/**
 * The uncompressed, verified tar of one layer, as a stream. A broken blob body is resumed
 * underneath the digest check (under the client's retry policy), so the checks still cover
 * every byte and nothing downstream sees the break.
 */
export async function openLayerTar(
  client: RegistryClient,
  ref: ImageReference,
  layer: LayerDescriptor,
  index: number,
  signal: AbortSignal,
  options: LayerSourceOptions = {},
): Promise<Readable> {
  const what = `layer ${index} (${layer.digest})`;
  const retry = client.retrySession(what, signal);
  const descriptor = { digest: layer.digest, size: layer.size };
  // Foreign layers come only from the URLs they list, never with registry credentials.
  const body = layer.urls !== undefined
    ? await openForeignBlob(layer.urls, descriptor, { signal })
    : await openResumableBlob({
    open: (offset, partSignal) => openBlobPart(client, ref, descriptor, { offset, signal: partSignal, retry: false }),
    retry: {
      // Body failures arrive as undici's errors: name the layer and make them retryable.
      pause: (error) => retry.pause(toTransportError(error, what)),
      progress: () => retry.progress(),
    },
    signal,
    what,
    onResume: (offset) => options.onResume?.(index, offset),
  });
  let last = 0;
  const meter = createByteMeter({
    onProgress: (bytes) => {
      options.onBytes?.(index, bytes - last);
      last = bytes;
      options.onProgress?.(index, bytes, layer.size);
    },
  });
  const compressed = verifyDigestStream({
    digest: layer.digest,
    size: layer.size,
    what,
  });
  const inflate = decompressor(layer.compression);
  // Schema 1 images have no diffIDs: their layers are checked by compressed digest only.
  const uncompressed =
    layer.diffId === undefined
      ? undefined
      : verifyDigestStream({ digest: layer.diffId, what: `layer ${index} (${layer.digest}) uncompressed, diffID` });
  const tail = uncompressed ?? inflate;
  // The last stream is what the flattener reads: any failure upstream must reach it.
  const onDone = (error: Error | null): void => {
    if (error) tail.destroy(error);
  };
  if (uncompressed === undefined) pipeline(addAbortSignal(signal, body), meter, compressed, inflate, onDone);
  else pipeline(addAbortSignal(signal, body), meter, compressed, inflate, uncompressed, onDone);
  return tail;
}
