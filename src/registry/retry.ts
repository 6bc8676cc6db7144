/**
 * When to try a registry request again, and how long to wait first (DESIGN.md §4): resets,
 * timeouts, 5xx and 408 are retried with capped exponential backoff and jitter; a 429 waits
 * what `Retry-After` asks, but never longer in total than `maxWaitMs`. Everything else
 * (404, auth, integrity, abort) fails at once.
 *
 * {@link RetryPolicy.decide} is a pure function of the error and the attempt count, testable
 * without a network; {@link RetrySession} adds the sleeping, the events and the counters for
 * one operation (a request, or one layer body with its resumes).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { AbortError, NetworkError, OciRootfsError, RateLimitError, RegistryError } from '../errors.js';

export interface RetryPolicyOptions {
  /** Tries after the first one (default 5); 0 turns retrying off. */
  retries?: number;
  /** First backoff delay (default 200 ms); each retry doubles it. */
  baseDelayMs?: number;
  /** Longest backoff delay (default 10 s). */
  maxDelayMs?: number;
  /**
   * Longest total time one operation may spend waiting on 429s (default 60 s): a
   * `Retry-After` that would take it past this fails at once with a {@link RateLimitError}.
   */
  maxWaitMs?: number;
  /** Source of jitter in [0, 1); tests pin it. */
  random?: () => number;
}

export const DEFAULT_RETRIES = 5;
export const DEFAULT_BASE_DELAY_MS = 200;
export const DEFAULT_MAX_DELAY_MS = 10_000;
export const DEFAULT_MAX_WAIT_MS = 60_000;

/** What the registry said about its rate limit. */
export interface RateLimitInfo {
  limit?: string;
  remaining?: string;
  retryAfterSeconds?: number;
}

export type RetryDecision =
  | { kind: 'retry'; delayMs: number; reason: string; rateLimit?: RateLimitInfo }
  | { kind: 'fail'; error: OciRootfsError };

/** Where an operation stands: failed tries so far (≥ 1) and time already spent on 429s. */
export interface RetryState {
  attempt: number;
  rateLimitWaitedMs: number;
}

export class RetryPolicy {
  readonly retries: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  readonly maxWaitMs: number;
  private readonly random: () => number;

  constructor(options: RetryPolicyOptions = {}) {
    this.retries = nonNegative(options.retries ?? DEFAULT_RETRIES, 'retries', true);
    this.baseDelayMs = nonNegative(options.baseDelayMs ?? DEFAULT_BASE_DELAY_MS, 'baseDelayMs');
    this.maxDelayMs = nonNegative(options.maxDelayMs ?? DEFAULT_MAX_DELAY_MS, 'maxDelayMs');
    this.maxWaitMs = nonNegative(options.maxWaitMs ?? DEFAULT_MAX_WAIT_MS, 'maxWaitMs');
    this.random = options.random ?? Math.random;
  }

  /**
   * The wait before retry number `attempt` (1-based): `base · 2^(attempt-1)`, capped, with
   * "equal jitter" (a random point in the upper half), so clients that failed together do
   * not come back together, yet never come back at once.
   */
  backoffMs(attempt: number): number {
    const exponential = this.baseDelayMs * 2 ** Math.min(Math.max(attempt - 1, 0), 30);
    const capped = Math.min(this.maxDelayMs, exponential);
    return Math.round(capped / 2 + (capped / 2) * this.random());
  }

  /** Whether, and after how long, to try again after `error` (pure: no clock but `now`). */
  decide(error: unknown, state: RetryState, now = Date.now()): RetryDecision {
    if (!isRetryable(error)) return { kind: 'fail', error: asError(error) };
    const failures = state.attempt;
    if (error instanceof RateLimitError) return this.decideRateLimit(error, state, now);
    if (failures > this.retries) return { kind: 'fail', error: gaveUp(error, failures) };
    return { kind: 'retry', delayMs: this.backoffMs(failures), reason: error.message };
  }

  private decideRateLimit(error: RateLimitError, state: RetryState, now: number): RetryDecision {
    const info: RateLimitInfo = {
      ...(error.limit === undefined ? {} : { limit: error.limit }),
      ...(error.remaining === undefined ? {} : { remaining: error.remaining }),
      ...(error.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: error.retryAfterSeconds }),
    };
    // Retry-After is the least we wait; the backoff still spaces a registry that says 0.
    const asked = (error.retryAfterSeconds ?? 0) * 1000;
    const delayMs = Math.max(asked, this.backoffMs(state.attempt));
    if (state.rateLimitWaitedMs + delayMs > this.maxWaitMs) {
      return { kind: 'fail', error: rateLimitGiveUp(error, `waiting would take longer than the ${seconds(this.maxWaitMs)} allowed (maxWaitMs)`, now) };
    }
    if (state.attempt > this.retries) {
      return { kind: 'fail', error: rateLimitGiveUp(error, `still rate limited after ${state.attempt} attempts`, now) };
    }
    return { kind: 'retry', delayMs, reason: error.message, rateLimit: info };
  }
}

/** Transport failures, 5xx/408 and 429 are worth another try; everything else is final. */
export function isRetryable(error: unknown): error is OciRootfsError {
  if (error instanceof AbortError) return false;
  if (error instanceof NetworkError) return true;
  if (error instanceof RegistryError) return error.retryable;
  return false;
}

/** What a session reports before it waits. */
export interface RetryNotice {
  what: string;
  /** The retry about to happen, 1-based. */
  attempt: number;
  reason: string;
  delayMs: number;
}

export interface RetryHooks {
  onRetry?: (notice: RetryNotice) => void;
  onRateLimit?: (info: RateLimitInfo) => void;
}

/**
 * The retry bookkeeping of one operation. `pause(error)` either waits (abortably) and
 * returns, meaning "try again", or throws the error to give up with. A body that made
 * progress calls `progress()`, so a long download that breaks now and then is not failed
 * by breaks spread over an hour.
 */
export class RetrySession {
  private failures = 0;
  private rateLimitWaitedMs = 0;

  constructor(
    private readonly policy: RetryPolicy | undefined,
    private readonly what: string,
    private readonly hooks: RetryHooks = {},
    private readonly signal?: AbortSignal,
  ) {}

  async pause(error: unknown): Promise<void> {
    if (this.signal?.aborted === true) throw new AbortError({ cause: this.signal.reason });
    // No policy: the caller asked for a single try, so the error stays exactly as it was.
    if (this.policy === undefined) throw asError(error);
    this.failures++;
    const decision = this.policy.decide(error, { attempt: this.failures, rateLimitWaitedMs: this.rateLimitWaitedMs });
    if (decision.kind === 'fail') throw decision.error;
    if (decision.rateLimit !== undefined) {
      this.rateLimitWaitedMs += decision.delayMs;
      this.hooks.onRateLimit?.(decision.rateLimit);
    }
    this.hooks.onRetry?.({ what: this.what, attempt: this.failures, reason: oneLine(decision.reason), delayMs: decision.delayMs });
    try {
      await sleep(decision.delayMs, undefined, this.signal === undefined ? {} : { signal: this.signal });
    } catch (sleepError) {
      throw new AbortError({ cause: this.signal?.reason ?? sleepError });
    }
  }

  progress(): void {
    this.failures = 0;
  }

  /** Runs `operation` until it succeeds or the policy gives up. */
  async run<T>(operation: () => Promise<T>): Promise<T> {
    for (;;) {
      try {
        return await operation();
      } catch (error) {
        await this.pause(error);
      }
    }
  }
}

/** The last transient failure, as the error a user sees: what failed and how often we tried. */
function gaveUp(error: OciRootfsError, attempts: number): OciRootfsError {
  // A 5xx that outlasts every retry is an unreachable service: exit 6 like a dead network
  // (DESIGN.md §6), with the registry's answer kept as the cause.
  return new NetworkError(`${error.message} (gave up after ${attempts} attempt${attempts === 1 ? '' : 's'})`, {
    cause: error,
  });
}

function rateLimitGiveUp(error: RateLimitError, why: string, now: number): RateLimitError {
  const when =
    error.retryAfterSeconds === undefined
      ? 'retry later'
      : `retry after ${error.retryAfterSeconds} s (at ${new Date(now + error.retryAfterSeconds * 1000).toISOString()})`;
  const quota = [
    error.remaining === undefined ? undefined : `ratelimit-remaining ${error.remaining}`,
    error.limit === undefined ? undefined : `ratelimit-limit ${error.limit}`,
  ].filter((part): part is string => part !== undefined);
  return new RateLimitError(
    `${error.message}; ${why}: ${when}${quota.length > 0 ? `; ${quota.join(', ')}` : ''}`,
    {
      status: error.status,
      method: error.method,
      url: error.url,
      errors: error.errors,
      cause: error,
      ...(error.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: error.retryAfterSeconds }),
      ...(error.limit === undefined ? {} : { limit: error.limit }),
      ...(error.remaining === undefined ? {} : { remaining: error.remaining }),
    },
  );
}

function asError(error: unknown): OciRootfsError {
  if (error instanceof OciRootfsError) return error;
  return new OciRootfsError(error instanceof Error ? error.message : String(error), { cause: error });
}

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}

function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}

function nonNegative(value: number, name: string, integer = false): number {
  if (!Number.isFinite(value) || value < 0 || (integer && !Number.isInteger(value))) {
    throw new RangeError(`${name} must be a non-negative ${integer ? 'integer' : 'number'}, not ${value}`);
  }
  return value;
}
