/**
 * Registry authentication, the docker way: ping `GET /v2/` once; a 200 means anonymous, a
 * 401 carries the challenge. Bearer: fetch a token per scope from the realm (with Basic
 * credentials when we have them), cache it until `expires_in` (at least 60 s), and fetch it
 * again when the registry answers 401. Basic: send the credentials on every request.
 *
 * A registry may want more than the pull scope of the repository (a mount, a registry that
 * scopes per catalog): a 401/403 whose challenge says `error="insufficient_scope"` and names
 * `scope`s adds them, and the next token is asked for the union (`scope` repeated, as the
 * distribution token spec has it). An identity token (OAuth2 refresh token) is exchanged by
 * `POST`ing `grant_type=refresh_token` to the realm, as docker does; it never goes out as Basic.
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
import { SharedAttempt } from './shared-attempt.js';

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
  /** `POST` a form to an absolute URL (the OAuth2 token endpoint). */
  post(
    url: URL,
    headers: Record<string, string>,
    body: string,
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

/** The `client_id` we send with OAuth2 requests, as docker sends `docker`. */
export const OAUTH_CLIENT_ID = 'oci-rootfs';

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
  /** An OAuth2 answer's new refresh token, if it sent one. */
  refreshToken?: string;
}

export class Authenticator {
  /** What the registry's ping asked for; shared by every request, tied to none's signal. */
  private readonly scheme = new SharedAttempt<Scheme>((signal) => this.ping(signal));
  private readonly credentials = new SharedAttempt<Credentials | undefined>((signal) => this.options.credentials(signal));
  /** Tokens by the space-joined sorted scopes they were asked for. */
  private readonly tokens = new Map<string, CachedToken>();
  /** Token requests in flight: concurrent layer requests share one per scope. */
  private readonly inflight = new Map<string, SharedAttempt<CachedToken>>();
  /** Scopes a registry asked for beyond a request's own, by that request's scope. */
  private readonly extraScopes = new Map<string, Set<string>>();
  /** The refresh token a token endpoint handed back last, replacing the configured one. */
  private refreshToken: string | undefined;
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
      if (credentials?.identityToken !== undefined) {
        throw new AuthError(`${this.options.registry}: an identity token needs token auth, and the registry asks for Basic auth`);
      }
      return credentials === undefined ? undefined : basicHeader(credentials);
    }
    const scopes = this.scopesFor(scope);
    const key = scopes.join(' ');
    const cached = this.tokens.get(key);
    if (cached !== undefined && cached.expiresAt > this.now()) return `Bearer ${cached.token}`;
    let pending = this.inflight.get(key);
    if (pending === undefined) {
      const shared = new SharedAttempt<CachedToken>((shareSignal) => this.fetchToken(scheme, scopes, shareSignal));
      pending = shared;
      this.inflight.set(key, shared);
    }
    try {
      const token = await pending.get(signal);
      this.tokens.set(key, token);
      return `Bearer ${token.token}`;
    } finally {
      // Fetched or failed, the next request after this one goes by the cache, or asks anew.
      if (this.inflight.get(key) === pending && pending.settledOrIdle()) this.inflight.delete(key);
    }
  }

  /**
   * A request in `scope` was answered 401 (or 403): forget the token, and adopt the
   * challenge of that answer when it has one (the registry may ask for auth /v2/ did not
   * ask for). The scopes the challenge names join the request's for the next token.
   */
  invalidate(scope: string, wwwAuthenticate?: string | readonly string[]): void {
    this.tokens.delete(this.scopesFor(scope).join(' '));
    const challenges = parseChallenges(wwwAuthenticate);
    const asked = findChallenge(challenges, 'bearer')?.params['scope'];
    if (asked !== undefined) {
      const extra = this.extraScopes.get(scope) ?? new Set<string>();
      for (const wanted of asked.split(' ')) if (wanted !== '' && wanted !== scope) extra.add(wanted);
      if (extra.size > 0) this.extraScopes.set(scope, extra);
    }
    const scheme = schemeFromChallenges(challenges);
    if (scheme !== undefined) this.scheme.settle(scheme);
  }

  /** The scopes a token for a request in `scope` is asked for, sorted so equal sets share a token. */
  private scopesFor(scope: string): string[] {
    const extra = this.extraScopes.get(scope);
    return extra === undefined ? [scope] : [...new Set([scope, ...extra])].sort();
  }

  /** Whether any credentials (explicit or from a config file) were found for the registry. */
  async hasCredentials(signal?: AbortSignal): Promise<boolean> {
    return (await this.getCredentials(signal)) !== undefined;
  }

  private resolveScheme(signal?: AbortSignal): Promise<Scheme> {
    // A failed ping (network, abort) is not kept: the next call pings again.
    return this.scheme.get(signal);
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
    return this.credentials.get(signal);
  }


  private async fetchToken(
    scheme: Extract<Scheme, { kind: 'bearer' }>,
    scopes: readonly string[],
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
    const credentials = await this.getCredentials(signal);
    const scope = scopes.join(' ');
    const what = `token for ${scope} from ${url.origin}`;
    const refreshToken = this.refreshToken ?? credentials?.identityToken;
    let response: Awaited<ReturnType<AuthTransport['get']>>;
    if (refreshToken !== undefined) {
      // OAuth2 (RFC 6749 §6), the form docker posts: scopes space-separated in one field.
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken });
      if (scheme.service !== undefined) form.set('service', scheme.service);
      form.set('scope', scope);
      form.set('client_id', OAUTH_CLIENT_ID);
      response = await this.options.transport.post(
        url,
        { 'content-type': 'application/x-www-form-urlencoded' },
        form.toString(),
        signal,
      );
    } else {
      if (scheme.service !== undefined) url.searchParams.set('service', scheme.service);
      for (const each of scopes) url.searchParams.append('scope', each);
      const headers: Record<string, string> = {};
      if (credentials !== undefined) headers['authorization'] = basicHeader(credentials);
      response = await this.options.transport.get(url, headers, signal);
    }
    if (response.status < 200 || response.status >= 300) {
      const error = await responseError({ ...response, method: 'GET', url: url.toString(), what });
      if (response.status === 401 || response.status === 403) {
        throw new AuthError(
          `${this.options.registry}: the token service refused ${
            refreshToken !== undefined
              ? 'the identity token'
              : credentials === undefined
                ? 'an anonymous request'
                : `the credentials of "${credentials.username}"`
          } for ${scope}`,
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
    const token = parseTokenResponse(bytes, what, this.now());
    // A token endpoint may rotate the refresh token; the old one may stop working.
    if (refreshToken !== undefined && token.refreshToken !== undefined) this.refreshToken = token.refreshToken;
    return token;
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
  const refreshToken = typeof body['refresh_token'] === 'string' && body['refresh_token'] !== '' ? body['refresh_token'] : undefined;
  return { token, expiresAt: now + expiresIn * 1000 - EXPIRY_MARGIN_MS, ...(refreshToken === undefined ? {} : { refreshToken }) };
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
