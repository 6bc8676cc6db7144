/**
 * Blob bodies: `GET /v2/<name>/blobs/<digest>`, redirects followed by the client's agent.
 * The body is undici's Readable, so backpressure reaches the socket. Verification is the
 * caller's (a {@link DigestVerifier} downstream), so a resumed body keeps one hash state.
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { DigestMismatchError, ManifestError, RegistryError, SizeMismatchError } from '../errors.js';
import { isValidDigest, type ImageReference } from '../reference/index.js';
import type { RegistryClient } from './client.js';
import { discardBody, headerValue, readBodyCapped } from './http.js';
import type { OciRootfsError } from '../errors.js';

export interface BlobDescriptor {
  digest: string;
  size?: number;
}

export interface OpenBlobOptions {
  signal?: AbortSignal;
  /** Start at this byte (a resume): sends `Range` and insists on a matching 206. */
  offset?: number;
}

/** Opens the raw body of a blob; the caller must consume or destroy it. */
export async function openBlob(
  client: RegistryClient,
  ref: ImageReference,
  descriptor: BlobDescriptor,
  options: OpenBlobOptions = {},
): Promise<Readable> {
  const offset = options.offset ?? 0;
  const what = `blob ${descriptor.digest} of ${ref.registry}/${ref.repository}`;
  const response = await client.request({
    path: `/v2/${ref.repository}/blobs/${descriptor.digest}`,
    repository: ref.repository,
    headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
    what,
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
  if (offset > 0) {
    const range = headerValue(response.headers, 'content-range');
    const start = range === undefined ? undefined : /^bytes (\d+)-/.exec(range)?.[1];
    if (response.status !== 206 || start === undefined || Number(start) !== offset) {
      discardBody(response.body);
      throw new RegistryError(
        `${what}: asked to resume at byte ${offset}, got HTTP ${response.status}` +
          (range === undefined ? ' without Content-Range' : ` with Content-Range "${range}"`),
        { status: response.status, method: 'GET', url: response.url, retryable: false },
      );
    }
  }
  return response.body;
}

/**
 * Reads a small blob (a config) whole, refusing more than `maxBytes`, and checks its size
 * and digest before anyone parses it.
 */
export async function readBlob(
  client: RegistryClient,
  ref: ImageReference,
  descriptor: BlobDescriptor,
  maxBytes: number,
  tooLarge: (size: number | undefined) => OciRootfsError,
  options: { signal?: AbortSignal } = {},
): Promise<Buffer> {
  const body = await openBlob(client, ref, descriptor, options);
  const bytes = await readBodyCapped(body, maxBytes, tooLarge);
  const what = `blob ${descriptor.digest}`;
  if (descriptor.size !== undefined && bytes.length !== descriptor.size) {
    throw new SizeMismatchError(what, descriptor.size, bytes.length);
  }
  verifyDigest(bytes, descriptor.digest, what);
  return bytes;
}

/** sha256/sha384/sha512 of `bytes` in `algorithm:hex` form. */
export function digestOf(bytes: Uint8Array, algorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}

/** Throws {@link DigestMismatchError} unless `bytes` hash to `expected`. */
export function verifyDigest(bytes: Uint8Array, expected: string, what: string): void {
  if (!isValidDigest(expected)) throw new ManifestError(`${what}: cannot verify digest "${expected}"`);
  const algorithm = expected.slice(0, expected.indexOf(':'));
  const actual = digestOf(bytes, algorithm);
  if (actual !== expected) throw new DigestMismatchError(what, expected, actual, bytes.length);
}
