/**
 * Questions about an image that need no layer: whether it exists ({@link imageExists}),
 * what it holds ({@link inspectImage}: index, chosen manifest, layers and config, each
 * with its exact bytes) and the manifest a source names as it is ({@link readManifest}).
 * They go through the same resolver as a pull, for every source. Against a registry they
 * spend as few manifest GETs as they can: Docker Hub counts those against its pull limit,
 * HEADs it does not.
 *
 * Unlike a pull, inspecting does not refuse what a pull would refuse (foreign or unknown
 * layers, a config that is not a container config): showing such an image is how a user
 * finds out why it cannot be pulled.
 */
import { ManifestError, NotFoundError, PlatformNotFoundError } from '../errors.js';
import {
  MAX_CONFIG_BYTES,
  indexEntries,
  manifestConfig,
  manifestLayers,
  parseConfig,
} from '../image/manifest.js';
import { isConfigMediaType, isImageManifestMediaType, isIndexMediaType, isSchema1MediaType } from '../image/media-types.js';
import {
  defaultPlatform,
  formatPlatform,
  isUnknownPlatform,
  parsePlatform,
  platformFromJson,
  platformMatches,
  selectPlatform,
  type Platform,
} from '../image/platform.js';
import type { Descriptor, FetchedManifest, ImageConfigJson } from '../image/types.js';
import { registryClientOptions, type QueryOptions } from './options.js';
import { resolveWalked, walkToManifest } from './resolve.js';
import { openStore, type SourceReference } from '../stores/index.js';
import type { ImageStore } from '../stores/store.js';

/** What {@link imageExists} found. */
export interface ImageExistence {
  /** What the reference points at (index or manifest digest). */
  digest: string;
  /** With `platform`: the platform the image offers for it. */
  platform?: Platform;
  /** With `platform` and an index: the digest of that platform's manifest. */
  manifestDigest?: string;
}

/**
 * Whether `source` exists, without downloading a layer. For a registry: a HEAD of the
 * manifest (no Docker Hub pull spent); with `options.platform` the image must also offer
 * that platform, which needs the manifest body (a GET) and, for a single-platform image,
 * its config. Resolves to `undefined` when the image, tag or platform does not exist; any
 * other failure (auth, network, rate limit, a broken layout) rejects, because "cannot
 * tell" is not "absent".
 *
 * @example
 * ```ts
 * if ((await imageExists('alpine:3.20', { platform: 'linux/arm64' })) === undefined) process.exit(3);
 * ```
 */
export async function imageExists(
  source: string | SourceReference,
  options: QueryOptions = {},
): Promise<ImageExistence | undefined> {
  return withStore(source, options, async (store) => {
    const signal = options.signal;
    try {
      if (options.platform === undefined) {
        const now = await store.currentDigest?.(signal);
        if (now !== undefined) return { digest: now.digest };
      }
      const root = await store.root(signal);
      if (options.platform === undefined) {
        // What the source names is there; for a layout, the entry it picks.
        if (root.kind === 'manifest') return { digest: root.manifest.digest };
        const walk = await walkToManifest(store, options, root);
        return { digest: walk.indexDigest ?? walk.manifest.digest };
      }
      if (root.kind === 'manifest' && isIndexMediaType(root.manifest.mediaType)) {
        // The index says which platforms there are: no need to fetch the manifest picked.
        const top = root.manifest;
        const { entry, platform } = selectPlatform(indexEntries(top.json, `index ${top.digest} of ${store.name}`), parsePlatform(options.platform));
        return { digest: top.digest, platform, manifestDigest: entry.digest };
      }
      const result = await inspectStore(store, options, root);
      const digest = result.index?.digest ?? result.manifest.digest;
      if (result.platform === undefined) throw new PlatformNotFoundError(options.platform, []);
      return { digest, platform: result.platform, ...(result.index === undefined ? {} : { manifestDigest: result.manifest.digest }) };
    } catch (error) {
      if (error instanceof NotFoundError || error instanceof PlatformNotFoundError) return undefined;
      throw error;
    }
  });
}

/** One entry of an index, as {@link inspectImage} shows it. */
export interface InspectedIndexEntry {
  digest: string;
  mediaType: string;
  size: number;
  /** Absent when the entry names no platform. */
  platform?: Platform;
  /** Attestations and other `unknown/unknown` entries: not images, never picked. */
  notAnImage: boolean;
  annotations?: Record<string, string>;
}

/** A manifest or index with the exact bytes its digest covers. */
export interface InspectedManifest {
  digest: string;
  mediaType: string;
  size: number;
  bytes: Buffer;
}

/** The outermost index a reference named, with its entries. */
export interface InspectedIndex extends InspectedManifest {
  manifests: InspectedIndexEntry[];
}

/** One layer descriptor, as the manifest lists it (base first). */
export interface InspectedLayer {
  digest: string;
  mediaType: string;
  size: number;
  /** Foreign layers name where they are served from; a pull refuses them unless allowed. */
  urls?: string[];
}

/** The config blob: its descriptor, its exact bytes, and the parsed JSON of a container config. */
export interface InspectedConfig {
  digest: string;
  mediaType: string;
  size: number;
  bytes: Buffer;
  /** Absent when the media type is not a container image config (an artifact, say). */
  json?: ImageConfigJson;
}

/** Everything {@link inspectImage} learnt about a source. */
export interface InspectResult {
  /** The source, fully qualified (a registry reference) or as named (`oci:`, `docker-archive:`). */
  reference: string;
  /** The index the reference named, if it named one. */
  index?: InspectedIndex;
  /** The image manifest: the one for the platform picked from the index, or the one named. */
  manifest: InspectedManifest;
  /** The platform of that manifest, from the index entry or else the config. */
  platform?: Platform;
  config: InspectedConfig;
  layers: InspectedLayer[];
}

/**
 * What `source` holds: the index (if any) and the manifest of the wanted platform
 * (`options.platform`, else linux and the host architecture), its layer list and its
 * config. For a registry: one GET per manifest level plus the config blob; no layer is
 * downloaded. `source` is a registry reference, `oci:DIR[:TAG]` or `docker-archive:FILE[:REF]`.
 *
 * @throws {NotFoundError} no such image or tag.
 * @throws {PlatformNotFoundError} the index, or a single-platform image given an explicit
 *   `platform`, has no manifest for it (the message lists what there is).
 * @throws {ManifestError} a manifest or config of the wrong shape (the field is named).
 *
 * @example
 * ```ts
 * const image = await inspectImage('debian:bookworm', { platform: 'linux/arm64' });
 * console.log(image.layers.length, image.config.json?.config?.Cmd);
 * ```
 */
export async function inspectImage(source: string | SourceReference, options: QueryOptions = {}): Promise<InspectResult> {
  return withStore(source, options, (store) => inspectStore(store, options));
}

/** {@link inspectImage} over a store of the caller's (who closes it). */
export async function inspectStore(
  store: ImageStore,
  options: Pick<QueryOptions, 'platform' | 'signal'> = {},
  root?: Awaited<ReturnType<ImageStore['root']>>,
): Promise<InspectResult> {
  const walk = await walkToManifest(store, options, root);
  const { manifest } = walk;
  const index =
    walk.index === undefined
      ? undefined
      : {
          ...inspectedManifest(walk.index),
          manifests: indexEntries(walk.index.json, `index ${walk.index.digest} of ${store.name}`).map(inspectedEntry),
        };
  const head = { reference: store.name, ...(index === undefined ? {} : { index }), manifest: inspectedManifest(manifest) };

  if (isSchema1MediaType(manifest.mediaType)) {
    // Schema 1 has no config blob: show the one a pull synthesises, and its layers.
    const image = await resolveWalked(store, walk, options);
    const { config } = image;
    return {
      ...head,
      platform: image.platform,
      config: { digest: config.digest, mediaType: config.mediaType, size: config.size, bytes: config.bytes, json: config.json },
      layers: image.layers.map(({ digest, mediaType, size }) => ({ digest, mediaType, size })),
    };
  }
  if (!isImageManifestMediaType(manifest.mediaType)) {
    throw new ManifestError(`${store.name}: ${manifest.digest} is not an image manifest (${manifest.mediaType})`);
  }
  const what = `manifest ${manifest.digest}`;
  const descriptor = manifestConfig(manifest.json, what);
  const layers = manifestLayers(manifest.json, what).map(({ digest, mediaType, size, urls }): InspectedLayer => ({
    digest,
    mediaType,
    size,
    ...(urls === undefined ? {} : { urls }),
  }));
  const bytes = await store.readBlob(descriptor, MAX_CONFIG_BYTES, options.signal);
  const config: InspectedConfig = { digest: descriptor.digest, mediaType: descriptor.mediaType, size: descriptor.size, bytes };
  // Shown, not pulled: the runtime config is checked, rootfs only if there is one.
  if (isConfigMediaType(descriptor.mediaType)) config.json = parseConfig(bytes, descriptor.digest, { requireRootfs: false });
  let platform = walk.picked;
  if (platform === undefined && config.json !== undefined) {
    platform = platformFromJson(config.json);
    // A single-platform image is what the user named; only an explicit platform checks it.
    const { explicit } = walk;
    if (explicit !== undefined && (platform === undefined || !platformMatches(explicit, platform))) {
      throw new PlatformNotFoundError(formatPlatform(explicit), platform === undefined ? [] : [formatPlatform(platform)]);
    }
  }
  return { ...head, ...(platform === undefined ? {} : { platform }), config, layers };
}

/**
 * The manifest or index `source` names, exactly as stored, with no platform picked and no
 * config read. For an OCI layout the tag must name one entry of `index.json`.
 *
 * @example
 * ```ts
 * process.stdout.write((await readManifest('alpine:3.20')).bytes); // the index, for a multi-platform tag
 * ```
 */
export async function readManifest(source: string | SourceReference, options: QueryOptions = {}): Promise<InspectedManifest> {
  return withStore(source, options, async (store) => {
    const root = await store.root(options.signal);
    if (root.kind === 'manifest') return inspectedManifest(root.manifest);
    const only = root.entries.length === 1 ? root.entries[0] : undefined;
    if (only === undefined) {
      throw new ManifestError(`${store.name}: index.json lists ${root.entries.length} images; name one by its tag or pick a platform`);
    }
    return inspectedManifest(await store.manifest(only, options.signal));
  });
}

async function withStore<T>(source: string | SourceReference, options: QueryOptions, work: (store: ImageStore) => Promise<T>): Promise<T> {
  const store = openStore(source, { registry: registryClientOptions(options) });
  try {
    return await work(store);
  } finally {
    await store.close();
  }
}

function inspectedManifest(manifest: FetchedManifest): InspectedManifest {
  return { digest: manifest.digest, mediaType: manifest.mediaType, size: manifest.bytes.length, bytes: manifest.bytes };
}

function inspectedEntry(entry: Descriptor): InspectedIndexEntry {
  const platform = platformFromJson(entry.platform);
  return {
    digest: entry.digest,
    mediaType: entry.mediaType,
    size: entry.size,
    ...(platform === undefined ? {} : { platform }),
    notAnImage: isUnknownPlatform(entry),
    ...(entry.annotations === undefined ? {} : { annotations: entry.annotations }),
  };
}

/** The platform a query asks for: the option, else linux and the host architecture. */
export function wantedPlatform(options: Pick<QueryOptions, 'platform'>): Platform {
  return options.platform === undefined ? defaultPlatform() : parsePlatform(options.platform);
}
