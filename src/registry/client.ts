/**
 * One registry's HTTP API: scheme choice, auth, redirects, status → error mapping, retries,
 * and for Docker Hub an optional mirror. Requests go through undici's `EnvHttpProxyAgent`
 * (proxy.ts) composed with the redirect interceptor (undici 7 refuses `maxRedirections` on
 * `request`); that interceptor drops `Authorization` when a redirect changes origin, so blob
 * redirects to a CDN never see our token.
 *
 * Retrying is opt-in (`retry`), as undici's retry interceptor is: the bare client makes one
 * try and reports exactly what happened; `pullRootfs$` composes the policy in. A retried
 * request is retried whole: ping, token, request, and for manifests the body too.
 */
import type { Readable } from 'node:stream';
import { request, type Dispatcher } from 'undici';
import {
  AbortError,
  AuthError,
  NetworkError,
  NotFoundError,
  OciRootfsError,
  RegistryError,
  throwIfAborted,
} from '../errors.js';
import { registryApiHost, type ImageReference } from '../reference/index.js';
import { Authenticator, pullScope } from './auth.js';
import { SharedAttempt } from './shared-attempt.js';
import { resolveCredentials, type CredentialEnv, type Credentials } from './credentials.js';
import { MAX_MANIFEST_BYTES } from '../image/manifest.js';
import {
  bufferBody,
  discardBody,
  redactUrl,
  responseError,
  toTransportError,
  type ResponseHeaders,
} from './http.js';
import { isDockerHub, mirrorHost, type MirrorWarning } from './mirror.js';
import { createRegistryDispatcher } from './proxy.js';
import { RetryPolicy, RetrySession, type RetryHooks, type RetryPolicyOptions } from './retry.js';
import { CERTIFICATE_HINT, certificateProblem, tlsConnectOptions } from './tls.js';

export interface RegistryClientOptions {
  /** Talk plain HTTP to this registry (`--plain-http`). */
  plainHttp?: boolean;
  /** Explicit credentials; otherwise the docker config is consulted. */
  username?: string;
  password?: string;
  /** Directory holding the docker `config.json` (default `$DOCKER_CONFIG`, `~/.docker`). */
  dockerConfigDir?: string;
  /** A podman-style auth file read before the others (default `$REGISTRY_AUTH_FILE`). */
  authFile?: string;
  /**
   * Where the proxy variables, `NO_PROXY`, `NODE_EXTRA_CA_CERTS`, `REGISTRY_AUTH_FILE`,
   * `XDG_RUNTIME_DIR` and `DOCKER_CONFIG` are read, once, when the client is made
   * (default `process.env`).
   */
  env?: CredentialEnv;
  /** PEM files of CA certificates to trust besides the default roots (`--ca-file`). */
  caFiles?: readonly string[];
  /** Skip TLS certificate verification (`--insecure`): anyone on the path can read and change the pull. */
  insecure?: boolean;
  /**
   * A Docker Hub mirror, `https://host[:port]` (`--registry-mirror`): for `docker.io`
   * references it is asked first, and Docker Hub only when it lacks the image or fails.
   */
  registryMirror?: string;
  /** Told when the mirror was passed over for the origin (once per reason). */
  onWarning?: (warning: MirrorWarning) => void;
  /** Use this dispatcher instead of an own Agent (it should follow redirects itself). */
  dispatcher?: Dispatcher;
  userAgent?: string;
  /** Redirects to follow per request (default 5). */
  maxRedirections?: number;
  /** Retry transient failures with this policy; absent, every request is tried once. */
  retry?: RetryPolicy | RetryPolicyOptions;
  /** Told before each retry wait and each 429 honoured. */
  onRetry?: RetryHooks['onRetry'];
  onRateLimit?: RetryHooks['onRateLimit'];
  /**
   * Connect timeout, and the longest silence while waiting for response headers or between
   * two pieces of a body (default 30 s). A timeout counts as a network failure (retried).
   */
  timeoutMs?: number;
}

/** The default of {@link RegistryClientOptions.timeoutMs}. */
export const DEFAULT_TIMEOUT_MS = 30_000;

/** Manifest bodies are read inside the retry, so a cut one is fetched again (they are small). */
const MANIFEST_PATH = /^\/v2\/.+\/manifests\/[^/]+$/;

export interface RegistryRequest {
  /** Absolute path on the registry, `/v2/...`. */
  path: string;
  /** The repository whose pull scope the request needs. */
  repository: string;
  method?: 'GET' | 'HEAD';
  headers?: Record<string, string>;
  /** What is being fetched, for error messages ("manifest docker.io/library/alpine:3"). */
  what: string;
  signal?: AbortSignal;
  /** Apply the client's retry policy (default true); false for a caller that retries itself. */
  retry?: boolean;
  /**
   * Read a 2xx body of up to this many bytes inside the retry, so a body cut halfway is
   * requested again (default: manifests, up to the manifest cap).
   */
  bufferBytes?: number;
}

export interface RegistryResponse {
  status: number;
  headers: ResponseHeaders;
  /** The body; the caller must consume or destroy it. */
  body: Readable;
  /** The URL requested (before redirects). */
  url: string;
}

const DEFAULT_USER_AGENT = 'oci-rootfs/0.1';

/** `localhost`, `127.x.y.z`, `::1`: hosts docker lets fall back to plain HTTP. */
export function isLoopbackHostname(hostname: string): boolean {
  const bare = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  return (
    bare === 'localhost' ||
    bare === '::1' ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(bare)
  );
}

/** The hostname part of `host[:port]` (IPv6 keeps its brackets). */
export function hostnameOf(host: string): string {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end === -1 ? host : host.slice(0, end + 1);
  }
  const colon = host.lastIndexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}

interface Probe {
  origin: string;
  status: number;
  headers: ResponseHeaders;
  url: string;
}

/**
 * One registry's HTTP API (see the top of this file). Most users never make one: the
 * pull and the queries do; a pipeline of your own hands one to {@link registryStore}.
 *
 * @example
 * ```ts
 * const ref = parseReference('ghcr.io/me/app:1.0');
 * const client = RegistryClient.for(ref, { username: 'me', password: token, retry: { retries: 5 } });
 * try {
 *   const image = await resolveImage(registryStore(client, ref));
 * } finally {
 *   await client.close();
 * }
 * ```
 */
export class RegistryClient {
  /** The registry as referenced (`docker.io` for Docker Hub). */
  readonly registry: string;
  /** Where the API lives (`registry-1.docker.io` for Docker Hub). */
  readonly apiHost: string;
  readonly auth: Authenticator;
  private readonly dispatcher: Dispatcher;
  private readonly ownAgent: Dispatcher | undefined;
  /** The Docker Hub mirror's client, while the mirror is worth asking. */
  private mirror: RegistryClient | undefined;
  /** Repositories whose manifests the mirror did not have: their blobs go to the origin. */
  private readonly mirrorMisses = new Set<string>();
  private readonly mirrorWarned = new Set<string>();
  private readonly userAgent: string;
  private readonly timeoutMs: number;
  private readonly retryPolicy: RetryPolicy | undefined;
  /** The ping, shared by every request of this client and kept once it succeeded. */
  private readonly probe = new SharedAttempt<Probe>((signal) => this.doPing(signal));

  constructor(
    registry: string,
    private readonly options: RegistryClientOptions = {},
  ) {
    this.registry = registry;
    this.apiHost = registryApiHost(registry);
    this.userAgent = options.userAgent ?? DEFAULT_USER_AGENT;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!(this.timeoutMs > 0)) throw new RangeError(`timeoutMs must be positive, not ${this.timeoutMs}`);
    this.retryPolicy =
      options.retry === undefined ? undefined : options.retry instanceof RetryPolicy ? options.retry : new RetryPolicy(options.retry);
    const env = options.env ?? process.env;
    if (options.dispatcher !== undefined) {
      this.dispatcher = options.dispatcher;
    } else {
      const { agent, dispatcher } = createRegistryDispatcher({
        timeoutMs: this.timeoutMs,
        maxRedirections: options.maxRedirections ?? 5,
        tls: tlsConnectOptions(
          {
            ...(options.caFiles === undefined ? {} : { caFiles: options.caFiles }),
            ...(options.insecure === undefined ? {} : { insecure: options.insecure }),
          },
          env,
        ),
        env,
      });
      this.ownAgent = agent;
      this.dispatcher = dispatcher;
    }
    if (options.registryMirror !== undefined && isDockerHub(registry)) {
      const mirror = mirrorHost(options.registryMirror);
      // The mirror is its own registry: its own ping, auth and credentials (looked up by
      // its host; explicit credentials are Docker Hub's and stay with Docker Hub). It is
      // tried once per request: any failure is the origin's turn, not a retry's.
      this.mirror = new RegistryClient(mirror.host, {
        ...(options.dockerConfigDir === undefined ? {} : { dockerConfigDir: options.dockerConfigDir }),
        ...(options.authFile === undefined ? {} : { authFile: options.authFile }),
        ...(options.userAgent === undefined ? {} : { userAgent: options.userAgent }),
        env,
        plainHttp: mirror.plainHttp,
        timeoutMs: this.timeoutMs,
        dispatcher: this.dispatcher,
      });
    }
    this.auth = new Authenticator({
      registry,
      transport: {
        ping: async (signal) => {
          const probe = await this.ping(signal);
          return { status: probe.status, headers: probe.headers, url: probe.url };
        },
        get: (url, headers, signal) => this.send(url.toString(), 'GET', headers, signal, 'token request'),
        post: (url, headers, body, signal) => this.send(url.toString(), 'POST', headers, signal, 'token request', body),
      },
      credentials: (signal) => this.credentials(signal),
      isRealmAllowed: (realm) => this.isRealmAllowed(realm),
    });
  }

  /** A client for the registry of `ref`. */
  static for(ref: ImageReference, options?: RegistryClientOptions): RegistryClient {
    return new RegistryClient(ref.registry, options);
  }

  /**
   * Sends an authorised request and returns a 2xx response; anything else becomes the
   * matching error. A 401 (or a 403 on a bearer token) refetches the token once. With a
   * retry policy, transient failures (of the ping and token requests too) are tried again.
   */
  async request(req: RegistryRequest): Promise<RegistryResponse> {
    const fromMirror = await this.tryMirror(req);
    if (fromMirror !== undefined) return fromMirror;
    if (req.retry === false) return this.requestOnce(req);
    return this.retrySession(req.what, req.signal).run(() => this.requestOnce(req));
  }

  /** The retry bookkeeping for one operation under this client's policy and hooks. */
  retrySession(what: string, signal?: AbortSignal): RetrySession {
    const hooks: RetryHooks = {
      ...(this.options.onRetry === undefined ? {} : { onRetry: this.options.onRetry }),
      ...(this.options.onRateLimit === undefined ? {} : { onRateLimit: this.options.onRateLimit }),
    };
    return new CertificateAwareSession(this.retryPolicy, what, hooks, signal);
  }

  /**
   * Asks the Docker Hub mirror first, if there is one: its answer, or undefined when the
   * origin must answer instead. A mirror that cannot be reached is not asked again by this
   * client; one that lacks a repository's manifest is not asked for its blobs.
   */
  private async tryMirror(req: RegistryRequest): Promise<RegistryResponse | undefined> {
    const mirror = this.mirror;
    if (mirror === undefined || this.mirrorMisses.has(req.repository)) return undefined;
    try {
      return await mirror.request({ ...req, retry: false });
    } catch (error) {
      if (error instanceof AbortError || !(error instanceof OciRootfsError)) throw error;
      if (error instanceof NotFoundError) {
        if (MANIFEST_PATH.test(req.path)) this.mirrorMisses.add(req.repository);
        this.warnMirror('not-found', `registry mirror ${mirror.apiHost} does not have ${req.what}; asking ${this.apiHost}`);
      } else if (error instanceof NetworkError) {
        this.mirror = undefined;
        this.warnMirror('unreachable', `registry mirror ${mirror.apiHost} is unreachable (${error.message}); using ${this.apiHost}`);
      } else {
        this.warnMirror(`failed-${req.repository}`, `registry mirror ${mirror.apiHost} failed (${error.message}); asking ${this.apiHost}`);
      }
      return undefined;
    }
  }

  private warnMirror(key: string, message: string): void {
    if (this.mirrorWarned.has(key)) return;
    this.mirrorWarned.add(key);
    this.options.onWarning?.({ code: 'MIRROR_FALLBACK', message });
  }

  private async requestOnce(req: RegistryRequest): Promise<RegistryResponse> {
    const { signal } = req;
    throwIfAborted(signal);
    const { origin } = await this.ping(signal);
    const url = `${origin}${req.path}`;
    const method = req.method ?? 'GET';
    const scope = pullScope(req.repository);
    for (let attempt = 0; ; attempt++) {
      const authorization = await this.auth.authorization(scope, signal);
      const headers: Record<string, string> = { ...req.headers };
      if (authorization !== undefined) headers['authorization'] = authorization;
      const response = await this.send(url, method, headers, signal, req.what);
      const { status } = response;
      if (status >= 200 && status < 300) {
        const bufferBytes = req.bufferBytes ?? (MANIFEST_PATH.test(req.path) ? MAX_MANIFEST_BYTES : undefined);
        if (bufferBytes === undefined || method === 'HEAD') return response;
        const body = await bufferBody(response.body, bufferBytes, `${req.what} (${redactUrl(url)})`);
        return { ...response, body };
      }
      const retryAuth =
        attempt === 0 &&
        (status === 401 || (status === 403 && authorization?.startsWith('Bearer ') === true));
      if (retryAuth) {
        discardBody(response.body);
        this.auth.invalidate(scope, response.headers['www-authenticate']);
        continue;
      }
      if (status >= 300 && status < 400) {
        throw await responseError({ ...response, method, what: `${req.what}: too many redirects or no Location` });
      }
      const error = await responseError({ ...response, method, what: req.what });
      // Anonymous, or with an anonymous bearer token: the likely fix is a login.
      if (error instanceof AuthError && status === 401 && !(await this.auth.hasCredentials(signal))) {
        throw new AuthError(`${error.message} (no credentials found for ${this.registry})`, { cause: error });
      }
      throw error;
    }
  }

  /** Closes the connections of the client's own agent once the requests in flight are done. */
  async close(): Promise<void> {
    await this.mirror?.close();
    await this.ownAgent?.close();
  }

  /** Closes every connection of the client's own agent now, failing what is in flight. */
  async destroy(): Promise<void> {
    await this.mirror?.destroy();
    await this.ownAgent?.destroy();
  }

  /**
   * Pings `/v2/` once per client: decides the scheme (https, or http for `plainHttp` and
   * for loopback hosts whose HTTPS connection fails, as docker does) and gives the
   * authenticator the challenge. A failed ping is forgotten so a retry pings again; one
   * caller's abort does not fail the others waiting on the same ping.
   */
  private ping(signal?: AbortSignal): Promise<Probe> {
    return this.probe.get(signal);
  }

  private async doPing(signal?: AbortSignal): Promise<Probe> {
    const what = `ping ${this.apiHost}`;
    const tryOrigin = async (origin: string): Promise<Probe> => {
      const url = `${origin}/v2/`;
      const response = await this.send(url, 'GET', {}, signal, what);
      // A registry that is down or rate limiting says nothing about auth: fail (retryably)
      // rather than cache "anonymous" for the life of the client.
      if (response.status >= 500 || response.status === 429) {
        throw await responseError({ ...response, method: 'GET', what });
      }
      response.body.resume();
      return { origin, status: response.status, headers: response.headers, url };
    };
    if (this.options.plainHttp === true) return tryOrigin(`http://${this.apiHost}`);
    try {
      return await tryOrigin(`https://${this.apiHost}`);
    } catch (error) {
      // An HTTP answer over HTTPS means HTTPS works: no plain-HTTP fallback for that. Nor for
      // a certificate we do not trust: the host speaks TLS, and its plain-HTTP port would
      // only answer "400 Client sent an HTTP request to an HTTPS server".
      if (
        error instanceof AbortError ||
        error instanceof RegistryError ||
        (error instanceof NotFoundError && error.status !== undefined) ||
        certificateProblem(error) !== undefined ||
        !isLoopbackHostname(hostnameOf(this.apiHost))
      ) {
        throw error;
      }
      try {
        return await tryOrigin(`http://${this.apiHost}`);
      } catch (httpError) {
        if (httpError instanceof AbortError) throw httpError;
        // Both attempts failed: say both, HTTPS (what was asked for) first.
        if (error instanceof NetworkError) {
          const plain = httpError instanceof Error ? httpError.message.replace(`${what} `, '') : String(httpError);
          throw new NetworkError(`${error.message}; then plain HTTP ${plain}`, { cause: error });
        }
        throw error;
      }
    }
  }

  private async send(
    url: string,
    method: 'GET' | 'HEAD' | 'POST',
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
    what: string,
    body?: string,
  ): Promise<RegistryResponse> {
    try {
      const response = await request(url, {
        method,
        headers: { 'user-agent': this.userAgent, ...headers },
        ...(body === undefined ? {} : { body }),
        dispatcher: this.dispatcher,
        // Also per request, so a caller's own dispatcher gets them too.
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
        ...(signal === undefined ? {} : { signal }),
      });
      return { status: response.statusCode, headers: response.headers, body: response.body, url };
    } catch (error) {
      if (signal?.aborted === true) throw new AbortError({ cause: signal.reason });
      const problem = certificateProblem(error);
      if (problem !== undefined) {
        throw new NetworkError(`${what} (${redactUrl(url)}): TLS certificate problem: ${problem}; ${CERTIFICATE_HINT}`, {
          cause: error,
        });
      }
      throw toTransportError(error, `${what} (${redactUrl(url)})`);
    }
  }

  private credentials(signal?: AbortSignal): Promise<Credentials | undefined> {
    return resolveCredentials(this.registry, {
      ...(this.options.username === undefined ? {} : { username: this.options.username }),
      ...(this.options.password === undefined ? {} : { password: this.options.password }),
      ...(this.options.dockerConfigDir === undefined ? {} : { dockerConfigDir: this.options.dockerConfigDir }),
      ...(this.options.authFile === undefined ? {} : { authFile: this.options.authFile }),
      ...(this.options.env === undefined ? {} : { env: this.options.env }),
      ...(signal === undefined ? {} : { signal }),
    });
  }

  /** Token realms: https, loopback, or the very host the registry is spoken to in plain HTTP. */
  private isRealmAllowed(realm: URL): boolean {
    if (realm.protocol === 'https:') return true;
    if (isLoopbackHostname(realm.hostname)) return true;
    return this.options.plainHttp === true && realm.hostname === hostnameOf(this.apiHost).toLowerCase();
  }
}

/**
 * A retry session that gives up at once on a certificate problem: the certificate will be
 * just as untrusted on the next try, and five backoffs would only hide the reason.
 */
class CertificateAwareSession extends RetrySession {
  override async pause(error: unknown): Promise<void> {
    if (error instanceof NetworkError && certificateProblem(error) !== undefined) throw error;
    return super.pause(error);
  }
}
