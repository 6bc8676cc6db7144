/**
 * A local (or registry) source opened the way a pull opens it: its store, the one
 * resolver, the one verified-layer pipeline. For tests that flatten what a source holds.
 */
import type { FlattenLayer } from '../../src/flatten/flatten.js';
import { layerSources } from '../../src/stores/layer-sources.js';
import { resolveImage, type ResolvedImage, type ResolveOptions } from '../../src/queries/resolve.js';
import { openStore, type SourceReference } from '../../src/stores/index.js';

export interface OpenedSource {
  image: ResolvedImage;
  layers: FlattenLayer[];
}

export async function openSource(source: string | SourceReference, options: ResolveOptions = {}): Promise<OpenedSource> {
  const store = openStore(source, options.allowForeign === undefined ? {} : { allowForeign: options.allowForeign });
  const image = await resolveImage(store, options);
  return { image, layers: layerSources(store, image.layers) };
}

export function openOciLayout(path: string, tag?: string, options: ResolveOptions = {}): Promise<OpenedSource> {
  return openSource({ kind: 'oci', path, ...(tag === undefined ? {} : { tag }) }, options);
}

export function openDockerArchive(path: string, reference?: string, options: ResolveOptions = {}): Promise<OpenedSource> {
  return openSource({ kind: 'docker-archive', path, ...(reference === undefined ? {} : { reference }) }, options);
}
