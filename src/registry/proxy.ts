/**
 * The dispatcher a registry client sends through: undici's `EnvHttpProxyAgent` (so
 * `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` work as in curl), composed with the redirect
 * interceptor, which drops `Authorization` when a redirect changes origin.
 *
 * Through a proxy undici reads the target's TLS options from `requestTls` and the proxy's
 * from `proxyTls`; without one, from `connect`. The same trust goes into all three, so
 * `--ca-file` and `--insecure` mean the same thing with and without a proxy.
 */
import { EnvHttpProxyAgent, interceptors, type Dispatcher } from 'undici';
import type { TlsConnectOptions } from './tls.js';

/** The proxy settings from the environment, as undici reads them: lowercase first. */
export interface ProxySettings {
  httpProxy?: string;
  httpsProxy?: string;
  noProxy?: string;
}

/**
 * `http_proxy` before `HTTP_PROXY`, and so on: undici's order (and curl's). An https
 * request with only `HTTP_PROXY` set goes through that proxy, as undici does.
 */
export function proxySettingsFrom(env: Readonly<Record<string, string | undefined>>): ProxySettings {
  const pick = (name: string): string | undefined => {
    const value = env[name.toLowerCase()] ?? env[name];
    return value === undefined || value === '' ? undefined : value;
  };
  const httpProxy = pick('HTTP_PROXY');
  const httpsProxy = pick('HTTPS_PROXY');
  const noProxy = env['no_proxy'] ?? env['NO_PROXY'];
  return {
    ...(httpProxy === undefined ? {} : { httpProxy }),
    ...(httpsProxy === undefined ? {} : { httpsProxy }),
    ...(noProxy === undefined ? {} : { noProxy }),
  };
}

export interface RegistryDispatcherOptions {
  timeoutMs: number;
  maxRedirections: number;
  tls: TlsConnectOptions;
  /** Read now, once: a client keeps the proxy it started with. */
  env: Readonly<Record<string, string | undefined>>;
}

/** The agent (to close) and the dispatcher (to send through) of one client. */
export function createRegistryDispatcher(options: RegistryDispatcherOptions): { agent: Dispatcher; dispatcher: Dispatcher } {
  const proxy = proxySettingsFrom(options.env);
  const tls = { timeout: options.timeoutMs, ...options.tls };
  const agent = new EnvHttpProxyAgent({
    // Explicit values, so undici does not look at process.env behind the caller's back; an
    // empty noProxy means "proxy everything" (undici falls back to the env when undefined).
    ...(proxy.httpProxy === undefined ? {} : { httpProxy: proxy.httpProxy }),
    ...(proxy.httpsProxy === undefined ? {} : { httpsProxy: proxy.httpsProxy }),
    noProxy: proxy.noProxy ?? '',
    connect: tls,
    requestTls: tls,
    proxyTls: { timeout: options.timeoutMs },
    // Plain-http registries get an absolute-URI request through the proxy, as curl and Go
    // send it, rather than a CONNECT tunnel many proxies only allow to port 443.
    proxyTunnel: false,
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
  });
  return { agent, dispatcher: agent.compose(interceptors.redirect({ maxRedirections: options.maxRedirections })) };
}
