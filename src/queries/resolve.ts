/**
 * The one walk from what a source names to one image: index → platform → image manifest
 * → config, over any {@link ImageStore}, with every descriptor checked before anyone
 * downloads a layer. `pull`, `inspect`, `config`, `exists` and `--if-changed` all start
 * here, for registries, OCI layouts and `docker save` archives alike.
 */
import { ManifestError, SizeMismatchError, throwIfAborted } from '../errors.js';
import { digestOf } from '../image/digest.js';
import {
  MAX_CONFIG_BYTES,
  MAX_INDEX_DEPTH,
  checkImageManifest,
  indexEntries,
  parseConfig,
  singleImagePlatform,
  withDiffIds,
} from '../image/manifest.js';
import { MediaType, isImageManifestMediaType, isIndexMediaType, isSchema1MediaType } from '../image/media-types.js';
import { defaultPlatform, platformFromJson, platformOption, selectPlatform, type Platform } from '../image/platform.js';
import { parseSchema1, synthesiseSchema1Config } from '../image/schema1.js';
import type { Descriptor, FetchedManifest, ImageConfigJson, LayerDescriptor } from '../image/types.js';
import type { ImageStore, StoreRoot } from '../stores/store.js';

/** The image config of a resolved image: descriptor, exact bytes, and the parsed JSON. */
export interface ResolvedConfig {
  digest: string;
  mediaType: string;
  size: number;
  /** The blob as stored (its digest is `digest`); for schema 1, our synthesised JSON. */
  bytes: Buffer;
  json: ImageConfigJson;
  /** Schema 1: synthesised from the top `v1Compatibility`; no blob has these bytes. */
  synthesised?: boolean;
}

/** One image, resolved: what a pull needs before the first layer, and what `--config-out` writes. */
export interface ResolvedImage {
  /** The source as named: a normalised reference, `oci:DIR:TAG`, `docker-archive:FILE`. */
  source: string;
  /** The outermost index, when the source named one (its entries are in `json.manifests`). */
  index?: FetchedManifest;
  /** Digest of the index the platform was picked from, if any. */
  indexDigest?: string;
  /** The image manifest (for a `docker save` archive, one synthesised from its `manifest.json`). */
  manifest: FetchedManifest;
  manifestDigest: string;
  manifestMediaType: string;
  platform: Platform;
  /** The image config, bytes included, so nobody fetches it twice. */
  config: ResolvedConfig;
  /** Base layer first. */
  layers: LayerDescriptor[];
}

export interface ResolveOptions {
  signal?: AbortSignal;
  /**
   * `os/arch[/variant]` or a {@link Platform}. When given, a single-platform image must
   * match it too; by default the host platform is picked from indexes and a
   * single-platform image is taken as it is.
   */
  platform?: string | Platform;
  /**
   * Keep foreign / non-distributable layers that name `urls` (their descriptors keep the
   * URLs). By default such a layer is a ManifestError.
   */
  allowForeign?: boolean;
}

/** Where {@link walkToManifest} ended: one image manifest, and how it was reached. */
export interface ManifestWalk {
  index?: FetchedManifest;
  indexDigest?: string;
  manifest: FetchedManifest;
  /** The platform of the index entry that was picked, when one was. */
  picked?: Platform;
  /** The platform asked for, if one was. */
  explicit?: Platform;
}

/**
 * Follows indexes from the store's root to one manifest (not necessarily an image
 * manifest: the caller judges that): the wanted platform (`options.platform`, else linux
 * and the host architecture) is picked at each level, and each manifest fetched must be
 * the size its descriptor says. `known`: the root, when the caller already asked for it.
 */
export async function walkToManifest(store: ImageStore, options: ResolveOptions = {}, known?: StoreRoot): Promise<ManifestWalk> {
  const { signal } = options;
  const explicit = platformOption(options.platform);
  const wanted = explicit ?? defaultPlatform();
  const root = known ?? (await store.root(signal));
  let manifest: FetchedManifest;
  let picked: Platform | undefined;
  if (root.kind === 'manifest') {
    manifest = root.manifest;
  } else {
    if (root.entries.length === 0) throw new ManifestError(`${root.what} lists no image`);
    let entry: Descriptor;
    if (root.entries.length === 1) {
      entry = root.entries[0]!;
      // A single entry with a platform says which; the config says it otherwise.
      if (explicit === undefined) picked = platformFromJson(entry.platform);
    } else {
      ({ entry, platform: picked } = selectPlatform(root.entries, wanted));
    }
    manifest = await child(store, entry, signal);
  }
  const walk: ManifestWalk = { manifest, ...(explicit === undefined ? {} : { explicit }) };
  for (let depth = 0; isIndexMediaType(manifest.mediaType); depth++) {
    if (depth >= MAX_INDEX_DEPTH) throw new ManifestError(`${store.name}: indexes nested too deep`);
    if (walk.index === undefined) {
      walk.index = manifest;
      walk.indexDigest = manifest.digest;
    }
    const entries = indexEntries(manifest.json, `index ${manifest.digest} of ${store.name}`);
    const selected = selectPlatform(entries, wanted);
    picked = selected.platform;
    throwIfAborted(signal);
    manifest = await child(store, selected.entry, signal);
  }
  walk.manifest = manifest;
  if (picked !== undefined) walk.picked = picked;
  return walk;
}

/** A manifest an index entry names, which must be the size the entry says. */
async function child(store: ImageStore, entry: Descriptor, signal: AbortSignal | undefined): Promise<FetchedManifest> {
  const manifest = await store.manifest(entry, signal);
  const served = manifest.signedBytes ?? manifest.bytes;
  if (served.length !== entry.size) throw new SizeMismatchError(`manifest ${entry.digest}`, entry.size, served.length);
  return manifest;
}

/**
 * Resolves the store's reference to one image, as a pull takes it: the walk, then the
 * image manifest's layers judged (foreign only when allowed, known media types), the
 * config read and verified, its diffIDs paired with the layers. Docker schema 1 manifests
 * resolve to the same shape: layers by stored digest only (no diffIDs), sizes from the
 * store, a synthesised config.
 *
 * @throws {NotFoundError} no such image, tag or blob.
 * @throws {PlatformNotFoundError} no manifest for the platform (the message lists those there are).
 * @throws {ManifestError} a manifest or config of the wrong shape, a foreign layer not allowed.
 * @throws {DigestMismatchError} a manifest or the config does not hash to its digest.
 *
 * @example
 * ```ts
 * const store = openStore('oci:./alpine-oci:latest');
 * const image = await resolveImage(store, { platform: 'linux/arm64' });
 * console.log(image.manifestDigest, JSON.parse(image.config.bytes.toString()).config.Cmd);
 * ```
 */
export async function resolveImage(store: ImageStore, options: ResolveOptions = {}): Promise<ResolvedImage> {
  return resolveWalked(store, await walkToManifest(store, options), options);
}

/** {@link resolveImage} from where a {@link walkToManifest} ended. */
export async function resolveWalked(store: ImageStore, walk: ManifestWalk, options: ResolveOptions = {}): Promise<ResolvedImage> {
  const { manifest } = walk;
  if (isSchema1MediaType(manifest.mediaType)) return resolveSchema1(store, walk, options.signal);
  if (!isImageManifestMediaType(manifest.mediaType)) {
    throw new ManifestError(`${store.name}: ${manifest.digest} is not an image manifest (${manifest.mediaType})`);
  }
  const what = `manifest ${manifest.digest}`;
  const checked = checkImageManifest(manifest.json, what, store.name, {
    allowForeign: options.allowForeign === true || store.mayHoldForeignLayers === true,
  });
  throwIfAborted(options.signal);
  const bytes = await store.readBlob(checked.config, MAX_CONFIG_BYTES, options.signal);
  const json = parseConfig(bytes, checked.config.digest);
  const platform = walk.picked ?? singleImagePlatform(json, `config ${checked.config.digest}`, walk.explicit);
  return {
    ...imageHead(store, walk),
    platform,
    config: { digest: checked.config.digest, mediaType: checked.config.mediaType, size: checked.config.size, bytes, json },
    layers: withDiffIds(checked.layers, json, what),
  };
}

function imageHead(store: ImageStore, walk: ManifestWalk): Pick<ResolvedImage, 'source' | 'index' | 'indexDigest' | 'manifest' | 'manifestDigest' | 'manifestMediaType'> {
  return {
    source: store.name,
    ...(walk.index === undefined ? {} : { index: walk.index }),
    ...(walk.indexDigest === undefined ? {} : { indexDigest: walk.indexDigest }),
    manifest: walk.manifest,
    manifestDigest: walk.manifest.digest,
    manifestMediaType: walk.manifest.mediaType,
  };
}

/**
 * A schema 1 image: layers base first without throwaways, sizes from the store (schema 1
 * has none; the digest check then covers size too), config synthesised from `v1Compatibility`.
 */
async function resolveSchema1(store: ImageStore, walk: ManifestWalk, signal: AbortSignal | undefined): Promise<ResolvedImage> {
  const { manifest } = walk;
  const what = `schema 1 manifest ${manifest.digest}`;
  const image = parseSchema1(manifest.json, what);
  if (image.layers.length === 0) throw new ManifestError(`${what}: every layer is a throwaway layer`);
  const json = synthesiseSchema1Config(image);
  const platform = walk.picked ?? singleImagePlatform(json, what, walk.explicit);
  throwIfAborted(signal);
  const sizeOf = store.blobSize?.bind(store);
  if (sizeOf === undefined) throw new ManifestError(`${store.name}: ${what}: schema 1 images are read from registries only`);
  const sizes = await Promise.all(image.layers.map((layer) => sizeOf(layer.digest, signal)));
  const bytes = Buffer.from(JSON.stringify(json));
  return {
    ...imageHead(store, walk),
    platform,
    config: { digest: digestOf(bytes), mediaType: MediaType.ociConfig, size: bytes.length, bytes, json, synthesised: true },
    layers: image.layers.map(
      (layer, index): LayerDescriptor => ({
        digest: layer.digest,
        size: sizes[index] ?? 0,
        mediaType: MediaType.dockerLayerGzip,
        compression: 'gzip',
      }),
    ),
  };
}
