import type { QueryOptions } from '../queries/options.js';

/**
 * What a pull can be told: a query's options (connection, platform, signal) and how hard
 * to try. Shared by `pullRootfs()` (stream users), `pullRootfs$()` (reactive users) and
 * the CLI, so an option added here reaches all three.
 */
export interface PullOptions extends QueryOptions {
  /**
   * Tries after the first for a request or a layer body that fails transiently (reset,
   * timeout, 5xx, 429) before the pull fails (default 5). A resumed layer body counts
   * failures in a row: progress in between starts the count over.
   */
  retries?: number;
  /** Longest total wait on 429 `Retry-After` for one request or layer, in ms (default 60 000). */
  maxWaitMs?: number;
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
