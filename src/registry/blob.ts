/**
 * Blob bodies: `GET /v2/<name>/blobs/<digest>`, redirects followed by the client's agent.
 * The body is undici's Readable, so backpressure reaches the socket. Verification is the
 * caller's (a {@link DigestVerifier} downstream), so a resumed body keeps one hash state.
 */
import type { Readable } from 'node:stream';
import { RegistryError, SizeMismatchError } from '../errors.js';
import { verifyDigest } from '../image/digest.js';
import type { ImageReference } from '../reference/index.js';
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
  options: OpenBlobPartOptions = {},
): Promise<Readable> {
  const offset = options.offset ?? 0;
  const part = await openBlobPart(client, ref, descriptor, options);
  if (part.start !== offset) {
    discardBody(part.body);
    throw new RegistryError(
      `${blobWhat(descriptor, ref)}: asked to resume at byte ${offset}, got the whole blob (HTTP 200)`,
      { status: 200, method: 'GET', url: part.url, retryable: false },
    );
  }
  return part.body;
}

export interface OpenBlobPartOptions extends OpenBlobOptions {
  /** Whether the client's retry policy applies (default true); a resuming caller retries itself. */
  retry?: boolean;
}

/** A blob body and the offset its first byte is at. */
export interface OpenedBlobPart {
  body: Readable;
  /** `offset` for a 206 whose Content-Range starts there; 0 when the server sent it all (200). */
  start: number;
  url: string;
}

/**
 * Opens a blob from `offset`. A 206 must say (Content-Range) that it starts at `offset`; a
 * 200 is a server that ignored the Range and sends the whole blob, which the caller may
 * still use by skipping what it already has. Any other answer is an error.
 */
export async function openBlobPart(
  client: RegistryClient,
  ref: ImageReference,
  descriptor: BlobDescriptor,
  options: OpenBlobPartOptions = {},
): Promise<OpenedBlobPart> {
  const offset = options.offset ?? 0;
  const what = blobWhat(descriptor, ref);
  const response = await client.request({
    path: `/v2/${ref.repository}/blobs/${descriptor.digest}`,
    repository: ref.repository,
    headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
    what,
    ...(options.retry === false ? { retry: false } : {}),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
  if (offset === 0 || response.status === 200) return { body: response.body, start: 0, url: response.url };
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
  return { body: response.body, start: offset, url: response.url };
}

function blobWhat(descriptor: BlobDescriptor, ref: ImageReference): string {
  return `blob ${descriptor.digest} of ${ref.registry}/${ref.repository}`;
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
  // Request and body under one retry: a body cut halfway is fetched again whole (it is small).
  const bytes = await client.retrySession(blobWhat(descriptor, ref), options.signal).run(async () => {
    const body = await openBlob(client, ref, descriptor, { ...options, retry: false });
    return readBodyCapped(body, maxBytes, tooLarge);
  });
  const what = `blob ${descriptor.digest}`;
  if (descriptor.size !== undefined && bytes.length !== descriptor.size) {
    throw new SizeMismatchError(what, descriptor.size, bytes.length);
  }
  verifyDigest(bytes, descriptor.digest, what);
  return bytes;
}
