/**
 * An OCI image layout directory (`oci:DIR[:TAG]`, image-spec `image-layout.md`) as a
 * source: `oci-layout`, `index.json`, `blobs/<alg>/<hex>`. The tag picks the `index.json`
 * entries whose `org.opencontainers.image.ref.name` equals it; without a tag every entry
 * is a candidate. Then the registry rules apply: nested indexes are followed with the same
 * platform pick, the image manifest and its layers are checked by the same code
 * (`checkImageManifest`, `withDiffIds`), and every blob is verified against its
 * descriptor (manifests and config when read, layers at EOF of each pass, diffID too).
 */
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  ManifestError,
  NotFoundError,
  SizeMismatchError,
  UsageError,
  throwIfAborted,
} from '../errors.js';
import type { FlattenLayer } from '../flatten/flatten.js';
import { isValidDigest } from '../reference/index.js';
import { verifyDigest } from '../registry/blob.js';
import { openForeignBlob } from '../registry/foreign.js';
import { MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES } from '../registry/http.js';
import {
  checkImageManifest,
  manifestMediaType,
  parseConfig,
  parseDescriptor,
  parseJsonObject,
  singleImagePlatform,
  withDiffIds,
  type Descriptor,
} from '../registry/manifest.js';
import { isImageManifestMediaType, isIndexMediaType, isSchema1MediaType } from '../registry/media-types.js';
import { defaultPlatform, platformFromJson, platformOption, selectPlatform, type Platform } from '../registry/platform.js';
import { verifiedLayerStream } from './layer-stream.js';
import type { OpenSourceOptions, OpenedSource, SourceImage, SourceLayer } from './types.js';

/** The annotation that names an `index.json` entry (a tag, or a whole reference). */
export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';

const MAX_INDEX_DEPTH = 4;

/**
 * Opens the image `tag` (or the only / best-platform image) of the layout at `dir`.
 *
 * @example
 * ```ts
 * const { image, layers } = await openOciLayout('./alpine-oci', 'latest');
 * await pipeline(Readable.from(flattenLayers(layers)), createWriteStream('rootfs.tar'));
 * ```
 */
export async function openOciLayout(dir: string, tag?: string, options: OpenSourceOptions = {}): Promise<OpenedSource> {
  const { signal } = options;
  const name = `oci:${dir}${tag === undefined ? '' : `:${tag}`}`;
  const explicit = platformOption(options.platform);
  await checkLayoutMarker(dir);

  const indexBytes = await readCapped(join(dir, 'index.json'), MAX_MANIFEST_BYTES, `${name}: index.json`);
  const index = parseJsonObject(indexBytes, `${name}: index.json`);
  const rawEntries = index['manifests'];
  if (!Array.isArray(rawEntries)) throw new ManifestError(`${name}: index.json has no "manifests" list`);
  const entries = rawEntries.map((entry, i) => parseDescriptor(entry, `${name}: index.json entry ${i}`));
  let candidates = entries;
  if (tag !== undefined) {
    candidates = entries.filter((entry) => entry.annotations?.[REF_NAME_ANNOTATION] === tag);
    if (candidates.length === 0) {
      const names = entries.map((entry) => entry.annotations?.[REF_NAME_ANNOTATION]).filter((n) => n !== undefined);
      throw new NotFoundError(
        `${name}: no image named "${tag}" in index.json` + (names.length > 0 ? ` (it has ${names.join(', ')})` : ' (no entry has a name)'),
        { status: 404, method: 'READ', url: join(dir, 'index.json') },
      );
    }
  }
  if (candidates.length === 0) throw new ManifestError(`${name}: index.json lists no image`);

  throwIfAborted(signal);
  let picked: Platform | undefined;
  let entry: Descriptor;
  if (candidates.length === 1) {
    entry = candidates[0]!;
  } else {
    const selected = selectPlatform(candidates, explicit ?? defaultPlatform());
    entry = selected.entry;
    picked = selected.platform;
  }
  if (picked === undefined && explicit === undefined) {
    // A single entry with a platform says which; the config says it otherwise.
    picked = platformFromJson(entry.platform);
  }

  let indexDigest: string | undefined;
  let manifest = await readManifestBlob(dir, entry, name);
  for (let depth = 0; isIndexMediaType(manifest.mediaType); depth++) {
    if (depth >= MAX_INDEX_DEPTH) throw new ManifestError(`${name}: indexes nested too deep`);
    indexDigest ??= entry.digest;
    const nested = manifest.json['manifests'];
    if (!Array.isArray(nested)) throw new ManifestError(`index ${entry.digest}: "manifests" is not a list`);
    const nestedEntries = nested.map((item, i) => parseDescriptor(item, `index ${entry.digest} entry ${i}`));
    const selected = selectPlatform(nestedEntries, explicit ?? defaultPlatform());
    entry = selected.entry;
    picked = selected.platform;
    throwIfAborted(signal);
    manifest = await readManifestBlob(dir, entry, name);
  }
  if (isSchema1MediaType(manifest.mediaType) || !isImageManifestMediaType(manifest.mediaType)) {
    throw new ManifestError(`${name}: ${entry.digest} is not an image manifest (${manifest.mediaType})`);
  }

  const what = `manifest ${entry.digest}`;
  const checked = checkImageManifest(manifest.json, what, name, { allowForeign: true });
  const configBytes = await readBlobFile(dir, checked.config, MAX_CONFIG_BYTES, `config ${checked.config.digest}`);
  const config = parseConfig(configBytes, checked.config.digest);
  picked ??= singleImagePlatform(config, `config ${checked.config.digest}`, explicit);
  const layers = withDiffIds(checked.layers, config, what);

  const sourceLayers = layers.map((layer): SourceLayer => ({
    digest: layer.digest,
    size: layer.size,
    mediaType: layer.mediaType,
    compression: layer.compression,
    diffId: layer.diffId ?? '',
    ...(layer.urls === undefined ? {} : { urls: layer.urls }),
  }));
  const image: SourceImage = {
    source: { kind: 'oci', path: dir, ...(tag === undefined ? {} : { tag }) },
    ...(indexDigest === undefined ? {} : { indexDigest }),
    manifestDigest: entry.digest,
    manifestMediaType: manifest.mediaType,
    platform: picked,
    config: { digest: checked.config.digest, mediaType: checked.config.mediaType, size: checked.config.size, json: config },
    layers: sourceLayers,
  };
  const allowForeign = options.allowForeign === true;
  const flattenLayers = sourceLayers.map(
    (layer, index): FlattenLayer => ({
      index,
      name: layer.digest ?? layer.diffId,
      open: (openSignal: AbortSignal) => openLayoutLayer(dir, layer, index, openSignal, allowForeign),
    }),
  );
  return { image, layers: flattenLayers };
}

/** The path of a blob inside the layout; the digest must be valid (it becomes a file name). */
export function blobPath(dir: string, digest: string): string {
  if (!isValidDigest(digest)) throw new ManifestError(`invalid digest ${JSON.stringify(digest)}`);
  const colon = digest.indexOf(':');
  return join(dir, 'blobs', digest.slice(0, colon), digest.slice(colon + 1));
}

async function openLayoutLayer(
  dir: string,
  layer: SourceLayer,
  index: number,
  signal: AbortSignal,
  allowForeign: boolean,
): Promise<Readable> {
  const digest = layer.digest ?? '';
  const what = `layer ${index} (${digest})`;
  const path = blobPath(dir, digest);
  let raw: Readable;
  if (await isFile(path)) {
    raw = createReadStream(path);
  } else if (layer.urls !== undefined && allowForeign) {
    raw = await openForeignBlob(layer.urls, { digest, size: layer.size }, { signal });
  } else {
    throw new NotFoundError(
      `${what}: blob not in the layout (${path})` + (layer.urls === undefined ? '' : '; it is a foreign layer, allow foreign layers to fetch it'),
      { status: 404, method: 'READ', url: path },
    );
  }
  return verifiedLayerStream(
    raw,
    { digest, size: layer.size, compression: layer.compression, diffId: layer.diffId, what },
    signal,
  );
}

async function checkLayoutMarker(dir: string): Promise<void> {
  let text: string;
  try {
    text = await readFile(join(dir, 'oci-layout'), 'utf8');
  } catch (error) {
    throw new UsageError(`oci:${dir} is not an OCI image layout (no readable oci-layout file)`, { cause: error });
  }
  let version: unknown;
  try {
    version = (JSON.parse(text) as Record<string, unknown>)['imageLayoutVersion'];
  } catch (error) {
    throw new ManifestError(`oci:${dir}: oci-layout is not JSON`, { cause: error });
  }
  if (typeof version !== 'string' || !/^1\./.test(version)) {
    throw new ManifestError(`oci:${dir}: unsupported imageLayoutVersion ${JSON.stringify(version)}`);
  }
}

interface LayoutManifest {
  mediaType: string;
  json: Record<string, unknown>;
}

async function readManifestBlob(dir: string, descriptor: Descriptor, name: string): Promise<LayoutManifest> {
  const what = `manifest ${descriptor.digest}`;
  const bytes = await readBlobFile(dir, descriptor, MAX_MANIFEST_BYTES, what);
  const json = parseJsonObject(bytes, what);
  // The descriptor's media type is what the layout says; the body's own shape backs it up.
  const mediaType = manifestMediaType(descriptor.mediaType, json);
  if (mediaType === undefined) throw new ManifestError(`${name}: ${what} is of unknown type ${descriptor.mediaType}`);
  return { mediaType, json };
}

/** Reads a small blob whole and checks its size and digest against the descriptor. */
async function readBlobFile(dir: string, descriptor: Descriptor, maxBytes: number, what: string): Promise<Buffer> {
  if (descriptor.size > maxBytes) throw new ManifestError(`${what}: larger than ${maxBytes} bytes (${descriptor.size})`);
  const bytes = await readCapped(blobPath(dir, descriptor.digest), maxBytes, what);
  if (bytes.length !== descriptor.size) throw new SizeMismatchError(what, descriptor.size, bytes.length);
  verifyDigest(bytes, descriptor.digest, what);
  return bytes;
}

async function readCapped(path: string, maxBytes: number, what: string): Promise<Buffer> {
  let size: number;
  try {
    const stats = await stat(path);
    if (!stats.isFile()) throw new ManifestError(`${what}: ${path} is not a file`);
    size = stats.size;
  } catch (error) {
    if (error instanceof ManifestError) throw error;
    throw new NotFoundError(`${what}: cannot read ${path}`, { status: 404, method: 'READ', url: path, cause: error });
  }
  if (size > maxBytes) throw new ManifestError(`${what}: larger than ${maxBytes} bytes (${size})`);
  return readFile(path);
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}
