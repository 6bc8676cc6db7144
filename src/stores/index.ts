/**
 * Where images come from, named as skopeo names them: a registry reference (or
 * `docker://REF`), `oci:DIR[:TAG]` (an OCI image layout) and `docker-archive:FILE[:REPO:TAG]`
 * (a `docker save` archive). Each is an {@link ImageStore}; the resolver and the layer
 * pipeline are the same for all three.
 */
import { UsageError } from '../errors.js';
import { parseReference } from '../reference/index.js';
import { RegistryClient, type RegistryClientOptions } from '../registry/client.js';
import { dockerArchiveStore } from './docker-archive.js';
import { ociLayoutStore } from './oci-layout.js';
import { registryStore } from './registry-store.js';
import type { ImageStore } from './store.js';
import type { SourceReference } from './types.js';

export { dockerArchiveStore } from './docker-archive.js';
export { blobPath, ociLayoutStore, REF_NAME_ANNOTATION } from './oci-layout.js';
export { registryStore } from './registry-store.js';
export { indexTarFile, type TarIndexEntry, type TarIndexType } from './tar-index.js';
export type { ImageStore, OpenLayerHooks, StoreRoot, StoredBlob } from './store.js';
export type { SourceReference } from './types.js';

/**
 * Which source `input` names. The path ends at the first `:` after the prefix, as in
 * skopeo, except that a Windows drive (`C:\…`, `C:/…`) stays part of it; the rest is the tag
 * (`oci:`) or `REPO:TAG` / `@N` (`docker-archive:`).
 *
 * @example
 * ```ts
 * parseSourceReference('oci:./out:latest'); // { kind: 'oci', path: './out', tag: 'latest' }
 * parseSourceReference('alpine:3.20');      // { kind: 'registry', reference: 'alpine:3.20' }
 * ```
 */
export function parseSourceReference(input: string): SourceReference {
  if (input.startsWith('oci:')) {
    const { path, rest } = splitPath(input.slice('oci:'.length), input);
    return { kind: 'oci', path, ...(rest === undefined ? {} : { tag: rest }) };
  }
  if (input.startsWith('docker-archive:')) {
    const { path, rest } = splitPath(input.slice('docker-archive:'.length), input);
    return { kind: 'docker-archive', path, ...(rest === undefined ? {} : { reference: rest }) };
  }
  if (input.startsWith('docker://')) return { kind: 'registry', reference: input.slice('docker://'.length) };
  return { kind: 'registry', reference: input };
}

function splitPath(text: string, input: string): { path: string; rest?: string } {
  const drive = /^[A-Za-z]:[\\/]/.test(text) ? 2 : 0;
  const colon = text.indexOf(':', drive);
  const path = colon === -1 ? text : text.slice(0, colon);
  const rest = colon === -1 ? undefined : text.slice(colon + 1);
  if (path === '') throw new UsageError(`"${input}": no path after the prefix`);
  if (rest === '') throw new UsageError(`"${input}": empty name after the path`);
  return rest === undefined ? { path } : { path, rest };
}

export interface OpenStoreOptions {
  /** How to reach a registry, hooks included (local sources ignore it). */
  registry?: RegistryClientOptions;
  /** OCI layout: fetch foreign layers the layout does not hold from their `urls`. */
  allowForeign?: boolean;
}

/**
 * The store of a source (a string as {@link parseSourceReference} reads it, or a parsed
 * one). Nothing is read until it is asked; close it when done (a registry store holds
 * connections).
 *
 * @example
 * ```ts
 * const store = openStore('oci:./alpine-oci:latest');
 * try {
 *   const image = await resolveImage(store, { platform: 'linux/arm64' });
 * } finally {
 *   await store.close();
 * }
 * ```
 */
export function openStore(source: string | SourceReference, options: OpenStoreOptions = {}): ImageStore {
  const parsed = typeof source === 'string' ? parseSourceReference(source) : source;
  switch (parsed.kind) {
    case 'oci':
      return ociLayoutStore(parsed.path, parsed.tag, options.allowForeign === undefined ? {} : { allowForeign: options.allowForeign });
    case 'docker-archive':
      return dockerArchiveStore(parsed.path, parsed.reference);
    case 'registry': {
      const ref = parseReference(parsed.reference);
      return registryStore(RegistryClient.for(ref, options.registry), ref);
    }
  }
}
