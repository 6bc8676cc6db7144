import { Readable } from 'node:stream';
import type { FlattenLayer } from '../flatten/flatten.js';
import type { ImageReference } from '../reference/index.js';
import { openBlobPart } from '../registry/blob.js';
import { openForeignBlob } from '../registry/foreign.js';
import type { RegistryClient } from '../registry/client.js';
import { toTransportError } from '../registry/http.js';
import type { LayerDescriptor } from '../registry/manifest.js';
import { createByteMeter } from '../streams/byte-meter.js';
import { decompressor } from '../streams/decompress.js';
import { checkedLayer, type CheckedLayer } from '../streams/checked-layer.js';
import { verifyDigestStream } from '../streams/digest-verifier.js';
import { openResumableBlob, type ResumableBlobStream } from '../streams/resumable-blob.js';

export interface LayerSourceOptions {
  /** Compressed bytes received for layer `index` in the current pass, throttled. */
  onProgress?: (index: number, bytes: number, total: number) => void;
  /** Every compressed byte received, across passes. */
  onBytes?: (index: number, bytes: number) => void;
  /** The blob of layer `index` broke off and goes on from byte `offset`. */
  onResume?: (index: number, offset: number) => void;
  /**
   * Compressed bytes of the next layer fetched ahead while the current one streams
   * (DESIGN.md §8), so the flattener never waits for a new layer's first bytes. Default
   * 16 MiB; 0 turns it off.
   */
  prefetchBytes?: number;
  /**
   * How long a layer that failed to inflate or parse is read on to learn whether its bytes
   * match their digest (default 30 000 ms; the pull passes its `timeoutMs`).
   */
  checkTimeoutMs?: number;
}

const DEFAULT_PREFETCH_BYTES = 8 * 1024 * 1024;
/** What a fetched-ahead body buffers once its layer is read: the usual stream buffering. */
const STREAMING_AHEAD = 64 * 1024;

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
  const budget = options.prefetchBytes ?? DEFAULT_PREFETCH_BYTES;
  return layers.map((layer, index): FlattenLayer => {
    /** The body fetched ahead, until the next open() takes it. */
    let ahead: Promise<FetchAhead> | undefined;
    /** The pass open() started last: a failure to read it is explained by its digest. */
    let current: CheckedLayer | undefined;
    const source: FlattenLayer = {
      index,
      name: layer.digest,
      open: async (signal: AbortSignal) => {
        const taken = ahead;
        ahead = undefined;
        current = undefined;
        if (taken === undefined) {
          current = await openCheckedLayer(client, ref, layer, index, signal, options);
        } else {
          const body = await taken;
          current = checkedLayerTar(body, body.source, layer, index, signal, options);
        }
        return current.tar;
      },
      explainFailure: (error) => current?.explain(error) ?? Promise.resolve(error),
    };
    // Foreign layers are not fetched ahead: they have no resumable blob.
    if (budget > 0 && layer.urls === undefined) {
      source.prefetch = (signal: AbortSignal) => {
        if (ahead !== undefined) return;
        const mine = openBlob(client, ref, layer, index, signal, options).then((blob) => new FetchAhead(blob, budget));
        ahead = mine;
        // Reported by the open() that takes it; if none does, the abort of `signal` ends it,
        // and a later open() (a flatten that starts over) must then fetch anew.
        mine.catch(() => undefined);
        signal.addEventListener(
          'abort',
          () => {
            if (ahead === mine) ahead = undefined;
          },
          { once: true },
        );
      };
    }
    return source;
  });
}

/**
 * Reads a blob ahead into memory, up to `limit` bytes, before anyone reads it; once taken
 * (the first read), it buffers only what a stream usually does. Destroying it (or aborting the
 * blob's signal) closes the connection.
 */
class FetchAhead extends Readable {
  #limit: number;

  constructor(
    readonly source: ResumableBlobStream,
    limit: number,
  ) {
    super({ highWaterMark: STREAMING_AHEAD });
    this.#limit = limit;
    // The blob is read now; its errors wait in this stream for whoever pipes it.
    this.on('error', () => undefined);
    source.on('data', (chunk: Buffer) => {
      this.push(chunk);
      if (this.readableLength >= this.#limit) source.pause();
    });
    source.once('end', () => this.push(null));
    source.once('error', (error) => this.destroy(error));
  }

  override _read(): void {
    this.#limit = STREAMING_AHEAD;
    this.source.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.source.destroy();
    callback(error);
  }
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
  return (await openCheckedLayer(client, ref, layer, index, signal, options)).tar;
}

/** {@link openLayerTar}, with the means to explain a failure to read it. */
async function openCheckedLayer(
  client: RegistryClient,
  ref: ImageReference,
  layer: LayerDescriptor,
  index: number,
  signal: AbortSignal,
  options: LayerSourceOptions,
): Promise<CheckedLayer> {
  const descriptor = { digest: layer.digest, size: layer.size };
  // Foreign layers come only from the URLs they list, never with registry credentials.
  if (layer.urls !== undefined) {
    return checkedLayerTar(await openForeignBlob(layer.urls, descriptor, { signal }), undefined, layer, index, signal, options);
  }
  const body = await openBlob(client, ref, layer, index, signal, options);
  return checkedLayerTar(body, body, layer, index, signal, options);
}

/** The layer's blob from the registry, resumed underneath when its body breaks. */
function openBlob(
  client: RegistryClient,
  ref: ImageReference,
  layer: LayerDescriptor,
  index: number,
  signal: AbortSignal,
  options: LayerSourceOptions,
): Promise<ResumableBlobStream> {
  const what = `layer ${index} (${layer.digest})`;
  const retry = client.retrySession(what, signal);
  const descriptor = { digest: layer.digest, size: layer.size };
  return openResumableBlob({
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
}

/**
 * The checks and the inflater behind a blob body. `hashed` is the resumable blob when there
 * is one: it already hashes every compressed byte, so the digest check takes its hash.
 */
function checkedLayerTar(
  body: Readable,
  hashed: ResumableBlobStream | undefined,
  layer: LayerDescriptor,
  index: number,
  signal: AbortSignal,
  options: LayerSourceOptions,
): CheckedLayer {
  const what = `layer ${index} (${layer.digest})`;
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
    ...(hashed === undefined ? {} : { upstream: hashed }),
  });
  return checkedLayer({
    raw: body,
    stored: [meter, compressed],
    verifies: true,
    inflate: decompressor(layer.compression),
    // Schema 1 images have no diffIDs: their layers are checked by compressed digest only.
    ...(layer.diffId === undefined
      ? {}
      : { diffId: verifyDigestStream({ digest: layer.diffId, what: `layer ${index} (${layer.digest}) uncompressed, diffID` }) }),
    signal,
    ...(options.checkTimeoutMs === undefined ? {} : { checkTimeoutMs: options.checkTimeoutMs }),
  });
}
