/**
 * Manifests: fetch one (every Accept type, Content-Type trusted, digest checked when
 * pulling by digest), and resolve a reference to one image: index → platform → image
 * manifest → config, with every descriptor checked before anyone downloads a layer.
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
import { MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, headerValue, readBodyCapped } from './http.js';
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
  parsePlatform,
  platformFromJson,
  platformMatches,
  selectPlatform,
  type Platform,
  type PlatformJson,
} from './platform.js';

/** A manifest as fetched: its bytes are what the digest covers. */
export interface FetchedManifest {
  mediaType: string;
  /** Digest of `bytes` (algorithm of the requested digest, else sha256). */
  digest: string;
  bytes: Buffer;
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
  urls?: string[];
  compression: Compression;
  /** sha256 of the uncompressed tar, from the config's `rootfs.diff_ids` (same position). */
  diffId: string;
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
  config: { digest: string; mediaType: string; size: number; json: ImageConfigJson };
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
  // By digest, the bytes must hash to it; by tag there is nothing to check against (the
  // Docker-Content-Digest header is wrong on too many registries to be trusted).
  let digest: string;
  if (ref.digest !== undefined) {
    verifyDigest(bytes, ref.digest, what);
    digest = ref.digest;
  } else {
    digest = digestOf(bytes);
  }
  const json = parseJsonObject(bytes, what);
  const mediaType = manifestMediaType(headerValue(response.headers, 'content-type'), json);
  if (mediaType === undefined) throw new ManifestError(`${what}: unknown manifest type`);
  return { mediaType, digest, bytes, json };
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
  const explicit =
    options.platform === undefined
      ? undefined
      : typeof options.platform === 'string'
        ? parsePlatform(options.platform)
        : options.platform;
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
    if (child.bytes.length !== entry.size) {
      throw new SizeMismatchError(`manifest ${entry.digest}`, entry.size, child.bytes.length);
    }
    manifest = child;
  }
  if (isSchema1MediaType(manifest.mediaType)) {
    throw new ManifestError('schema 1 manifests are not supported yet');
  }
  if (!isImageManifestMediaType(manifest.mediaType)) {
    throw new ManifestError(`${ref.toString()}: not an image manifest (${manifest.mediaType})`);
  }

  const what = `manifest ${manifest.digest}`;
  const configDescriptor = parseDescriptor(manifest.json['config'], `${what} config`);
  if (!isConfigMediaType(configDescriptor.mediaType)) {
    throw new ManifestError(
      `${ref.toString()} is not a container image (config media type ${configDescriptor.mediaType})`,
    );
  }
  const rawLayers = manifest.json['layers'];
  if (!Array.isArray(rawLayers)) throw new ManifestError(`${what}: "layers" is not a list`);
  // Layers are judged before anything is downloaded: a foreign or unknown layer fails now.
  const checked = rawLayers.map((layer, index) => checkLayer(parseDescriptor(layer, `${what} layer ${index}`), index));

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

  const configPlatform = platformFromJson(config);
  if (picked === undefined) {
    if (configPlatform === undefined) {
      throw new ManifestError(`config ${configDescriptor.digest}: no os/architecture`);
    }
    // A single-platform image is what the user named; only an explicit --platform checks it.
    if (explicit !== undefined && !platformMatches(explicit, configPlatform)) {
      throw new PlatformNotFoundError(formatPlatform(explicit), [formatPlatform(configPlatform)]);
    }
    picked = configPlatform;
  }

  const diffIds = config.rootfs.diff_ids;
  if (diffIds.length !== checked.length) {
    throw new ManifestError(
      `${what}: ${checked.length} layers but the config lists ${diffIds.length} diff_ids`,
    );
  }
  const layers = checked.map((layer, index): LayerDescriptor => {
    const diffId = diffIds[index] ?? '';
    if (!isValidDigest(diffId) || !diffId.startsWith('sha256:')) {
      throw new ManifestError(`layer ${index} (${layer.digest}): invalid diff_id ${JSON.stringify(diffId)} in the config`);
    }
    return { ...layer, diffId };
  });

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

function checkLayer(descriptor: Descriptor, index: number): Omit<LayerDescriptor, 'diffId'> {
  const name = `layer ${index} (${descriptor.digest})`;
  if (descriptor.urls !== undefined) {
    throw new ManifestError(
      `${name} is a foreign layer served from ${descriptor.urls.join(', ')}; foreign layers are not supported`,
    );
  }
  const compression = layerCompression(descriptor.mediaType);
  if (compression === undefined) {
    throw new ManifestError(`${name} has the unknown media type ${descriptor.mediaType}`);
  }
  return { digest: descriptor.digest, size: descriptor.size, mediaType: descriptor.mediaType, compression };
}

function parseConfig(bytes: Buffer, digest: string): ImageConfigJson {
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

function parseJsonObject(bytes: Buffer, what: string): Record<string, unknown> {
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
