/**
 * Foreign / non-distributable layers: blobs a manifest says are served from `urls` rather
 * than by the registry (Windows base layers, licensed content). Pulled only when asked
 * (`ResolveImageOptions.allowForeign`).
 *
 * The URLs are tried in order and the first 200 wins. They are arbitrary hosts the manifest
 * names, so no registry credential is ever sent to them (no Authorization, no cookies, URLs
 * with userinfo are refused), only http and https are allowed, and redirects are followed by
 * undici's redirect interceptor. The body is returned raw: size and digest are checked
 * downstream by the same {@link DigestVerifier} as a registry blob, so a URL that serves the
 * wrong bytes fails the layer as an integrity error.
 */
import type { Readable } from 'node:stream';
import { Agent, interceptors, request, type Dispatcher } from 'undici';
import { AbortError, NetworkError, NotFoundError, RegistryError, SizeMismatchError } from '../errors.js';
import { discardBody, headerValue, redactUrl, toTransportError } from './http.js';

export interface ForeignBlobDescriptor {
  digest: string;
  size?: number;
}

export interface OpenForeignBlobOptions {
  signal?: AbortSignal;
  /** Use this dispatcher (it should follow redirects itself); default: an own Agent per call. */
  dispatcher?: Dispatcher;
  /** Redirects to follow with the own Agent (default 5). */
  maxRedirections?: number;
  /** Connect, header and body-silence timeout of the own Agent (default 30 s). */
  timeoutMs?: number;
  userAgent?: string;
}

const DEFAULT_TIMEOUT_MS = 30_000;

/**
 * Opens the body of a foreign blob from the first of `urls` that answers 200. The caller
 * must consume or destroy it, and verify it (size and digest).
 *
 * @example
 * ```ts
 * const body = await openForeignBlob(layer.urls, layer, { signal });
 * await pipeline(body, verifyDigestStream({ digest: layer.digest, size: layer.size }), sink);
 * ```
 */
export async function openForeignBlob(
  urls: readonly string[],
  descriptor: ForeignBlobDescriptor,
  options: OpenForeignBlobOptions = {},
): Promise<Readable> {
  const what = `foreign blob ${descriptor.digest}`;
  if (urls.length === 0) throw new RegistryError(`${what}: no URL to fetch it from`, { status: 0, method: 'GET', url: '' });
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const ownAgent =
    options.dispatcher === undefined
      ? new Agent({ connect: { timeout: timeoutMs }, headersTimeout: timeoutMs, bodyTimeout: timeoutMs })
      : undefined;
  const dispatcher =
    options.dispatcher ??
    ownAgent!.compose(interceptors.redirect({ maxRedirections: options.maxRedirections ?? 5 }));
  const failures: Error[] = [];
  try {
    for (const url of urls) {
      const refused = refuseUrl(url);
      if (refused !== undefined) {
        failures.push(new RegistryError(`${redactUrl(url)}: ${refused}`, { status: 0, method: 'GET', url: redactUrl(url) }));
        continue;
      }
      let response: Dispatcher.ResponseData;
      try {
        response = await request(url, {
          method: 'GET',
          // Deliberately nothing but the user agent: these hosts get no credential of ours.
          headers: { 'user-agent': options.userAgent ?? 'oci-rootfs' },
          dispatcher,
          ...(options.signal === undefined ? {} : { signal: options.signal }),
        });
      } catch (error) {
        if (options.signal?.aborted === true) throw new AbortError({ cause: options.signal.reason });
        failures.push(toTransportError(error, `${what} (${redactUrl(url)})`));
        continue;
      }
      if (response.statusCode !== 200) {
        discardBody(response.body);
        const init = { status: response.statusCode, method: 'GET', url: redactUrl(url) };
        failures.push(
          response.statusCode === 404
            ? new NotFoundError(`${redactUrl(url)}: not found`, init)
            : new RegistryError(`${redactUrl(url)}: HTTP ${response.statusCode}`, {
                ...init,
                retryable: response.statusCode >= 500,
              }),
        );
        continue;
      }
      const length = headerValue(response.headers, 'content-length');
      if (descriptor.size !== undefined && length !== undefined && Number(length) !== descriptor.size) {
        discardBody(response.body);
        failures.push(new SizeMismatchError(`${what} at ${redactUrl(url)}`, descriptor.size, Number(length)));
        continue;
      }
      if (ownAgent !== undefined) {
        response.body.once('close', () => void ownAgent.close());
      }
      return response.body;
    }
  } catch (error) {
    if (ownAgent !== undefined) void ownAgent.close();
    throw error;
  }
  if (ownAgent !== undefined) void ownAgent.close();
  const message = `${what}: no URL served it (${failures.map((failure) => failure.message).join('; ')})`;
  // Every URL missing is "not found"; anything else is a network-class failure.
  if (failures.every((failure) => failure instanceof NotFoundError)) {
    throw new NotFoundError(message, { status: 404, method: 'GET', url: redactUrl(urls[0] ?? '') });
  }
  throw new NetworkError(message, { cause: failures[failures.length - 1] });
}

/** Why a URL is not fetched, or undefined when it may be. */
function refuseUrl(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'not a URL';
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return `scheme ${parsed.protocol} is not http or https`;
  if (parsed.username !== '' || parsed.password !== '') return 'URLs with credentials are refused';
  return undefined;
}
