/**
 * Where images are read from. A store answers three questions: what does the reference
 * name (its root), give me this manifest by digest, give me this blob. Everything else
 * (the walk index → platform → manifest → config, the checks, the layer pipeline) is the
 * same for every store and lives once: `queries/resolve.ts` and `stores/layer-sources.ts`.
 * Three stores: a registry (`registry-store.ts`), an OCI image layout (`oci-layout.ts`)
 * and a `docker save` archive (`docker-archive.ts`).
 */
import type { Readable } from 'node:stream';
import type { Descriptor, FetchedManifest, LayerDescriptor } from '../image/types.js';
import type { UpstreamHash } from '../streams/resumable-blob.js';

/** What a store's reference names. */
export type StoreRoot =
  /** One manifest or index (a registry reference, a `docker save` image). */
  | { kind: 'manifest'; manifest: FetchedManifest }
  /**
   * Entries to pick from (the `index.json` entries of an OCI layout that bear the tag):
   * one is taken as it is, several are picked from by platform as an index's are.
   */
  | { kind: 'entries'; entries: Descriptor[]; what: string };

/** A layer's bytes as stored, before any check. */
export interface StoredBlob {
  body: Readable;
  /**
   * Set when `body` hashes every byte it passes itself (a resumable registry blob): the
   * digest check takes that hash instead of computing another.
   */
  hashed?: UpstreamHash;
}

export interface OpenLayerHooks {
  /** The layer's body broke off and goes on from byte `offset`. */
  onResume?: (offset: number) => void;
}

export interface ImageStore {
  /** `registry`, `oci` or `docker-archive`. */
  readonly kind: 'registry' | 'oci' | 'docker-archive';
  /** The source as named (`docker.io/library/alpine:3.20`, `oci:DIR:TAG`, ...), for messages and events. */
  readonly name: string;
  /** Whether fetching a layer ahead of its turn saves time (a network store), or only memory is spent. */
  readonly fetchesAhead: boolean;
  /**
   * The store may hold the blobs of foreign layers itself (an OCI layout that a tool
   * copied them into): such layers are kept when resolving, and only one whose blob is
   * missing needs foreign layers allowed.
   */
  readonly mayHoldForeignLayers?: boolean;
  /** What the reference names. */
  root(signal?: AbortSignal): Promise<StoreRoot>;
  /** A manifest or index by its descriptor, its bytes checked against the digest. */
  manifest(descriptor: Descriptor, signal?: AbortSignal): Promise<FetchedManifest>;
  /** A small blob (a config) whole, refusing more than `maxBytes`, size and digest checked. */
  readBlob(descriptor: { digest: string; size?: number }, maxBytes: number, signal?: AbortSignal): Promise<Buffer>;
  /** A layer's stored bytes, unchecked: `layer-sources.ts` checks them as it does for every store. */
  openLayer(layer: LayerDescriptor, index: number, signal: AbortSignal, hooks?: OpenLayerHooks): Promise<StoredBlob>;
  /** The size of a blob the manifest gives none for (schema 1); only a registry serves schema 1. */
  blobSize?(digest: string, signal?: AbortSignal): Promise<number>;
  /**
   * What the reference points at now, as cheaply as the store can say it (a registry: the
   * digest pinned in the reference, else a HEAD); undefined when only resolving can tell.
   */
  currentDigest?(signal?: AbortSignal): Promise<{ digest: string; by: 'reference' | 'head' } | undefined>;
  /** Lets go of connections and files once what is in flight is done. */
  close(): Promise<void>;
  /** Lets go of everything now, failing what is in flight. */
  destroy(): Promise<void>;
}
