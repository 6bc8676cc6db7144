/**
 * Images from elsewhere than a registry, flattened and written by the same path:
 * `oci:DIR[:TAG]` (an OCI image layout) and `docker-archive:FILE[:REPO:TAG]` (a
 * `docker save` archive), named as skopeo names them. Anything else (or `docker://REF`) is a
 * registry reference.
 */
import { UsageError } from '../errors.js';
import { openDockerArchive } from './docker-archive.js';
import { openOciLayout } from './oci-layout.js';
import type { OpenSourceOptions, OpenedSource, SourceReference } from './types.js';

export { openDockerArchive } from './docker-archive.js';
export { blobPath, openOciLayout, REF_NAME_ANNOTATION } from './oci-layout.js';
export { verifiedLayerStream, type LayerCheck } from './layer-stream.js';
export { indexTarFile, type TarIndexEntry, type TarIndexType } from './tar-index.js';
export type { OpenSourceOptions, OpenedSource, SourceImage, SourceLayer, SourceReference } from './types.js';

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

/** Opens an `oci:` or `docker-archive:` source; a registry reference is the pull path's. */
export async function openSource(source: SourceReference, options: OpenSourceOptions = {}): Promise<OpenedSource> {
  switch (source.kind) {
    case 'oci':
      return openOciLayout(source.path, source.tag, options);
    case 'docker-archive':
      return openDockerArchive(source.path, source.reference, options);
    case 'registry':
      throw new UsageError(`${source.reference} is a registry reference, not a local source`);
  }
}
