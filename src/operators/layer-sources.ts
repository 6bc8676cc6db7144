import { pipeline, type Readable } from 'node:stream';
import { addAbortSignal } from 'node:stream';
import type { FlattenLayer } from '../flatten/flatten.js';
import type { ImageReference } from '../reference/index.js';
import { openBlob } from '../registry/blob.js';
import type { RegistryClient } from '../registry/client.js';
import type { LayerDescriptor } from '../registry/manifest.js';
import { createByteMeter } from '../streams/byte-meter.js';
import { decompressor } from '../streams/decompress.js';
import { verifyDigestStream } from '../streams/digest-verifier.js';

export interface LayerSourceOptions {
  /** Compressed bytes received for layer `index` in the current pass, throttled. */
  onProgress?: (index: number, bytes: number, total: number) => void;
  /** Every compressed byte received, across passes. */
  onBytes?: (index: number, bytes: number) => void;
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

/** The uncompressed, verified tar of one layer, as a stream. */
export async function openLayerTar(
  client: RegistryClient,
  ref: ImageReference,
  layer: LayerDescriptor,
  index: number,
  signal: AbortSignal,
  options: LayerSourceOptions = {},
): Promise<Readable> {
  const body = await openBlob(client, ref, { digest: layer.digest, size: layer.size }, { signal });
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
    what: `layer ${index} (${layer.digest})`,
  });
  const uncompressed = verifyDigestStream({
    digest: layer.diffId,
    what: `layer ${index} (${layer.digest}) uncompressed, diffID`,
  });
  // The last stream is what the flattener reads: any failure upstream must reach it.
  pipeline(addAbortSignal(signal, body), meter, compressed, decompressor(layer.compression), uncompressed, (error) => {
    if (error) uncompressed.destroy(error);
  });
  return uncompressed;
}
