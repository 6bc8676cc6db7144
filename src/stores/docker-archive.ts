/**
 * A `docker save` archive (`docker-archive:FILE[:REPO:TAG]`) as a source. Its
 * `manifest.json` (`[{ Config, RepoTags, Layers }]`) comes last in the tar and the layers
 * (base first in `Layers`) anywhere before, while the flattener wants the newest layer first:
 * so the archive must be a seekable regular file. One header-only pass indexes the members
 * (`tar-index.ts`); each layer is then a byte range of the file (`createReadStream` with
 * `start`/`end`), opened as often as the flattener asks.
 *
 * The store synthesises the Docker image manifest the archive implies (config and layer
 * descriptors), so the resolver reads it as it reads any other: its digest is that of our
 * JSON, not one a registry ever served.
 *
 * Layers are usually plain tars (`<id>/layer.tar`, or `blobs/sha256/<hex>` from Docker 25),
 * sometimes gzip or zstd: detected by magic bytes. Each is checked against the config's
 * `rootfs.diff_ids` (sha256 of the uncompressed tar) and against its stored digest: the one
 * its name says (`blobs/<alg>/<hex>`), for an uncompressed layer its diffID, else the
 * sha256 of its bytes taken when the store reads the archive (then it only guards against
 * the file changing under us). A config
 * named by its digest is verified as well.
 * Duplicate layers are stored once by `docker save` and linked (symlink or hardlink member):
 * links are followed inside the archive.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { posix } from 'node:path';
import { Readable } from 'node:stream';
import { ManifestError, MalformedArchiveError, NotFoundError, UsageError, throwIfAborted } from '../errors.js';
import { digestOf, verifyDigest } from '../image/digest.js';
import { MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, checkFetchedManifest, parseConfig } from '../image/manifest.js';
import { MediaType, type Compression } from '../image/media-types.js';
import type { Descriptor, LayerDescriptor } from '../image/types.js';
import { isValidDigest, parseReference } from '../reference/index.js';
import type { ImageStore, StoreRoot, StoredBlob } from './store.js';
import { indexTarFile, normaliseName, type TarIndexEntry } from './tar-index.js';

/** One image of `manifest.json`. */
interface ArchiveManifestEntry {
  Config: string;
  RepoTags: string[];
  Layers: string[];
}

/** Where a layer's bytes are in the archive. */
interface LocatedLayer {
  offset: number;
  size: number;
  /** The member it was read from (after links). */
  member: string;
}

/** What {@link dockerArchiveStore} learnt from one pass over the archive. */
interface ArchiveImage {
  root: StoreRoot;
  config: { digest: string; bytes: Buffer };
  layers: LocatedLayer[];
}

const MAX_LINK_HOPS = 8;

/**
 * The store of image `reference` (`REPO:TAG`, `@N`, or the only image) of the `docker save`
 * archive at `file`. The archive is indexed once, when the root is first asked for.
 *
 * @example
 * ```ts
 * const image = await resolveImage(dockerArchiveStore('alpine.tar', 'alpine:3.20'));
 * ```
 */
export function dockerArchiveStore(file: string, reference?: string): ImageStore {
  const name = `docker-archive:${file}${reference === undefined ? '' : `:${reference}`}`;
  let read: Promise<ArchiveImage> | undefined;
  const image = (signal?: AbortSignal): Promise<ArchiveImage> => {
    if (read === undefined) {
      const attempt = readArchive(file, reference, name, signal);
      read = attempt;
      attempt.catch(() => {
        if (read === attempt) read = undefined;
      });
    }
    return read;
  };
  return {
    kind: 'docker-archive',
    name,
    fetchesAhead: false,
    async root(signal) {
      return (await image(signal)).root;
    },
    async manifest(descriptor: Descriptor) {
      // The synthesised manifest is the only one; an archive has no index to walk.
      throw new NotFoundError(`${name}: no manifest ${descriptor.digest} (a docker save archive holds no index)`, { path: file });
    },
    async readBlob(descriptor, maxBytes, signal) {
      const { config } = await image(signal);
      if (descriptor.digest !== config.digest) throw new NotFoundError(`${name}: no blob ${descriptor.digest}`, { path: file });
      if (config.bytes.length > maxBytes) throw new ManifestError(`${name}: config larger than ${maxBytes} bytes`);
      return config.bytes;
    },
    async openLayer(_layer: LayerDescriptor, index: number, signal: AbortSignal): Promise<StoredBlob> {
      const located = (await image(signal)).layers[index];
      if (located === undefined) throw new ManifestError(`${name}: no layer ${index}`);
      return { body: rangeStream(file, located.offset, located.size) };
    },
    close: async () => undefined,
    destroy: async () => undefined,
  };
}

async function readArchive(file: string, reference: string | undefined, name: string, signal?: AbortSignal): Promise<ArchiveImage> {
  await checkSeekable(file, name);
  const index = await indexTarFile(file);
  throwIfAborted(signal);

  const manifestMember = index.get('manifest.json');
  if (manifestMember === undefined) {
    throw new ManifestError(`${name}: no manifest.json (not a docker save archive; an OCI layout archive must be unpacked and read with oci:)`);
  }
  const manifestBytes = await readMember(file, resolveMember(index, manifestMember, name), MAX_MANIFEST_BYTES, `${name}: manifest.json`);
  const images = parseArchiveManifest(manifestBytes, name);
  const picked = pickImage(images, reference, name, file);

  const configMember = lookup(index, picked.Config, name, `config ${picked.Config}`);
  const configBytes = await readMember(file, configMember, MAX_CONFIG_BYTES, `${name}: config ${picked.Config}`);
  const configNamedDigest = digestFromName(configMember.name);
  if (configNamedDigest !== undefined) verifyDigest(configBytes, configNamedDigest, `${name}: config ${picked.Config}`);
  const configDigest = digestOf(configBytes);
  const diffIds = parseConfig(configBytes, configDigest).rootfs.diff_ids;

  const layers: LocatedLayer[] = [];
  const descriptors: Descriptor[] = [];
  for (const [i, layerName] of picked.Layers.entries()) {
    throwIfAborted(signal);
    const member = lookup(index, layerName, name, `layer ${i} (${layerName})`);
    const compression = await sniffCompression(file, member);
    layers.push({ offset: member.offset, size: member.size, member: member.name });
    descriptors.push({
      mediaType: LAYER_MEDIA_TYPE[compression],
      // The digest of a layer as stored: its name says it (Docker 25); an uncompressed layer's
      // is its diffID; only a compressed layer with neither costs a pass over its bytes.
      digest:
        digestFromName(member.name) ??
        (compression === 'none' && diffIds[i] !== undefined ? diffIds[i] : await hashRange(file, member.offset, member.size)),
      size: member.size,
    });
  }
  // The Docker image manifest this archive implies; the resolver judges it as any other.
  const manifest = {
    schemaVersion: 2,
    mediaType: MediaType.dockerManifest,
    config: { mediaType: MediaType.dockerConfig, digest: configDigest, size: configBytes.length },
    layers: descriptors,
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  return {
    root: { kind: 'manifest', manifest: checkFetchedManifest(bytes, MediaType.dockerManifest, undefined, `${name}: manifest.json`) },
    config: { digest: configDigest, bytes: configBytes },
    layers,
  };
}

const LAYER_MEDIA_TYPE: Record<Compression, string> = {
  gzip: MediaType.dockerLayerGzip,
  zstd: MediaType.ociLayerZstd,
  none: MediaType.dockerLayer,
};

async function hashRange(file: string, offset: number, size: number): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of rangeStream(file, offset, size)) hash.update(chunk as Buffer);
  return `sha256:${hash.digest('hex')}`;
}

/** A pipe, a FIFO or a terminal cannot be read twice or out of order. */
async function checkSeekable(file: string, name: string): Promise<void> {
  let stats;
  try {
    stats = await stat(file);
  } catch (error) {
    throw new UsageError(`${name}: cannot read ${file}`, { cause: error });
  }
  if (!stats.isFile()) {
    throw new UsageError(
      `${name}: ${file} is not a regular file; a docker save archive must be a seekable file ` +
        '(its manifest comes last and the layers are read newest first), so save it to a file first',
    );
  }
}

function parseArchiveManifest(bytes: Buffer, name: string): ArchiveManifestEntry[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw new ManifestError(`${name}: manifest.json is not JSON`, { cause: error });
  }
  if (!Array.isArray(parsed) || parsed.length === 0) throw new ManifestError(`${name}: manifest.json is not a non-empty list`);
  return parsed.map((item: unknown, i): ArchiveManifestEntry => {
    const record = typeof item === 'object' && item !== null ? (item as Record<string, unknown>) : {};
    const { Config, RepoTags, Layers } = record;
    if (typeof Config !== 'string') throw new ManifestError(`${name}: manifest.json entry ${i} has no Config`);
    if (!Array.isArray(Layers) || !Layers.every((layer): layer is string => typeof layer === 'string')) {
      throw new ManifestError(`${name}: manifest.json entry ${i}: Layers is not a list of paths`);
    }
    const tags = Array.isArray(RepoTags) ? RepoTags.filter((tag): tag is string => typeof tag === 'string') : [];
    return { Config, RepoTags: tags, Layers };
  });
}

/** `REPO:TAG` (as written, or the same reference normalised), `@N`, or the only image. */
function pickImage(images: ArchiveManifestEntry[], reference: string | undefined, name: string, file: string): ArchiveManifestEntry {
  const all = images.flatMap((image) => image.RepoTags);
  if (reference === undefined) {
    if (images.length === 1) return images[0]!;
    throw new UsageError(
      `${name}: the archive holds ${images.length} images; name one (docker-archive:FILE:REPO:TAG or :@N)` +
        (all.length > 0 ? `: ${all.join(', ')}` : ''),
    );
  }
  const position = /^@(\d+)$/.exec(reference);
  if (position !== null) {
    const image = images[Number(position[1])];
    if (image === undefined) throw new UsageError(`${name}: the archive holds ${images.length} images (@0 to @${images.length - 1})`);
    return image;
  }
  const exact = images.find((image) => image.RepoTags.includes(reference));
  if (exact !== undefined) return exact;
  const normal = normaliseTag(reference);
  const same = normal === undefined ? undefined : images.find((image) => image.RepoTags.some((tag) => normaliseTag(tag) === normal));
  if (same !== undefined) return same;
  throw new NotFoundError(`${name}: no image tagged ${reference} in the archive${all.length > 0 ? ` (it has ${all.join(', ')})` : ''}`, {
    path: file,
  });
}

function normaliseTag(tag: string): string | undefined {
  try {
    return parseReference(tag).toString();
  } catch {
    return undefined;
  }
}

function lookup(index: Map<string, TarIndexEntry>, path: string, name: string, what: string): TarIndexEntry {
  const entry = index.get(normaliseName(path));
  if (entry === undefined) throw new ManifestError(`${name}: ${what} is not in the archive`);
  return resolveMember(index, entry, name);
}

/** Follows symlink and hardlink members (docker save links duplicate layers) to a file. */
function resolveMember(index: Map<string, TarIndexEntry>, entry: TarIndexEntry, name: string): TarIndexEntry {
  let current = entry;
  for (let hop = 0; hop <= MAX_LINK_HOPS; hop++) {
    if (current.type === 'file') return current;
    if (current.type !== 'symlink' && current.type !== 'link') {
      throw new ManifestError(`${name}: ${entry.name} is not a file in the archive`);
    }
    const target =
      current.type === 'link'
        ? normaliseName(current.linkname)
        : normaliseName(posix.join(posix.dirname(current.name), current.linkname));
    const next = index.get(target);
    if (next === undefined) throw new ManifestError(`${name}: ${current.name} links to ${current.linkname}, which is not in the archive`);
    current = next;
  }
  throw new ManifestError(`${name}: too many links from ${entry.name}`);
}

/** `blobs/sha256/<hex>` names its digest; `<hex>.json` (a config) does too. */
function digestFromName(member: string): string | undefined {
  const blob = /^blobs\/([a-z0-9]+)\/([a-f0-9]+)$/.exec(member);
  if (blob !== null) {
    const digest = `${blob[1]}:${blob[2]}`;
    return isValidDigest(digest) ? digest : undefined;
  }
  const config = /^([a-f0-9]{64})\.json$/.exec(member);
  return config === null ? undefined : `sha256:${config[1]}`;
}

async function readMember(file: string, entry: TarIndexEntry, maxBytes: number, what: string): Promise<Buffer> {
  if (entry.size > maxBytes) throw new ManifestError(`${what}: larger than ${maxBytes} bytes (${entry.size})`);
  const handle = await open(file, 'r');
  try {
    const bytes = Buffer.alloc(entry.size);
    const { bytesRead } = await handle.read(bytes, 0, entry.size, entry.offset);
    if (bytesRead !== entry.size) throw new MalformedArchiveError(`${what}: the archive ends inside it`);
    return bytes;
  } finally {
    await handle.close();
  }
}

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

async function sniffCompression(file: string, entry: TarIndexEntry): Promise<Compression> {
  const head = await readMember(file, { ...entry, size: Math.min(4, entry.size) }, 4, entry.name);
  if (head.subarray(0, 2).equals(GZIP_MAGIC)) return 'gzip';
  if (head.equals(ZSTD_MAGIC)) return 'zstd';
  return 'none';
}

function rangeStream(file: string, offset: number, size: number): Readable {
  // `end` is inclusive; an empty range would read to the end of the file.
  if (size === 0) return Readable.from([]);
  return createReadStream(file, { start: offset, end: offset + size - 1 });
}
