/**
 * The retry policy alone: which failures are worth another try, how long to wait, when a
 * rate limit is past waiting for, and what the final error says.
 */
import { describe, expect, it } from 'vitest';
import {
  AbortError,
  AuthError,
  DigestMismatchError,
  ExitCode,
  NetworkError,
  NotFoundError,
  RateLimitError,
  RegistryError,
} from '../../src/errors.js';
import { parseRetryAfter } from '../../src/registry/http.js';
import { RetryPolicy, RetrySession, isRetryable, type RetryNotice } from '../../src/registry/retry.js';

const http = (status: number, retryable: boolean): RegistryError =>
  new RegistryError(`manifest x: HTTP ${status} from http://r/v2/x`, { status, method: 'GET', url: 'http://r/v2/x', retryable });

const limited = (retryAfterSeconds?: number): RateLimitError =>
  new RateLimitError('manifest x: rate limited by the registry', {
    status: 429,
    method: 'GET',
    url: 'http://r/v2/x',
    limit: '100;w=21600',
    remaining: '0;w=21600',
    ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
  });

describe('RetryPolicy.backoffMs', () => {
  it('doubles from the base delay, with jitter in the upper half, up to the cap', () => {
    const low = new RetryPolicy({ baseDelayMs: 200, maxDelayMs: 10_000, random: () => 0 });
    const high = new RetryPolicy({ baseDelayMs: 200, maxDelayMs: 10_000, random: () => 0.999999 });
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((n) => low.backoffMs(n))).toEqual([100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((n) => high.backoffMs(n))).toEqual([200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
  });

  it('stays finite for absurd attempt numbers', () => {
    expect(new RetryPolicy({ random: () => 1 }).backoffMs(10_000)).toBe(10_000);
  });

  it('refuses negative or fractional retries', () => {
    expect(() => new RetryPolicy({ retries: -1 })).toThrow(RangeError);
    expect(() => new RetryPolicy({ retries: 1.5 })).toThrow(RangeError);
  });
});

describe('which failures are retried', () => {
  it.each([
    ['a reset or timeout', new NetworkError('blob: read ECONNRESET'), true],
    ['HTTP 500', http(500, true), true],
    ['HTTP 503', http(503, true), true],
    ['HTTP 408', http(408, true), true],
    ['a rate limit', limited(1), true],
    ['HTTP 400', http(400, false), false],
    ['a 404', new NotFoundError('manifest x: not found', { status: 404, method: 'GET', url: 'u' }), false],
    ['an auth failure', new AuthError('denied'), false],
    ['a digest mismatch', new DigestMismatchError('layer 0', 'sha256:a', 'sha256:b', 3), false],
    ['an abort', new AbortError(), false],
    ['a plain Error', new Error('boom'), false],
  ] as const)('%s: %s', (_name, error, expected) => {
    expect(isRetryable(error)).toBe(expected);
  });
});

describe('RetryPolicy.decide', () => {
  const policy = new RetryPolicy({ retries: 2, baseDelayMs: 100, maxDelayMs: 1000, maxWaitMs: 10_000, random: () => 0 });

  it('retries a transient failure until the retries are spent, then says how many attempts were made', () => {
    const error = new NetworkError('manifest x (http://r/v2/x): other side closed');
    expect(policy.decide(error, { attempt: 1, rateLimitWaitedMs: 0 })).toEqual({
      kind: 'retry',
      delayMs: 50,
      reason: error.message,
    });
    expect(policy.decide(error, { attempt: 2, rateLimitWaitedMs: 0 })).toMatchObject({ kind: 'retry', delayMs: 100 });
    const final = policy.decide(error, { attempt: 3, rateLimitWaitedMs: 0 });
    expect(final.kind).toBe('fail');
    if (final.kind !== 'fail') return;
    expect(final.error).toBeInstanceOf(NetworkError);
    expect(final.error.message).toBe('manifest x (http://r/v2/x): other side closed (gave up after 3 attempts)');
    expect(final.error.cause).toBe(error);
  });

  it('gives up on a 5xx as a network failure (exit 6), keeping the registry answer as the cause', () => {
    const error = http(503, true);
    const final = policy.decide(error, { attempt: 3, rateLimitWaitedMs: 0 });
    expect(final.kind === 'fail' && final.error.exitCode).toBe(ExitCode.network);
    expect(final.kind === 'fail' && final.error.cause).toBe(error);
  });

  it('passes an error that is not worth retrying through untouched', () => {
    const error = new AuthError('denied');
    expect(policy.decide(error, { attempt: 1, rateLimitWaitedMs: 0 })).toEqual({ kind: 'fail', error });
  });

  it('waits what Retry-After asks on a 429, never less than the backoff', () => {
    expect(policy.decide(limited(3), { attempt: 1, rateLimitWaitedMs: 0 })).toMatchObject({
      kind: 'retry',
      delayMs: 3000,
      rateLimit: { limit: '100;w=21600', remaining: '0;w=21600', retryAfterSeconds: 3 },
    });
    expect(policy.decide(limited(0), { attempt: 2, rateLimitWaitedMs: 0 })).toMatchObject({ kind: 'retry', delayMs: 100 });
    expect(policy.decide(limited(), { attempt: 1, rateLimitWaitedMs: 0 })).toMatchObject({ kind: 'retry', delayMs: 50 });
  });

  it('fails at once with a RateLimitError saying when to retry once the wait would pass maxWait', () => {
    const now = Date.parse('2030-01-01T00:00:00Z');
    const final = policy.decide(limited(120), { attempt: 1, rateLimitWaitedMs: 0 }, now);
    expect(final.kind).toBe('fail');
    if (final.kind !== 'fail') return;
    expect(final.error).toBeInstanceOf(RateLimitError);
    expect(final.error.exitCode).toBe(ExitCode.rateLimited);
    expect(final.error.message).toBe(
      'manifest x: rate limited by the registry; waiting would take longer than the 10 s allowed (maxWaitMs): ' +
        'retry after 120 s (at 2030-01-01T00:02:00.000Z); ratelimit-remaining 0;w=21600, ratelimit-limit 100;w=21600',
    );
    expect(final.error).toMatchObject({ retryAfterSeconds: 120, limit: '100;w=21600', remaining: '0;w=21600' });
  });

  it('counts the time already waited on 429s against maxWait', () => {
    expect(policy.decide(limited(4), { attempt: 1, rateLimitWaitedMs: 6000 })).toMatchObject({ kind: 'retry' });
    expect(policy.decide(limited(4), { attempt: 1, rateLimitWaitedMs: 6001 })).toMatchObject({ kind: 'fail' });
  });

  it('stops after the retries when the rate limit does not lift', () => {
    const final = policy.decide(limited(1), { attempt: 3, rateLimitWaitedMs: 2000 });
    expect(final.kind === 'fail' && final.error.message).toMatch(/still rate limited after 3 attempts: retry after 1 s/);
  });
});

describe('RetrySession', () => {
  const fast = new RetryPolicy({ retries: 2, baseDelayMs: 1, maxDelayMs: 2 });

  it('runs an operation until it succeeds and reports each retry', async () => {
    const notices: RetryNotice[] = [];
    let calls = 0;
    const result = await new RetrySession(fast, 'manifest x', { onRetry: (n) => notices.push(n) }).run(async () => {
      calls++;
      if (calls < 3) throw new NetworkError(`try ${calls}\nfailed`);
      return 'ok';
    });
    expect(result).toBe('ok');
    expect(notices.map(({ what, attempt, reason }) => ({ what, attempt, reason }))).toEqual([
      { what: 'manifest x', attempt: 1, reason: 'try 1 failed' },
      { what: 'manifest x', attempt: 2, reason: 'try 2 failed' },
    ]);
  });

  it('starts counting over after progress', async () => {
    const session = new RetrySession(fast, 'layer 0');
    for (let i = 0; i < 5; i++) {
      await session.pause(new NetworkError('cut'));
      session.progress();
    }
    await session.pause(new NetworkError('cut'));
    await session.pause(new NetworkError('cut'));
    await expect(session.pause(new NetworkError('cut'))).rejects.toThrow(/gave up after 3 attempts/);
  });

  it('without a policy tries once and leaves the error as it was', async () => {
    const error = http(503, true);
    await expect(new RetrySession(undefined, 'x').pause(error)).rejects.toBe(error);
  });

  it('stops waiting at once when the signal aborts', async () => {
    const controller = new AbortController();
    const slow = new RetryPolicy({ baseDelayMs: 60_000, maxDelayMs: 60_000 });
    const waiting = new RetrySession(slow, 'x', {}, controller.signal).pause(new NetworkError('reset'));
    setTimeout(() => controller.abort(), 10);
    const started = performance.now();
    await expect(waiting).rejects.toBeInstanceOf(AbortError);
    expect(performance.now() - started).toBeLessThan(1000);
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2030-01-01T00:00:00Z');
  it.each([
    ['120', 120],
    [' 7 ', 7],
    ['Tue, 01 Jan 2030 00:00:30 GMT', 30],
    ['Mon, 31 Dec 2029 23:59:00 GMT', 0],
    ['soon', undefined],
    ['', undefined],
    [undefined, undefined],
  ] as const)('reads %j as %j seconds', (value, seconds) => {
    expect(parseRetryAfter(value, now)).toBe(seconds);
  });
});
