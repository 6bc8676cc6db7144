/**
 * Registry authentication, the docker way: ping `GET /v2/` once; a 200 means anonymous, a
 * 401 carries the challenge. Bearer: fetch a token per scope from the realm (with Basic
 * credentials when we have them), cache it until `expires_in` (at least 60 s), and fetch it
 * again when the registry answers 401. Basic: send the credentials on every request.
 */
import type { Readable } from 'node:stream';
import { AbortError, AuthError, throwIfAborted } from '../errors.js';
import { findChallenge, parseChallenges, type Challenge } from './challenge.js';
import type { Credentials } from './credentials.js';
import {
  MAX_TOKEN_BYTES,
  readBodyCapped,
  redactUrl,
  responseError,
  type ResponseHeaders,
} from './http.js';

/** The requests the authenticator needs; the client provides them. */
export interface AuthTransport {
  /** `GET /v2/` on the registry, without credentials. */
  ping(signal?: AbortSignal): Promise<{ status: number; headers: ResponseHeaders; url: string }>;
  /** `GET` an absolute URL (the token realm). */
  get(
    url: URL,
    headers: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<{ status: number; headers: ResponseHeaders; body: Readable }>;
}

export interface AuthenticatorOptions {
  /** `host[:port]`, for messages. */
  registry: string;
  transport: AuthTransport;
  /** Looked up lazily, once: anonymous pulls never read the docker config. */
  credentials: (signal?: AbortSignal) => Promise<Credentials | undefined>;
  /** Whether credentials and token requests may go to this realm (scheme/host policy). */
  isRealmAllowed: (realm: URL) => boolean;
  now?: () => number;
}

/** The scope docker asks for to pull from `repository`. */
export function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}

/** The least lifetime we assume for a token (the distribution token spec's default). */
const MIN_TOKEN_SECONDS = 60;
/** Refresh a little early so a token does not expire between check and use. */
const EXPIRY_MARGIN_MS = 5_000;

type Scheme =
  | { kind: 'anonymous' }
  | { kind: 'basic' }
  | { kind: 'bearer'; realm: string; service: string | undefined };

interface CachedToken {
  token: string;
  expiresAt: number;
}

export class Authenticator {
  private scheme: Promise<Scheme> | undefined;
  private credentials: Promise<Credentials | undefined> | undefined;
  private readonly tokens = new Map<string, CachedToken>();
  private readonly inflight = new Map<string, Promise<CachedToken>>();
  private readonly now: () => number;

  constructor(private readonly options: AuthenticatorOptions) {
    this.now = options.now ?? Date.now;
  }

  /** The `Authorization` header value for a request in `scope`, or undefined for none. */
  async authorization(scope: string, signal?: AbortSignal): Promise<string | undefined> {
    const scheme = await this.resolveScheme(signal);
    if (scheme.kind === 'anonymous') return undefined;
    if (scheme.kind === 'basic') {
      const credentials = await this.getCredentials(signal);
      return credentials === undefined ? undefined : basicHeader(credentials);
    }
    const cached = this.tokens.get(scope);
    if (cached !== undefined && cached.expiresAt > this.now()) return `Bearer ${cached.token}`;
    for (let attempt = 0; ; attempt++) {
      let pending = this.inflight.get(scope);
      if (pending === undefined) {
        // Concurrent layer requests share one token request per scope.
        pending = this.fetchToken(scheme, scope, signal).finally(() => this.inflight.delete(scope));
        this.inflight.set(scope, pending);
      }
      try {
        const token = await pending;
        this.tokens.set(scope, token);
        return `Bearer ${token.token}`;
      } catch (error) {
        // The shared request was aborted by *another* caller's signal: ask again for ours.
        if (error instanceof AbortError && signal?.aborted !== true && attempt < 3) continue;
        throw error;
      }
    }
  }

  /**
   * A request in `scope` was answered 401: forget the token, and adopt the challenge of
   * that answer when it has one (the registry may ask for auth /v2/ did not ask for).
   */
  invalidate(scope: string, wwwAuthenticate?: string | readonly string[]): void {
    this.tokens.delete(scope);
    const scheme = schemeFromChallenges(parseChallenges(wwwAuthenticate));
    if (scheme !== undefined) this.scheme = Promise.resolve(scheme);
  }

  private resolveScheme(signal?: AbortSignal): Promise<Scheme> {
    if (this.scheme === undefined) {
      const attempt = this.ping(signal);
      this.scheme = attempt;
      // A failed ping (network, abort) must not stick: the next call pings again.
      attempt.catch(() => {
        if (this.scheme === attempt) this.scheme = undefined;
      });
    }
    return this.scheme;
  }

  private async ping(signal?: AbortSignal): Promise<Scheme> {
    const response = await this.options.transport.ping(signal);
    if (response.status !== 401) return { kind: 'anonymous' };
    const scheme = schemeFromChallenges(parseChallenges(response.headers['www-authenticate']));
    if (scheme === undefined) {
      throw new AuthError(`${this.options.registry}: 401 from ${redactUrl(response.url)} without a usable challenge`);
    }
    return scheme;
  }

  private getCredentials(signal?: AbortSignal): Promise<Credentials | undefined> {
    if (this.credentials === undefined) {
      const attempt = this.options.credentials(signal);
      this.credentials = attempt;
      attempt.catch(() => {
        if (this.credentials === attempt) this.credentials = undefined;
      });
    }
    return this.credentials;
  }

  private async fetchToken(
    scheme: Extract<Scheme, { kind: 'bearer' }>,
    scope: string,
    signal?: AbortSignal,
  ): Promise<CachedToken> {
    let url: URL;
    try {
      url = new URL(scheme.realm);
    } catch {
      throw new AuthError(`${this.options.registry}: token realm "${scheme.realm}" is not a URL`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new AuthError(`${this.options.registry}: token realm "${scheme.realm}" is not http(s)`);
    }
    if (!this.options.isRealmAllowed(url)) {
      throw new AuthError(
        `${this.options.registry}: refusing the plain-http token realm ${url.origin}` +
          ' (only https, loopback, or the registry host chosen for plain HTTP)',
      );
    }
    if (scheme.service !== undefined) url.searchParams.set('service', scheme.service);
    url.searchParams.set('scope', scope);

    const credentials = await this.getCredentials(signal);
    const headers: Record<string, string> = {};
    if (credentials !== undefined) headers['authorization'] = basicHeader(credentials);
    const response = await this.options.transport.get(url, headers, signal);
    const what = `token for ${scope} from ${url.origin}`;
    if (response.status < 200 || response.status >= 300) {
      const error = await responseError({ ...response, method: 'GET', url: url.toString(), what });
      if (response.status === 401 || response.status === 403) {
        throw new AuthError(
          `${this.options.registry}: the token service refused ${credentials === undefined ? 'an anonymous request' : `the credentials of "${credentials.username}"`} for ${scope}`,
          { cause: error },
        );
      }
      throw error;
    }
    const bytes = await readBodyCapped(
      response.body,
      MAX_TOKEN_BYTES,
      () => new AuthError(`${what}: token response larger than ${MAX_TOKEN_BYTES} bytes`),
      response.headers,
    );
    throwIfAborted(signal);
    return parseTokenResponse(bytes, what, this.now());
  }
}

/** Reads `token` or `access_token` and the lifetime out of a token response body. */
export function parseTokenResponse(bytes: Buffer, what: string, now: number): CachedToken {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new AuthError(`${what}: token response is not JSON`);
  }
  const body = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Record<string, unknown>;
  const token =
    typeof body['token'] === 'string' && body['token'] !== ''
      ? body['token']
      : typeof body['access_token'] === 'string' && body['access_token'] !== ''
        ? body['access_token']
        : undefined;
  if (token === undefined) throw new AuthError(`${what}: token response has no token`);
  const expiresIn =
    typeof body['expires_in'] === 'number' && Number.isFinite(body['expires_in'])
      ? Math.max(MIN_TOKEN_SECONDS, body['expires_in'])
      : MIN_TOKEN_SECONDS;
  return { token, expiresAt: now + expiresIn * 1000 - EXPIRY_MARGIN_MS };
}

function schemeFromChallenges(challenges: Challenge[]): Scheme | undefined {
  const bearer = findChallenge(challenges, 'bearer');
  const realm = bearer?.params['realm'];
  if (bearer !== undefined && realm !== undefined && realm !== '') {
    return { kind: 'bearer', realm, service: bearer.params['service'] };
  }
  if (findChallenge(challenges, 'basic') !== undefined) return { kind: 'basic' };
  return undefined;
}

function basicHeader(credentials: Credentials): string {
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
}
