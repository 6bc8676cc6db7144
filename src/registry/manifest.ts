/**
 * Manifests over HTTP: `GET` one with every Accept type we read (Content-Type trusted,
 * the digest checked when asked by digest), `HEAD` one (costs no Docker Hub pull), and
 * `HEAD` a blob for its size (schema 1 lists none). What the bytes mean is the image
 * model's (`image/manifest.ts`); walking from a reference to an image is the resolver's.
 */
import { ManifestError } from '../errors.js';
import { checkFetchedManifest, manifestMediaType, MAX_MANIFEST_BYTES } from '../image/manifest.js';
import { MANIFEST_ACCEPT } from '../image/media-types.js';
import type { FetchedManifest } from '../image/types.js';
import { isValidDigest, manifestReference, type ImageReference } from '../reference/index.js';
import type { RegistryClient } from './client.js';
import { discardBody, headerValue, readBodyCapped } from './http.js';

export interface FetchManifestOptions {
  signal?: AbortSignal;
}

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
 */
export async function headManifest(
  client: RegistryClient,
  ref: ImageReference,
  options: FetchManifestOptions = {},
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

/** `HEAD /v2/<name>/blobs/<digest>`: the blob's size from Content-Length. */
export async function blobSize(
  client: RegistryClient,
  ref: ImageReference,
  digest: string,
  options: FetchManifestOptions = {},
): Promise<number> {
  const what = `blob ${digest} of ${ref.registry}/${ref.repository}`;
  const response = await client.request({
    path: `/v2/${ref.repository}/blobs/${digest}`,
    repository: ref.repository,
    method: 'HEAD',
    what,
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
  discardBody(response.body);
  const length = headerValue(response.headers, 'content-length');
  const size = length === undefined ? Number.NaN : Number(length);
  if (!/^\d+$/.test(length ?? '') || !Number.isSafeInteger(size)) {
    throw new ManifestError(`${what}: HEAD gave no usable Content-Length (${JSON.stringify(length)}); schema 1 has no layer sizes`);
  }
  return size;
}
