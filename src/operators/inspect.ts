/**
 * Questions about an image that need no layer: what a reference points at now
 * ({@link headManifest}, {@link currentDigest}), whether it exists ({@link imageExists}),
 * and what it holds ({@link inspectImage}: index, chosen manifest, layers and config, each
 * with its exact bytes). These are for people deciding whether and what to pull, so they
 * spend as few manifest GETs as they can: Docker Hub counts those against its pull limit,
 * HEADs it does not.
 *
 * Unlike `resolveImage`, inspecting does not refuse what a pull would refuse (foreign or
 * unknown layers, a config that is not a container config): showing such an image is how
 * a user finds out why it cannot be pulled.
 */
import { ManifestError, NotFoundError, PlatformNotFoundError, SizeMismatchError } from '../errors.js';
import { isValidDigest, manifestReference, parseReference, withDigest, type ImageReference } from '../reference/index.js';
import { readBlob } from '../registry/blob.js';
import { RegistryClient, type RegistryClientOptions } from '../registry/client.js';
import { MAX_CONFIG_BYTES, discardBody, headerValue } from '../registry/http.js';
import {
  fetchManifest,
  manifestMediaType,
  parseDescriptor,
  type Descriptor,
  type FetchedManifest,
  type ImageConfigJson,
} from '../registry/manifest.js';
import {
  MANIFEST_ACCEPT,
  isConfigMediaType,
  isImageManifestMediaType,
  isIndexMediaType,
  isSchema1MediaType,
} from '../registry/media-types.js';
import {
  defaultPlatform,
  formatPlatform,
  isUnknownPlatform,
  parsePlatform,
  platformFromJson,
  platformMatches,
  selectPlatform,
  type Platform,
} from '../registry/platform.js';
import { connectionOptions, type PullOptions } from './pull-options.js';

/**
 * What the registry queries can be told: the registry options of a pull (credentials,
 * plain HTTP, Docker config, platform, signal), so one options object serves both.
 */
export type ImageQueryOptions = PullOptions;

/** What a `HEAD` of a manifest said; every field is only as good as the registry. */
export interface ManifestHead {
  /** `Docker-Content-Digest`, when present and well formed. */
  digest?: string;
  /** The Content-Type, when it is a manifest type we know. */
  mediaType?: string;
  /** Content-Length, when present. */
  size?: number;
}

/**
 * `HEAD /v2/<name>/manifests/<ref>` with every Accept type we read. Costs no Docker Hub
 * pull; fails like a GET would (`NotFoundError` for an unknown tag, `AuthError`, ...).
 *
 * @example
 * ```ts
 * const head = await headManifest(RegistryClient.for(ref), ref);
 * console.log(head.digest ?? 'the registry sent no digest');
 * ```
 */
export async function headManifest(
  client: RegistryClient,
  ref: ImageReference,
  options: { signal?: AbortSignal } = {},
): Promise<ManifestHead> {
  const response = await client.request({
    method: 'HEAD',
    path: `/v2/${ref.repository}/manifests/${manifestReference(ref)}`,
    repository: ref.repository,
    headers: { accept: MANIFEST_ACCEPT.join(', ') },
    what: `manifest ${ref.toString()}`,
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
  // A HEAD has no body, but undici still hands us a stream that must be let go.
  discardBody(response.body);
  const head: ManifestHead = {};
  const digest = headerValue(response.headers, 'docker-content-digest')?.trim();
  if (digest !== undefined && isValidDigest(digest)) head.digest = digest;
  const mediaType = manifestMediaType(headerValue(response.headers, 'content-type'), {});
  if (mediaType !== undefined) head.mediaType = mediaType;
  const length = Number(headerValue(response.headers, 'content-length'));
  if (Number.isSafeInteger(length) && length > 0) head.size = length;
  return head;
}

/** The digest a reference points at now, and how we learnt it. */
export interface CurrentDigest {
  /** The index digest when the reference names an index, else the manifest digest. */
  digest: string;
  /** `reference`: pinned by digest, no request; `head`: Docker-Content-Digest; `get`: hashed the manifest. */
  source: 'reference' | 'head' | 'get';
  /** The manifest, when a GET was needed to learn the digest. */
  manifest?: FetchedManifest;
}

/**
 * What `ref` points at: its own digest when pinned (no request), else the
 * `Docker-Content-Digest` of a HEAD, else (a registry that sends none) the sha256 of the
 * manifest a GET returns.
 */
export async function currentDigest(
  client: RegistryClient,
  ref: ImageReference,
  options: { signal?: AbortSignal } = {},
): Promise<CurrentDigest> {
  if (ref.digest !== undefined) return { digest: ref.digest, source: 'reference' };
  const head = await headManifest(client, ref, options);
  if (head.digest !== undefined) return { digest: head.digest, source: 'head' };
  const manifest = await fetchManifest(client, ref, options);
  return { digest: manifest.digest, source: 'get', manifest };
}

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
 * Whether `reference` exists, without downloading a layer: a HEAD of the manifest (no
 * Docker Hub pull spent). With `options.platform` the image must also offer that platform,
 * which needs the manifest body (a GET) and, for a single-platform image, its config.
 * Resolves to `undefined` when the image, tag or platform does not exist; any other
 * failure (auth, network, rate limit) rejects, because "cannot tell" is not "absent".
 *
 * @example
 * ```ts
 * if ((await imageExists('alpine:3.20', { platform: 'linux/arm64' })) === undefined) process.exit(3);
 * ```
 */
export async function imageExists(
  reference: string,
  options: ImageQueryOptions = {},
): Promise<ImageExistence | undefined> {
  const ref = parseReference(reference);
  const client = RegistryClient.for(ref, registryClientOptions(options));
  const signal = signalOption(options);
  try {
    if (options.platform === undefined) return { digest: (await currentDigest(client, ref, signal)).digest };
    const wanted = parsePlatform(options.platform);
    const top = await fetchManifest(client, ref, signal);
    if (isIndexMediaType(top.mediaType)) {
      const { entry, platform } = selectPlatform(indexEntries(top, ref), wanted);
      return { digest: top.digest, platform, manifestDigest: entry.digest };
    }
    const config = await readImageConfig(client, ref, top, signal);
    const platform = config?.json === undefined ? undefined : platformFromJson(config.json);
    if (platform === undefined || !platformMatches(wanted, platform)) {
      throw new PlatformNotFoundError(formatPlatform(wanted), platform === undefined ? [] : [formatPlatform(platform)]);
    }
    return { digest: top.digest, platform };
  } catch (error) {
    if (error instanceof NotFoundError || error instanceof PlatformNotFoundError) return undefined;
    throw error;
  } finally {
    await client.close();
  }
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
  /** Foreign layers name where they are served from; a pull refuses them. */
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

/** Everything {@link inspectImage} learnt about a reference. */
export interface InspectResult {
  /** The reference, fully qualified. */
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

/** Nested indexes are legal; this bounds how deep we follow them, as `resolveImage` does. */
const MAX_INDEX_DEPTH = 4;

/**
 * Fetches what `reference` names: the index (if any) and the manifest of the wanted
 * platform (`options.platform`, else linux and the host architecture), its layer list and
 * its config. One GET per manifest level plus the config blob; no layer is downloaded.
 *
 * @throws {NotFoundError} no such image or tag.
 * @throws {PlatformNotFoundError} the index, or a single-platform image given an explicit
 *   `platform`, has no manifest for it (the message lists what there is).
 *
 * @example
 * ```ts
 * const image = await inspectImage('debian:bookworm', { platform: 'linux/arm64' });
 * console.log(image.layers.length, image.config.json?.config?.Cmd);
 * ```
 */
export async function inspectImage(reference: string, options: ImageQueryOptions = {}): Promise<InspectResult> {
  const ref = parseReference(reference);
  const client = RegistryClient.for(ref, registryClientOptions(options));
  try {
    return await inspectWith(client, ref, options);
  } finally {
    await client.close();
  }
}

/** {@link inspectImage} with a client and reference of the caller's (who closes the client). */
export async function inspectWith(
  client: RegistryClient,
  ref: ImageReference,
  options: Pick<ImageQueryOptions, 'platform' | 'signal'> = {},
): Promise<InspectResult> {
  const signal = signalOption(options);
  const explicit = options.platform === undefined ? undefined : parsePlatform(options.platform);
  const wanted = explicit ?? defaultPlatform();

  let manifest = await fetchManifest(client, ref, signal);
  let index: InspectedIndex | undefined;
  let platform: Platform | undefined;
  for (let depth = 0; isIndexMediaType(manifest.mediaType); depth++) {
    if (depth >= MAX_INDEX_DEPTH) throw new ManifestError(`${ref.toString()}: indexes nested too deep`);
    const entries = indexEntries(manifest, ref);
    index ??= { ...inspectedManifest(manifest), manifests: entries.map(inspectedEntry) };
    const picked = selectPlatform(entries, wanted);
    platform = picked.platform;
    const child = await fetchManifest(client, withDigest(ref, picked.entry.digest), signal);
    if (child.bytes.length !== picked.entry.size) {
      throw new SizeMismatchError(`manifest ${picked.entry.digest}`, picked.entry.size, child.bytes.length);
    }
    manifest = child;
  }
  if (isSchema1MediaType(manifest.mediaType)) throw new ManifestError('schema 1 manifests are not supported yet');
  if (!isImageManifestMediaType(manifest.mediaType)) {
    throw new ManifestError(`${ref.toString()}: not an image manifest (${manifest.mediaType})`);
  }

  const config = await readImageConfig(client, ref, manifest, signal);
  if (config === undefined) throw new ManifestError(`manifest ${manifest.digest}: no config descriptor`);
  if (platform === undefined && config.json !== undefined) {
    platform = platformFromJson(config.json);
    // A single-platform image is what the user named; only an explicit platform checks it.
    if (explicit !== undefined && (platform === undefined || !platformMatches(explicit, platform))) {
      throw new PlatformNotFoundError(formatPlatform(explicit), platform === undefined ? [] : [formatPlatform(platform)]);
    }
  }

  const rawLayers = manifest.json['layers'];
  if (!Array.isArray(rawLayers)) throw new ManifestError(`manifest ${manifest.digest}: "layers" is not a list`);
  const layers = rawLayers.map((raw, i): InspectedLayer => {
    const { digest, mediaType, size, urls } = parseDescriptor(raw, `manifest ${manifest.digest} layer ${i}`);
    return { digest, mediaType, size, ...(urls === undefined ? {} : { urls }) };
  });

  return {
    reference: ref.toString(),
    ...(index === undefined ? {} : { index }),
    manifest: inspectedManifest(manifest),
    ...(platform === undefined ? {} : { platform }),
    config,
    layers,
  };
}

/**
 * The config blob of an image manifest, size- and digest-checked; `json` only for a
 * container config (a pull needs it; an artifact's config is just shown as bytes).
 */
async function readImageConfig(
  client: RegistryClient,
  ref: ImageReference,
  manifest: FetchedManifest,
  signal: { signal?: AbortSignal },
): Promise<InspectedConfig | undefined> {
  if (manifest.json['config'] === undefined) return undefined;
  const descriptor = parseDescriptor(manifest.json['config'], `manifest ${manifest.digest} config`);
  const bytes = await readBlob(
    client,
    ref,
    descriptor,
    MAX_CONFIG_BYTES,
    () => new ManifestError(`config ${descriptor.digest}: larger than ${MAX_CONFIG_BYTES} bytes`),
    signal,
  );
  const config: InspectedConfig = {
    digest: descriptor.digest,
    mediaType: descriptor.mediaType,
    size: descriptor.size,
    bytes,
  };
  if (isConfigMediaType(descriptor.mediaType)) config.json = parseConfigJson(bytes, descriptor.digest);
  return config;
}

function parseConfigJson(bytes: Buffer, digest: string): ImageConfigJson {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw new ManifestError(`config ${digest}: not valid JSON`, { cause: error });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ManifestError(`config ${digest}: not a JSON object`);
  }
  // Shown, not trusted: a pull validates rootfs.diff_ids itself.
  return parsed as ImageConfigJson;
}

/** The entries of an index; a malformed entry fails, as it would for a pull. */
export function indexEntries(manifest: FetchedManifest, ref: ImageReference): Descriptor[] {
  const raw = manifest.json['manifests'];
  const what = `index ${manifest.digest} of ${ref.toString()}`;
  if (!Array.isArray(raw)) throw new ManifestError(`${what}: "manifests" is not a list`);
  return raw.map((entry, i) => parseDescriptor(entry, `${what} entry ${i}`));
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

/** The registry part of the options, in the shape the client wants (absent stays absent). */
export function registryClientOptions(options: ImageQueryOptions): RegistryClientOptions {
  return connectionOptions(options);
}

function signalOption(options: { signal?: AbortSignal }): { signal?: AbortSignal } {
  return options.signal === undefined ? {} : { signal: options.signal };
}
