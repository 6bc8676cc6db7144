/**
 * The options of the questions asked of an image (`inspectImage`, `imageExists`,
 * `checkImageChanged`): how to reach the registry, which platform, and a signal. A pull
 * takes these and more (`PullOptions`); a query tries once and never fetches a layer, so
 * retries and foreign layers are not its options.
 */
import type { Dispatcher } from 'undici';
import type { RegistryClientOptions } from '../registry/client.js';

/** How to reach a registry: credentials, TLS trust, proxy-free settings, mirror, timeouts. */
export interface ConnectionOptions {
  /** Registry credentials; they take precedence over the Docker config. */
  username?: string;
  password?: string;
  /** Speak plain HTTP to the registry (only loopback registries fall back to it on their own). */
  plainHttp?: boolean;
  /** Where `config.json` lives; `DOCKER_CONFIG`, then `~/.docker`, when absent. */
  dockerConfigDir?: string;
  /** A podman-style auth file read before podman's and docker's (default `$REGISTRY_AUTH_FILE`). */
  authFile?: string;
  /** PEM files of CA certificates to trust besides the default roots. */
  caFiles?: readonly string[];
  /** Skip TLS certificate verification: anyone on the path can read and change the image. */
  insecure?: boolean;
  /**
   * A Docker Hub mirror URL: `docker.io` images are asked of it first, and of Docker Hub
   * when it lacks them or is unreachable.
   */
  registryMirror?: string;
  /** Connect timeout and longest silence of a response or body, in ms (default 30 000). */
  timeoutMs?: number;
  /**
   * An undici dispatcher of your own (a proxy agent, a mock, a shared pool) instead of the
   * one made per registry; it should follow redirects itself (undici's `interceptors.redirect`).
   * `caFiles` and `insecure` then are the dispatcher's business.
   */
  dispatcher?: Dispatcher;
}

/** What a query about an image can be told. */
export interface QueryOptions extends ConnectionOptions {
  /** Aborting stops the query; it rejects with an `AbortError`. */
  signal?: AbortSignal;
  /** `os/arch[/variant]`, e.g. `linux/arm64/v8`; linux and the host architecture when absent. */
  platform?: string;
}

/** The connection options in the shape the registry client wants (absent stays absent). */
export function registryClientOptions(options: ConnectionOptions): RegistryClientOptions {
  return {
    ...(options.plainHttp === undefined ? {} : { plainHttp: options.plainHttp }),
    ...(options.username === undefined ? {} : { username: options.username }),
    ...(options.password === undefined ? {} : { password: options.password }),
    ...(options.dockerConfigDir === undefined ? {} : { dockerConfigDir: options.dockerConfigDir }),
    ...(options.authFile === undefined ? {} : { authFile: options.authFile }),
    ...(options.caFiles === undefined ? {} : { caFiles: options.caFiles }),
    ...(options.insecure === undefined ? {} : { insecure: options.insecure }),
    ...(options.registryMirror === undefined ? {} : { registryMirror: options.registryMirror }),
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
    ...(options.dispatcher === undefined ? {} : { dispatcher: options.dispatcher }),
  };
}
