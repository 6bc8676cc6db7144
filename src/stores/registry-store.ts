/**
 * A registry as an {@link ImageStore}: the reference's repository, over one
 * {@link RegistryClient} (HTTP, auth, retries). Layers are resumed underneath when their
 * body breaks, and come from their `urls` (without credentials) when they are foreign.
 */
import { openBlobPart, readBlob } from '../registry/blob.js';
import type { RegistryClient } from '../registry/client.js';
import { openForeignBlob } from '../registry/foreign.js';
import { toTransportError } from '../registry/http.js';
import { blobSize, fetchManifest, headManifest } from '../registry/manifest.js';
import { ManifestError } from '../errors.js';
import { withDigest, type ImageReference } from '../reference/index.js';
import { openResumableBlob } from '../streams/resumable-blob.js';
import type { Descriptor, LayerDescriptor } from '../image/types.js';
import type { ImageStore, OpenLayerHooks, StoreRoot, StoredBlob } from './store.js';

/**
 * The store of `ref` on the registry `client` speaks to; closing the store closes the client.
 *
 * @example
 * ```ts
 * const ref = parseReference('alpine:3.20');
 * const store = registryStore(RegistryClient.for(ref, { retry: { retries: 5 } }), ref);
 * const image = await resolveImage(store);
 * ```
 */
export function registryStore(client: RegistryClient, ref: ImageReference): ImageStore {
  const signalOf = (signal: AbortSignal | undefined): { signal?: AbortSignal } => (signal === undefined ? {} : { signal });
  return {
    kind: 'registry',
    name: ref.toString(),
    fetchesAhead: true,
    async root(signal): Promise<StoreRoot> {
      return { kind: 'manifest', manifest: await fetchManifest(client, ref, signalOf(signal)) };
    },
    manifest(descriptor: Descriptor, signal) {
      return fetchManifest(client, withDigest(ref, descriptor.digest), signalOf(signal));
    },
    readBlob(descriptor, maxBytes, signal) {
      return readBlob(
        client,
        ref,
        descriptor,
        maxBytes,
        () => new ManifestError(`blob ${descriptor.digest}: larger than ${maxBytes} bytes`),
        signalOf(signal),
      );
    },
    async openLayer(layer: LayerDescriptor, index: number, signal: AbortSignal, hooks: OpenLayerHooks = {}): Promise<StoredBlob> {
      const descriptor = { digest: layer.digest, size: layer.size };
      // Foreign layers come only from the URLs they list, never with registry credentials.
      if (layer.urls !== undefined) return { body: await openForeignBlob(layer.urls, descriptor, { signal }) };
      const what = `layer ${index} (${layer.digest})`;
      const retry = client.retrySession(what, signal);
      const body = await openResumableBlob({
        open: (offset, partSignal) => openBlobPart(client, ref, descriptor, { offset, signal: partSignal, retry: false }),
        retry: {
          // Body failures arrive as undici's errors: name the layer and make them retryable.
          pause: (error) => retry.pause(toTransportError(error, what)),
          progress: () => retry.progress(),
        },
        signal,
        what,
        ...(hooks.onResume === undefined ? {} : { onResume: hooks.onResume }),
      });
      return { body, hashed: body };
    },
    blobSize(digest, signal) {
      return blobSize(client, ref, digest, signalOf(signal));
    },
    async currentDigest(signal) {
      if (ref.digest !== undefined) return { digest: ref.digest, by: 'reference' };
      const head = await headManifest(client, ref, signalOf(signal));
      return head.digest === undefined ? undefined : { digest: head.digest, by: 'head' };
    },
    close: () => client.close(),
    destroy: () => client.destroy(),
  };
}
