/**
 * The one verified-layer pipeline, for every store: a layer's stored bytes → byte meter →
 * stored digest and size check → decompress → diffID check → the flattener. Every check
 * runs at EOF, so a pass counts only once its stream has ended (DESIGN.md §3).
 */
import { Readable } from 'node:stream';
import type { FlattenLayer } from '../flatten/flatten.js';
import type { LayerDescriptor } from '../image/types.js';
import type { ImageStore, StoredBlob } from './store.js';
import { createByteMeter } from '../streams/byte-meter.js';
import { checkedLayer, type CheckedLayer } from '../streams/checked-layer.js';
import { decompressor } from '../streams/decompress.js';
import { verifyDigestStream } from '../streams/digest-verifier.js';

export interface LayerSourceOptions {
  /** Stored bytes received for layer `index` in the current pass, throttled. */
  onProgress?: (index: number, bytes: number, total: number) => void;
  /** Every stored byte received, across passes. */
  onBytes?: (index: number, bytes: number) => void;
  /** The blob of layer `index` broke off and goes on from byte `offset`. */
  onResume?: (index: number, offset: number) => void;
  /**
   * Stored bytes of the next layer fetched ahead while the current one streams
   * (DESIGN.md §8), so the flattener never waits for a new layer's first bytes; only for
   * stores that fetch over a network. Default 8 MiB; 0 turns it off.
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
 * One cold source per layer: each `open()` opens the stored bytes anew, checked against
 * the layer digest and size, inflated, and checked against the diffID.
 *
 * @example
 * ```ts
 * const image = await resolveImage(store);
 * await pipeline(Readable.from(flattenLayers(layerSources(store, image.layers))), createWriteStream('rootfs.tar'));
 * ```
 */
export function layerSources(
  store: ImageStore,
  layers: readonly LayerDescriptor[],
  options: LayerSourceOptions = {},
): FlattenLayer[] {
  const budget = store.fetchesAhead ? (options.prefetchBytes ?? DEFAULT_PREFETCH_BYTES) : 0;
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
        if (taken === undefined) current = await openCheckedLayer(store, layer, index, signal, options);
        else {
          const body = await taken;
          current = checkedLayerTar({ ...body.stored, body }, layer, index, signal, options);
        }
        return current.tar;
      },
      explainFailure: (error) => current?.explain(error) ?? Promise.resolve(error),
    };
    // Foreign layers are not fetched ahead: they have no resumable blob.
    if (budget > 0 && layer.urls === undefined) {
      source.prefetch = (signal: AbortSignal) => {
        if (ahead !== undefined) return;
        const mine = openStored(store, layer, index, signal, options).then((stored) => new FetchAhead(stored, budget));
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
    readonly stored: StoredBlob,
    limit: number,
  ) {
    super({ highWaterMark: STREAMING_AHEAD });
    this.#limit = limit;
    const source = stored.body;
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
    this.stored.body.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.stored.body.destroy();
    callback(error);
  }
}

/**
 * The uncompressed, verified tar of one layer, as a stream. A broken registry blob body is
 * resumed underneath the digest check (under the client's retry policy), so the checks
 * still cover every byte and nothing downstream sees the break.
 */
export async function openLayerTar(
  store: ImageStore,
  layer: LayerDescriptor,
  index: number,
  signal: AbortSignal,
  options: LayerSourceOptions = {},
): Promise<Readable> {
  return (await openCheckedLayer(store, layer, index, signal, options)).tar;
}

/** {@link openLayerTar}, with the means to explain a failure to read it. */
async function openCheckedLayer(
  store: ImageStore,
  layer: LayerDescriptor,
  index: number,
  signal: AbortSignal,
  options: LayerSourceOptions,
): Promise<CheckedLayer> {
  return checkedLayerTar(await openStored(store, layer, index, signal, options), layer, index, signal, options);
}

function openStored(
  store: ImageStore,
  layer: LayerDescriptor,
  index: number,
  signal: AbortSignal,
  options: LayerSourceOptions,
): Promise<StoredBlob> {
  return store.openLayer(layer, index, signal, { onResume: (offset) => options.onResume?.(index, offset) });
}

/**
 * The checks and the inflater behind a stored body. `stored.hashed` is set when the body
 * already hashes every byte (a resumable blob): the digest check takes its hash.
 */
function checkedLayerTar(
  stored: StoredBlob,
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
    ...(stored.hashed === undefined ? {} : { upstream: stored.hashed }),
  });
  return checkedLayer({
    raw: stored.body,
    stored: [meter, compressed],
    verifies: true,
    inflate: decompressor(layer.compression),
    // Schema 1 images have no diffIDs: their layers are checked by stored digest only.
    ...(layer.diffId === undefined
      ? {}
      : { diffId: verifyDigestStream({ digest: layer.diffId, what: `${what} uncompressed, diffID` }) }),
    signal,
    ...(options.checkTimeoutMs === undefined ? {} : { checkTimeoutMs: options.checkTimeoutMs }),
  });
}
