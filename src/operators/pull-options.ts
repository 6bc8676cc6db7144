import type { RegistryClientOptions } from '../registry/client.js';

/**
 * What a pull can be told. Shared by `pullRootfs()` (stream users), `pullRootfs$()`
 * (reactive users) and the CLI, so an option added here reaches all three.
 */
export interface PullOptions {
  /** Aborting stops the pull; the returned stream fails with an `AbortError`. */
  signal?: AbortSignal;
  /** `os/arch[/variant]`, e.g. `linux/arm64/v8`; linux and the host architecture when absent. */
  platform?: string;
  /** Registry credentials; they take precedence over the Docker config. */
  username?: string;
  password?: string;
  /** Speak plain HTTP to the registry (DESIGN.md §4 says when this is allowed). */
  plainHttp?: boolean;
  /** Where `config.json` lives; `DOCKER_CONFIG`, then `~/.docker`, when absent. */
  dockerConfigDir?: string;
  /** A podman-style auth file read before podman's and docker's (default `$REGISTRY_AUTH_FILE`). */
  authFile?: string;
  /** PEM files of CA certificates to trust besides the default roots (`--ca-file`). */
  caFiles?: readonly string[];
  /** Skip TLS certificate verification (`--insecure`). */
  insecure?: boolean;
  /**
   * A Docker Hub mirror URL (`--registry-mirror`, `REGISTRY_MIRROR`): `docker.io` images are
   * asked of it first, and of Docker Hub when it lacks them or is unreachable.
   */
  registryMirror?: string;
  /**
   * Tries after the first for a request or a layer body that fails transiently (reset,
   * timeout, 5xx, 429) before the pull fails (default 5; `--retries`). A resumed layer body
   * counts failures in a row: progress in between starts the count over.
   */
  retries?: number;
  /** Longest total wait on 429 `Retry-After` for one request or layer (default 60 000; `--max-wait`). */
  maxWaitMs?: number;
  /** Connect timeout and longest silence of a response or body (default 30 000; `--timeout`). */
  timeoutMs?: number;
  /** First backoff delay, doubled per retry (default 200). Tests make it tiny. */
  retryBaseDelayMs?: number;
  /** Longest backoff delay (default 10 000). */
  retryMaxDelayMs?: number;
  /**
   * Fetch foreign (non-distributable) layers from the URLs their descriptors list, with no
   * registry credentials; without it such a layer is an error that names it.
   */
  allowForeign?: boolean;
  /** Write sparse files expanded (holes as zeros) rather than sparse (`--expand-sparse`). */
  expandSparse?: boolean;
}

/**
 * What the options say about reaching the registry: credentials, TLS, proxy-free settings,
 * mirror and timeouts. Retries are the caller's: a pull always retries, a query tries once.
 */
export function connectionOptions(options: PullOptions): RegistryClientOptions {
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
  };
}
