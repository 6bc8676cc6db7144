/**
 * An OCI image layout directory (`oci:DIR[:TAG]`, image-spec `image-layout.md`) as an
 * {@link ImageStore}: `oci-layout`, `index.json`, `blobs/<alg>/<hex>`. The tag picks the
 * `index.json` entries whose `org.opencontainers.image.ref.name` equals it; without a tag
 * every entry is a candidate. From there the resolver walks as for a registry, and every
 * blob is checked against its descriptor (size and digest when read; layers at EOF).
 */
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ManifestError, NotFoundError, SizeMismatchError, UsageError } from '../errors.js';
import { verifyDigest } from '../image/digest.js';
import { MAX_MANIFEST_BYTES, checkFetchedManifest, indexEntries, parseJsonObject } from '../image/manifest.js';
import type { Descriptor, LayerDescriptor } from '../image/types.js';
import { isValidDigest } from '../reference/index.js';
import { openForeignBlob } from '../registry/foreign.js';
import type { ImageStore, StoreRoot, StoredBlob } from './store.js';

/** The annotation that names an `index.json` entry (a tag, or a whole reference). */
export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';

export interface OciLayoutStoreOptions {
  /** Fetch foreign layers the layout does not hold from their `urls`. */
  allowForeign?: boolean;
}

/**
 * The store of image `tag` (or of every image, picked from by platform) in the layout at `dir`.
 *
 * @example
 * ```ts
 * const image = await resolveImage(ociLayoutStore('./alpine-oci', 'latest'));
 * ```
 */
export function ociLayoutStore(dir: string, tag?: string, options: OciLayoutStoreOptions = {}): ImageStore {
  const name = `oci:${dir}${tag === undefined ? '' : `:${tag}`}`;
  return {
    kind: 'oci',
    name,
    fetchesAhead: false,
    mayHoldForeignLayers: true,
    async root(): Promise<StoreRoot> {
      await checkLayoutMarker(dir);
      const indexPath = join(dir, 'index.json');
      const what = `${name}: index.json`;
      const entries = indexEntries(parseJsonObject(await readCapped(indexPath, MAX_MANIFEST_BYTES, what), what), what);
      if (tag === undefined) return { kind: 'entries', entries, what };
      const tagged = entries.filter((entry) => entry.annotations?.[REF_NAME_ANNOTATION] === tag);
      if (tagged.length === 0) {
        const names = entries.map((entry) => entry.annotations?.[REF_NAME_ANNOTATION]).filter((n) => n !== undefined);
        throw new NotFoundError(
          `${name}: no image named "${tag}" in index.json` + (names.length > 0 ? ` (it has ${names.join(', ')})` : ' (no entry has a name)'),
          { path: indexPath },
        );
      }
      return { kind: 'entries', entries: tagged, what };
    },
    async manifest(descriptor: Descriptor) {
      const what = `manifest ${descriptor.digest}`;
      const bytes = await readBlobFile(dir, descriptor, MAX_MANIFEST_BYTES, what);
      // The descriptor's media type is what the layout says; the body's own shape backs it up.
      return checkFetchedManifest(bytes, descriptor.mediaType, descriptor.digest, `${name}: ${what}`);
    },
    readBlob(descriptor, maxBytes) {
      return readBlobFile(dir, descriptor, maxBytes, `blob ${descriptor.digest}`);
    },
    async openLayer(layer: LayerDescriptor, index: number, signal: AbortSignal): Promise<StoredBlob> {
      const path = blobPath(dir, layer.digest);
      if (await isFile(path)) return { body: createReadStream(path) };
      if (layer.urls !== undefined && options.allowForeign === true) {
        return { body: await openForeignBlob(layer.urls, { digest: layer.digest, size: layer.size }, { signal }) };
      }
      throw new NotFoundError(
        `layer ${index} (${layer.digest}): blob not in the layout (${path})` +
          (layer.urls === undefined ? '' : '; it is a foreign layer, allow foreign layers to fetch it'),
        { path },
      );
    },
    close: async () => undefined,
    destroy: async () => undefined,
  };
}

/** The path of a blob inside the layout; the digest must be valid (it becomes a file name). */
export function blobPath(dir: string, digest: string): string {
  if (!isValidDigest(digest)) throw new ManifestError(`invalid digest ${JSON.stringify(digest)}`);
  const colon = digest.indexOf(':');
  return join(dir, 'blobs', digest.slice(0, colon), digest.slice(colon + 1));
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

/** Reads a small blob whole and checks its size and digest against the descriptor. */
async function readBlobFile(dir: string, descriptor: { digest: string; size?: number }, maxBytes: number, what: string): Promise<Buffer> {
  if (descriptor.size !== undefined && descriptor.size > maxBytes) {
    throw new ManifestError(`${what}: larger than ${maxBytes} bytes (${descriptor.size})`);
  }
  const bytes = await readCapped(blobPath(dir, descriptor.digest), maxBytes, what);
  if (descriptor.size !== undefined && bytes.length !== descriptor.size) throw new SizeMismatchError(what, descriptor.size, bytes.length);
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
    throw new NotFoundError(`${what}: cannot read ${path}`, { path, cause: error });
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
