/** One attempt shared by every caller, tied to none of their signals. */
import { describe, expect, it } from 'vitest';
import { AbortError } from '../../src/errors.js';
import { SharedAttempt } from '../../src/registry/shared-attempt.js';

/** An operation that runs until `finish` or its signal, counting its starts. */
function controllable(): { attempt: SharedAttempt<string>; starts: AbortSignal[]; finish: (value: string) => void } {
  const starts: AbortSignal[] = [];
  let finish: (value: string) => void = () => undefined;
  const attempt = new SharedAttempt<string>(
    (signal) =>
      new Promise<string>((resolve, reject) => {
        starts.push(signal);
        finish = resolve;
        signal.addEventListener('abort', () => reject(new AbortError({ cause: signal.reason })), { once: true });
      }),
  );
  return { attempt, starts, finish: (value) => finish(value) };
}

describe('SharedAttempt', () => {
  it('lets the other callers have the result when one of them aborts', async () => {
    const { attempt, starts, finish } = controllable();
    const impatient = new AbortController();
    const first = attempt.get(impatient.signal).catch((e: unknown) => e);
    const second = attempt.get(new AbortController().signal);
    impatient.abort();
    expect(await first).toBeInstanceOf(AbortError);
    expect(starts[0]?.aborted).toBe(false);
    finish('pong');
    expect(await second).toBe('pong');
    expect(starts).toHaveLength(1);
    // Kept: no second run.
    expect(await attempt.get()).toBe('pong');
    expect(starts).toHaveLength(1);
  });

  it('stops the work once every caller has gone, and starts afresh for the next one', async () => {
    const { attempt, starts, finish } = controllable();
    const a = new AbortController();
    const b = new AbortController();
    const first = attempt.get(a.signal).catch((e: unknown) => e);
    const second = attempt.get(b.signal).catch((e: unknown) => e);
    a.abort();
    b.abort();
    expect(await first).toBeInstanceOf(AbortError);
    expect(await second).toBeInstanceOf(AbortError);
    expect(starts[0]?.aborted).toBe(true);
    // At once, before the aborted run has settled: a new caller gets a new run.
    const third = attempt.get();
    expect(starts).toHaveLength(2);
    finish('again');
    expect(await third).toBe('again');
  });

  it('forgets a failure, and takes a settled value instead of running', async () => {
    let runs = 0;
    const attempt = new SharedAttempt<number>(async () => {
      runs++;
      if (runs === 1) throw new Error('down');
      return runs;
    });
    await expect(attempt.get()).rejects.toThrow('down');
    expect(await attempt.get()).toBe(2);
    attempt.settle(42);
    expect(await attempt.get()).toBe(42);
    expect(runs).toBe(2);
  });
});
