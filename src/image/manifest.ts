/**
 * Reading manifests, indexes and configs: plain functions over bytes and JSON, no I/O
 * (as go-containerregistry's `v1` model is). Every store hands its bytes to these, so a
 * registry, an OCI layout and a `docker save` archive are judged by the same rules; the
 * walk that fetches them is `queries/resolve.ts`.
 *
 * Shapes are checked where the JSON comes in: a field of the wrong type is a
 * {@link ManifestError} (exit 8) that names the field, never a crash further on.
 */
import { ManifestError, PlatformNotFoundError } from '../errors.js';
import { isValidDigest } from '../reference/index.js';
import { algorithmOf, digestOf, verifyDigest } from './digest.js';
import {
  MANIFEST_ACCEPT,
  MediaType,
  isConfigMediaType,
  isSchema1MediaType,
  layerCompression,
} from './media-types.js';
import { formatPlatform, platformFromJson, platformMatches, type Platform, type PlatformJson } from './platform.js';
import { schema1Payload } from './schema1.js';
import type { Descriptor, FetchedManifest, ImageConfigJson, LayerDescriptor, RuntimeConfigJson } from './types.js';

/** Caps on what is read whole: a store is not trusted to hold a small manifest. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
export const MAX_CONFIG_BYTES = 8 * 1024 * 1024;

/** Nested indexes are legal; this bounds how deep they are followed. */
export const MAX_INDEX_DEPTH = 4;

/** Parses `bytes` as a JSON object (not an array, not a scalar). */
export function parseJsonObject(bytes: Buffer, what: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw new ManifestError(`${what}: not valid JSON`, { cause: error });
  }
  if (!isRecord(parsed)) throw new ManifestError(`${what}: not a JSON object`);
  return parsed;
}

/** Validates a descriptor's shape; the digest must be one we can verify. */
export function parseDescriptor(value: unknown, what: string): Descriptor {
  if (!isRecord(value)) throw new ManifestError(`${what}: not an object`);
  const { mediaType, digest, size, urls, annotations, platform } = value;
  if (typeof mediaType !== 'string') throw new ManifestError(`${what}: no mediaType`);
  if (typeof digest !== 'string' || !isValidDigest(digest)) {
    throw new ManifestError(`${what}: invalid digest ${JSON.stringify(digest)}`);
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw new ManifestError(`${what}: invalid size ${JSON.stringify(size)}`);
  }
  const descriptor: Descriptor = { mediaType, digest, size };
  if (urls !== undefined && urls !== null) {
    if (!isStringList(urls)) throw new ManifestError(`${what}: "urls" is not a list of strings`);
    if (urls.length > 0) descriptor.urls = urls;
  }
  if (annotations !== undefined && annotations !== null) {
    if (!isStringMap(annotations)) throw new ManifestError(`${what}: "annotations" is not a map of strings`);
    descriptor.annotations = annotations;
  }
  if (platform !== undefined && platform !== null) {
    if (!isRecord(platform)) throw new ManifestError(`${what}: "platform" is not an object`);
    descriptor.platform = platform as PlatformJson;
  }
  return descriptor;
}

/** The entries of an index (`manifests`); a malformed entry fails, whatever reads it. */
export function indexEntries(json: Record<string, unknown>, what: string): Descriptor[] {
  const raw = json['manifests'];
  if (!Array.isArray(raw)) throw new ManifestError(`${what}: "manifests" is not a list`);
  return raw.map((entry, index) => parseDescriptor(entry, `${what} entry ${index}`));
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
  // Bytes asked for by digest are believed only once they hash right: a tampered body must
  // fail as an integrity error, not as whatever its broken content looks like. Only a
  // signed schema 1 manifest, digested over its payload, needs parsing first.
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

/** The layer descriptors of an image manifest as listed (base first), shape-checked only. */
export function manifestLayers(json: Record<string, unknown>, what: string): Descriptor[] {
  const raw = json['layers'];
  if (!Array.isArray(raw)) throw new ManifestError(`${what}: "layers" is not a list`);
  return raw.map((layer, index) => parseDescriptor(layer, `${what} layer ${index}`));
}

/** The config descriptor of an image manifest, shape-checked only. */
export function manifestConfig(json: Record<string, unknown>, what: string): Descriptor {
  if (json['config'] === undefined) throw new ManifestError(`${what}: no config descriptor`);
  return parseDescriptor(json['config'], `${what} config`);
}

/**
 * The config descriptor and the checked layers of an OCI / Docker schema 2 image manifest,
 * as a pull takes them: a config that is not a container config, a foreign layer (unless
 * allowed) or a layer of unknown media type fails now, before anything is downloaded.
 */
export function checkImageManifest(
  json: Record<string, unknown>,
  what: string,
  name: string,
  options: { allowForeign?: boolean } = {},
): { config: Descriptor; layers: Array<Omit<LayerDescriptor, 'diffId'>> } {
  const config = manifestConfig(json, what);
  if (!isConfigMediaType(config.mediaType)) {
    throw new ManifestError(`${name} is not a container image (config media type ${config.mediaType})`);
  }
  const layers = manifestLayers(json, what).map((layer, index) => checkLayer(layer, index, options.allowForeign === true));
  return { config, layers };
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

/**
 * Parses an image config. Its runtime part (`config`: Env, Cmd, ...) is always checked,
 * because everything that shows or uses it trusts the types; `rootfs` only when
 * `requireRootfs` (a pull needs the diffIDs; `inspect` shows what there is).
 */
export function parseConfig(bytes: Buffer, digest: string, options: { requireRootfs?: boolean } = {}): ImageConfigJson {
  const what = `config ${digest}`;
  const json = parseJsonObject(bytes, what);
  checkRuntimeConfig(json['config'], `${what}: "config"`);
  for (const key of ['architecture', 'os', 'variant'] as const) {
    if (json[key] !== undefined && typeof json[key] !== 'string') throw new ManifestError(`${what}: "${key}" is not a string`);
  }
  const rootfs = json['rootfs'];
  if (options.requireRootfs === false && rootfs === undefined) return json as ImageConfigJson;
  if (!isRecord(rootfs)) throw new ManifestError(`${what}: no rootfs`);
  const { type, diff_ids: diffIds } = rootfs;
  if (type !== 'layers') throw new ManifestError(`${what}: rootfs type ${JSON.stringify(type)} is not "layers"`);
  if (!isStringList(diffIds)) throw new ManifestError(`${what}: rootfs.diff_ids is not a list of digests`);
  return json as ImageConfigJson;
}

/** The field kinds of the runtime config that anyone reads. */
const RUNTIME_FIELDS: ReadonlyArray<[keyof RuntimeConfigJson & string, 'string' | 'strings' | 'map' | 'labels']> = [
  ['User', 'string'],
  ['WorkingDir', 'string'],
  ['StopSignal', 'string'],
  ['Env', 'strings'],
  ['Entrypoint', 'strings'],
  ['Cmd', 'strings'],
  ['ExposedPorts', 'map'],
  ['Volumes', 'map'],
  ['Labels', 'labels'],
];

function checkRuntimeConfig(value: unknown, what: string): void {
  if (value === undefined || value === null) return;
  if (!isRecord(value)) throw new ManifestError(`${what} is not an object`);
  for (const [key, kind] of RUNTIME_FIELDS) {
    const field = value[key];
    // Docker writes null for an unset list or map; a string must be a string.
    if (field === undefined || (field === null && kind !== 'string')) continue;
    const ok =
      kind === 'string'
        ? typeof field === 'string'
        : kind === 'strings'
          ? isStringList(field)
          : kind === 'labels'
            ? isStringMap(field)
            : isRecord(field) && Object.values(field).every(isRecord);
    if (!ok) {
      const expected = { string: 'a string', strings: 'a list of strings', map: 'a map of objects', labels: 'a map of strings' }[kind];
      throw new ManifestError(`${what}.${key} is not ${expected} (${describe(field)})`);
    }
  }
}

/**
 * The platform of a single-platform image, from its config. Such an image is what the
 * user named; only an explicit platform checks it.
 */
export function singleImagePlatform(config: ImageConfigJson, what: string, explicit: Platform | undefined): Platform {
  const configPlatform = platformFromJson(config);
  if (configPlatform === undefined) throw new ManifestError(`${what}: no os/architecture`);
  if (explicit !== undefined && !platformMatches(explicit, configPlatform)) {
    throw new PlatformNotFoundError(formatPlatform(explicit), [formatPlatform(configPlatform)]);
  }
  return configPlatform;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isStringList(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string');
}

function isStringMap(value: unknown): value is Record<string, string> {
  return isRecord(value) && Object.values(value).every((item) => typeof item === 'string');
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  const text = JSON.stringify(value);
  return typeof value === 'string' ? `the string ${text.length > 40 ? `${text.slice(0, 40)}…"` : text}` : typeof value;
}
