/**
 * Manifests: fetch one (every Accept type, Content-Type trusted, digest checked when
 * pulling by digest), and resolve a reference to one image: index → platform → image
 * manifest → config, with every descriptor checked before anyone downloads a layer.
 * Docker schema 1 manifests resolve to the same shape (see `schema1.ts`): layers by
 * compressed digest only (no diffIDs), sizes from a HEAD per blob, a synthesised config.
 */
import {
  ManifestError,
  PlatformNotFoundError,
  SizeMismatchError,
  throwIfAborted,
} from '../errors.js';
import {
  isValidDigest,
  manifestReference,
  withDigest,
  type ImageReference,
} from '../reference/index.js';
import { digestOf, readBlob, verifyDigest } from './blob.js';
import type { RegistryClient } from './client.js';
import { MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, discardBody, headerValue, readBodyCapped } from './http.js';
import {
  MANIFEST_ACCEPT,
  MediaType,
  isConfigMediaType,
  isImageManifestMediaType,
  isIndexMediaType,
  isSchema1MediaType,
  layerCompression,
  type Compression,
} from './media-types.js';
import {
  defaultPlatform,
  formatPlatform,
  platformOption,
  platformFromJson,
  platformMatches,
  selectPlatform,
  type Platform,
  type PlatformJson,
} from './platform.js';
import { parseSchema1, schema1Payload, synthesiseSchema1Config } from './schema1.js';

/** A manifest as fetched: its bytes are what the digest covers. */
export interface FetchedManifest {
  mediaType: string;
  /** Digest of `bytes` (algorithm of the requested digest, else sha256). */
  digest: string;
  /**
   * What the digest covers: the body, except for a signed schema 1 manifest, where it is
   * the JWS payload (the body without its signatures) and `json` is parsed from it.
   */
  bytes: Buffer;
  /** The body as served, when it differs from `bytes` (a signed schema 1 manifest). */
  signedBytes?: Buffer;
  json: Record<string, unknown>;
}

/** A content descriptor as it appears in manifests and indexes. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  platform?: PlatformJson;
}

export interface LayerDescriptor {
  digest: string;
  size: number;
  mediaType: string;
  /**
   * Where a foreign / non-distributable layer is served (only with
   * {@link ResolveImageOptions.allowForeign}; the registry is not asked for it).
   */
  urls?: string[];
  compression: Compression;
  /**
   * sha256 of the uncompressed tar, from the config's `rootfs.diff_ids` (same position).
   * Absent for Docker schema 1 images, which have no diffIDs: their layers are checked by
   * compressed digest and size only.
   */
  diffId?: string;
}

/** The parts of an image config rootfs users need (the rest stays in the JSON). */
export interface ImageConfigJson {
  architecture?: string;
  os?: string;
  variant?: string;
  config?: {
    User?: string;
    Env?: string[];
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    WorkingDir?: string;
    ExposedPorts?: Record<string, object>;
    Labels?: Record<string, string> | null;
    [key: string]: unknown;
  };
  rootfs: { type: string; diff_ids: string[] };
  history?: unknown[];
  [key: string]: unknown;
}

export interface ResolvedImage {
  reference: ImageReference;
  /** Digest of the index / manifest list the platform was picked from, if any. */
  indexDigest?: string;
  manifestDigest: string;
  manifestMediaType: string;
  platform: Platform;
  /**
   * The image config. For a schema 1 image it is synthesised from the top
   * `v1Compatibility` (`synthesised: true`; digest and size are of our JSON, no blob).
   */
  config: { digest: string; mediaType: string; size: number; json: ImageConfigJson; synthesised?: boolean };
  /** Base layer first. */
  layers: LayerDescriptor[];
}

export interface FetchManifestOptions {
  signal?: AbortSignal;
}

export interface ResolveImageOptions {
  signal?: AbortSignal;
  /**
   * `os/arch[/variant]` or a {@link Platform}. When given, a single-platform image must
   * match it too; by default the host platform is picked from indexes and a
   * single-platform image is taken as it is.
   */
  platform?: string | Platform;
  /**
   * Keep foreign / non-distributable layers that name `urls` (their descriptors keep the
   * URLs; `openForeignBlob` fetches them). By default such a layer is a ManifestError.
   */
  allowForeign?: boolean;
}

/** Nested indexes are legal; this bounds how deep we follow them. */
const MAX_INDEX_DEPTH = 4;

/** `GET /v2/<name>/manifests/<tag|digest>` with every manifest type we can read. */
export async function fetchManifest(
  client: RegistryClient,
  ref: ImageReference,
  options: FetchManifestOptions = {},
): Promise<FetchedManifest> {
  const reference = manifestReference(ref);
  const what = `manifest ${ref.toString()}`;
  const response = await client.request({
    path: `/v2/${ref.repository}/manifests/${reference}`,
    repository: ref.repository,
    headers: { accept: MANIFEST_ACCEPT.join(', ') },
    what,
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
  const bytes = await readBodyCapped(
    response.body,
    MAX_MANIFEST_BYTES,
    (size) => new ManifestError(`${what}: larger than ${MAX_MANIFEST_BYTES} bytes${size === undefined ? '' : ` (${size})`}`),
    response.headers,
  );
  return checkFetchedManifest(bytes, headerValue(response.headers, 'content-type'), ref.digest, what);
}

/**
 * Types, parses and digests a manifest body (`expectedDigest`: the digest it was asked by,
 * which it must match). By digest, the bytes must hash to it; by tag there is nothing to
 * check against (the Docker-Content-Digest header is wrong on too many registries to be
 * trusted). A signed schema 1 manifest is digested, and read, over its JWS payload.
 */
export function checkFetchedManifest(
  body: Buffer,
  contentType: string | undefined,
  expectedDigest: string | undefined,
  what: string,
): FetchedManifest {
  // Bytes pulled by digest are believed only once they hash right: a tampered body must fail
  // as an integrity error, not as whatever its broken content looks like. Only a signed
  // schema 1 manifest, digested over its payload, needs parsing first.
  const matchesAsIs = expectedDigest !== undefined && digestOf(body, algorithmOf(expectedDigest)) === expectedDigest;
  let json: Record<string, unknown>;
  try {
    json = parseJsonObject(body, what);
  } catch (error) {
    if (expectedDigest !== undefined && !matchesAsIs) verifyDigest(body, expectedDigest, what);
    throw error;
  }
  const mediaType = manifestMediaType(contentType, json);
  if (mediaType === undefined) throw new ManifestError(`${what}: unknown manifest type`);
  let bytes = body;
  if (isSchema1MediaType(mediaType)) {
    bytes = schema1Payload(body, json, what);
    if (bytes !== body) json = parseJsonObject(bytes, `${what} (signed payload)`);
  }
  let digest: string;
  if (expectedDigest !== undefined) {
    if (!matchesAsIs || bytes !== body) verifyDigest(bytes, expectedDigest, what);
    digest = expectedDigest;
  } else {
    digest = digestOf(bytes);
  }
  return { mediaType, digest, bytes, ...(bytes === body ? {} : { signedBytes: body }), json };
}

/**
 * Resolves `ref` to one image: follows an index / manifest list to the manifest of the
 * wanted platform, fetches and verifies the config, and checks every layer descriptor.
 */
export async function resolveImage(
  client: RegistryClient,
  ref: ImageReference,
  options: ResolveImageOptions = {},
): Promise<ResolvedImage> {
  const { signal } = options;
  const explicit = platformOption(options.platform);
  const wanted = explicit ?? defaultPlatform();
  const signalOption = signal === undefined ? {} : { signal };

  let manifest = await fetchManifest(client, ref, signalOption);
  let indexDigest: string | undefined;
  let picked: Platform | undefined;
  for (let depth = 0; isIndexMediaType(manifest.mediaType); depth++) {
    if (depth >= MAX_INDEX_DEPTH) throw new ManifestError(`${ref.toString()}: indexes nested too deep`);
    indexDigest ??= manifest.digest;
    const entries = indexEntries(manifest, ref);
    const { entry, platform } = selectPlatform(entries, wanted);
    picked = platform;
    const child = await fetchManifest(client, withDigest(ref, entry.digest), signalOption);
    const served = child.signedBytes ?? child.bytes;
    if (served.length !== entry.size) {
      throw new SizeMismatchError(`manifest ${entry.digest}`, entry.size, served.length);
    }
    manifest = child;
  }
  if (isSchema1MediaType(manifest.mediaType)) {
    return resolveSchema1(client, ref, manifest, { explicit, picked, indexDigest, signal });
  }
  if (!isImageManifestMediaType(manifest.mediaType)) {
    throw new ManifestError(`${ref.toString()}: not an image manifest (${manifest.mediaType})`);
  }

  const what = `manifest ${manifest.digest}`;
  const { config: configDescriptor, layers: checked } = checkImageManifest(manifest.json, what, ref.toString(), {
    allowForeign: options.allowForeign === true,
  });

  throwIfAborted(signal);
  const configBytes = await readBlob(
    client,
    ref,
    configDescriptor,
    MAX_CONFIG_BYTES,
    () => new ManifestError(`config ${configDescriptor.digest}: larger than ${MAX_CONFIG_BYTES} bytes`),
    signalOption,
  );
  const config = parseConfig(configBytes, configDescriptor.digest);
  picked ??= singleImagePlatform(config, `config ${configDescriptor.digest}`, explicit);
  const layers = withDiffIds(checked, config, what);

  return {
    reference: ref,
    ...(indexDigest === undefined ? {} : { indexDigest }),
    manifestDigest: manifest.digest,
    manifestMediaType: manifest.mediaType,
    platform: picked,
    config: {
      digest: configDescriptor.digest,
      mediaType: configDescriptor.mediaType,
      size: configDescriptor.size,
      json: config,
    },
    layers,
  };
}

/**
 * The platform of a single-platform image, from its config. Such an image is what the
 * user named; only an explicit --platform checks it.
 */
export function singleImagePlatform(config: ImageConfigJson, what: string, explicit: Platform | undefined): Platform {
  const configPlatform = platformFromJson(config);
  if (configPlatform === undefined) throw new ManifestError(`${what}: no os/architecture`);
  if (explicit !== undefined && !platformMatches(explicit, configPlatform)) {
    throw new PlatformNotFoundError(formatPlatform(explicit), [formatPlatform(configPlatform)]);
  }
  return configPlatform;
}

/** The config descriptor and the checked layers of an OCI / Docker schema 2 image manifest. */
export function checkImageManifest(
  json: Record<string, unknown>,
  what: string,
  name: string,
  options: { allowForeign?: boolean } = {},
): { config: Descriptor; layers: Array<Omit<LayerDescriptor, 'diffId'>> } {
  const config = parseDescriptor(json['config'], `${what} config`);
  if (!isConfigMediaType(config.mediaType)) {
    throw new ManifestError(`${name} is not a container image (config media type ${config.mediaType})`);
  }
  const rawLayers = json['layers'];
  if (!Array.isArray(rawLayers)) throw new ManifestError(`${what}: "layers" is not a list`);
  // Layers are judged before anything is downloaded: a foreign or unknown layer fails now.
  const layers = rawLayers.map((layer, index) =>
    checkLayer(parseDescriptor(layer, `${what} layer ${index}`), index, options.allowForeign === true),
  );
  return { config, layers };
}

/** Pairs layers with the config's `rootfs.diff_ids`, position by position. */
export function withDiffIds(
  layers: ReadonlyArray<Omit<LayerDescriptor, 'diffId'>>,
  config: ImageConfigJson,
  what: string,
): LayerDescriptor[] {
  const diffIds = config.rootfs.diff_ids;
  if (diffIds.length !== layers.length) {
    throw new ManifestError(`${what}: ${layers.length} layers but the config lists ${diffIds.length} diff_ids`);
  }
  return layers.map((layer, index): LayerDescriptor => {
    const diffId = diffIds[index] ?? '';
    if (!isValidDigest(diffId) || !diffId.startsWith('sha256:')) {
      throw new ManifestError(`layer ${index} (${layer.digest}): invalid diff_id ${JSON.stringify(diffId)} in the config`);
    }
    return { ...layer, diffId };
  });
}

interface Schema1Context {
  explicit: Platform | undefined;
  picked: Platform | undefined;
  indexDigest: string | undefined;
  signal: AbortSignal | undefined;
}

/**
 * A schema 1 image: layers base first without throwaways, sizes from `HEAD` (schema 1 has
 * none; the digest check then covers size too), config synthesised from `v1Compatibility`.
 */
async function resolveSchema1(
  client: RegistryClient,
  ref: ImageReference,
  manifest: FetchedManifest,
  context: Schema1Context,
): Promise<ResolvedImage> {
  const what = `schema 1 manifest ${manifest.digest}`;
  const image = parseSchema1(manifest.json, what);
  if (image.layers.length === 0) throw new ManifestError(`${what}: every layer is a throwaway layer`);
  const json = synthesiseSchema1Config(image);
  const platform = context.picked ?? singleImagePlatform(json, what, context.explicit);
  throwIfAborted(context.signal);
  const sizes = await Promise.all(
    image.layers.map((layer) => blobSize(client, ref, layer.digest, context.signal)),
  );
  const layers = image.layers.map(
    (layer, index): LayerDescriptor => ({
      digest: layer.digest,
      size: sizes[index] ?? 0,
      mediaType: MediaType.dockerLayerGzip,
      compression: 'gzip',
    }),
  );
  const configBytes = Buffer.from(JSON.stringify(json));
  return {
    reference: ref,
    ...(context.indexDigest === undefined ? {} : { indexDigest: context.indexDigest }),
    manifestDigest: manifest.digest,
    manifestMediaType: manifest.mediaType,
    platform,
    config: {
      digest: digestOf(configBytes),
      mediaType: MediaType.ociConfig,
      size: configBytes.length,
      json,
      synthesised: true,
    },
    layers,
  };
}

/** `HEAD /v2/<name>/blobs/<digest>`: the blob's size from Content-Length. */
async function blobSize(
  client: RegistryClient,
  ref: ImageReference,
  digest: string,
  signal: AbortSignal | undefined,
): Promise<number> {
  const what = `blob ${digest} of ${ref.registry}/${ref.repository}`;
  const response = await client.request({
    path: `/v2/${ref.repository}/blobs/${digest}`,
    repository: ref.repository,
    method: 'HEAD',
    what,
    ...(signal === undefined ? {} : { signal }),
  });
  discardBody(response.body);
  const length = headerValue(response.headers, 'content-length');
  const size = length === undefined ? Number.NaN : Number(length);
  if (!/^\d+$/.test(length ?? '') || !Number.isSafeInteger(size)) {
    throw new ManifestError(`${what}: HEAD gave no usable Content-Length (${JSON.stringify(length)}); schema 1 has no layer sizes`);
  }
  return size;
}

/** Content-Type first (parameters dropped); generic or missing types fall back on the JSON. */
export function manifestMediaType(contentType: string | undefined, json: Record<string, unknown>): string | undefined {
  const fromHeader = contentType?.split(';')[0]?.trim().toLowerCase();
  if (fromHeader !== undefined && MANIFEST_ACCEPT.includes(fromHeader)) return fromHeader;
  const fromJson = json['mediaType'];
  if (typeof fromJson === 'string' && MANIFEST_ACCEPT.includes(fromJson)) return fromJson;
  // OCI made `mediaType` optional at first: recognise the shape.
  if (json['schemaVersion'] === 1) return MediaType.dockerManifestSchema1;
  if (Array.isArray(json['manifests'])) return MediaType.ociIndex;
  if (typeof json['config'] === 'object' && Array.isArray(json['layers'])) return MediaType.ociManifest;
  if (fromHeader !== undefined && fromHeader !== '' && fromHeader !== 'application/json' && fromHeader !== 'text/plain') {
    return fromHeader;
  }
  return undefined;
}

function indexEntries(manifest: FetchedManifest, ref: ImageReference): Descriptor[] {
  const what = `index ${manifest.digest} of ${ref.toString()}`;
  const raw = manifest.json['manifests'];
  if (!Array.isArray(raw)) throw new ManifestError(`${what}: "manifests" is not a list`);
  return raw.map((entry, index) => parseDescriptor(entry, `${what} entry ${index}`));
}

/** Validates a descriptor's shape; the digest must be one we can verify. */
export function parseDescriptor(value: unknown, what: string): Descriptor {
  if (typeof value !== 'object' || value === null) throw new ManifestError(`${what}: not an object`);
  const { mediaType, digest, size, urls, annotations, platform } = value as Record<string, unknown>;
  if (typeof mediaType !== 'string') throw new ManifestError(`${what}: no mediaType`);
  if (typeof digest !== 'string' || !isValidDigest(digest)) {
    throw new ManifestError(`${what}: invalid digest ${JSON.stringify(digest)}`);
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw new ManifestError(`${what}: invalid size ${JSON.stringify(size)}`);
  }
  const descriptor: Descriptor = { mediaType, digest, size };
  if (Array.isArray(urls) && urls.length > 0) descriptor.urls = urls.filter((u): u is string => typeof u === 'string');
  if (typeof annotations === 'object' && annotations !== null) {
    descriptor.annotations = annotations as Record<string, string>;
  }
  if (typeof platform === 'object' && platform !== null) descriptor.platform = platform as PlatformJson;
  return descriptor;
}

function checkLayer(descriptor: Descriptor, index: number, allowForeign: boolean): Omit<LayerDescriptor, 'diffId'> {
  const name = `layer ${index} (${descriptor.digest})`;
  if (descriptor.urls !== undefined && !allowForeign) {
    throw new ManifestError(
      `${name} is a foreign layer served from ${descriptor.urls.join(', ')}; foreign layers are not pulled unless allowed`,
    );
  }
  const compression = layerCompression(descriptor.mediaType);
  if (compression === undefined) {
    throw new ManifestError(`${name} has the unknown media type ${descriptor.mediaType}`);
  }
  return {
    digest: descriptor.digest,
    size: descriptor.size,
    mediaType: descriptor.mediaType,
    ...(descriptor.urls === undefined ? {} : { urls: descriptor.urls }),
    compression,
  };
}

/** Parses an image config and checks its `rootfs`. */
export function parseConfig(bytes: Buffer, digest: string): ImageConfigJson {
  const what = `config ${digest}`;
  const json = parseJsonObject(bytes, what);
  const rootfs = json['rootfs'];
  if (typeof rootfs !== 'object' || rootfs === null) throw new ManifestError(`${what}: no rootfs`);
  const { type, diff_ids: diffIds } = rootfs as Record<string, unknown>;
  if (type !== 'layers') throw new ManifestError(`${what}: rootfs type ${JSON.stringify(type)} is not "layers"`);
  if (!Array.isArray(diffIds) || !diffIds.every((id): id is string => typeof id === 'string')) {
    throw new ManifestError(`${what}: rootfs.diff_ids is not a list of digests`);
  }
  return json as ImageConfigJson;
}

export function parseJsonObject(bytes: Buffer, what: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw new ManifestError(`${what}: not valid JSON`, { cause: error });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ManifestError(`${what}: not a JSON object`);
  }
  return parsed as Record<string, unknown>;
}

/** `sha256` of `sha256:…`: the algorithm a digest names. */
function algorithmOf(digest: string): string {
  const colon = digest.indexOf(':');
  return colon === -1 ? 'sha256' : digest.slice(0, colon);
}
