/**
 * One operation shared by every caller that asks for it while it runs (the registry ping,
 * the auth scheme, credentials, a token per scope), and tied to no caller's AbortSignal:
 * a caller that aborts stops waiting, with an AbortError of its own, and the others go on.
 * The operation itself is aborted only once every caller has stopped waiting. A success is
 * kept (or replaced with `settle`); a failure is forgotten, so the next caller tries again.
 */
import { AbortError } from '../errors.js';

interface Running<T> {
  promise: Promise<T>;
  controller: AbortController;
  waiters: number;
}

export class SharedAttempt<T> {
  #result: Promise<T> | undefined;
  #running: Running<T> | undefined;

  constructor(private readonly operation: (signal: AbortSignal) => Promise<T>) {}

  /** The kept result, or the running attempt (started if none runs), as seen by a caller with `signal`. */
  get(signal?: AbortSignal): Promise<T> {
    if (signal?.aborted === true) return Promise.reject(new AbortError({ cause: signal.reason }));
    if (this.#result !== undefined) return this.#result;
    let running = this.#running;
    if (running === undefined) {
      const controller = new AbortController();
      const started: Running<T> = { promise: this.operation(controller.signal), controller, waiters: 0 };
      running = started;
      this.#running = started;
      started.promise.then(
        () => {
          if (this.#running === started) {
            this.#result = started.promise;
            this.#running = undefined;
          }
        },
        () => {
          if (this.#running === started) this.#running = undefined;
        },
      );
    }
    return this.#wait(running, signal);
  }

  /** Keeps `value` as the result from now on (e.g. a scheme a 401 challenge told us). */
  settle(value: T): void {
    this.#result = Promise.resolve(value);
    this.#running = undefined;
  }

  /** Whether nothing runs now (it succeeded, failed or never started). */
  settledOrIdle(): boolean {
    return this.#running === undefined;
  }

  #wait(running: Running<T>, signal: AbortSignal | undefined): Promise<T> {
    running.waiters++;
    if (signal === undefined) return running.promise;
    return new Promise<T>((resolve, reject) => {
      let waiting = true;
      const leave = (): void => {
        waiting = false;
        signal.removeEventListener('abort', onAbort);
      };
      const onAbort = (): void => {
        if (!waiting) return;
        leave();
        running.waiters--;
        // Nobody waits any more: stop the work itself, and let the next caller start afresh
        // rather than join an attempt that is being torn down.
        if (running.waiters === 0) {
          if (this.#running === running) this.#running = undefined;
          running.controller.abort(signal.reason);
        }
        reject(new AbortError({ cause: signal.reason }));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      running.promise.then(
        (value) => {
          if (!waiting) return;
          leave();
          resolve(value);
        },
        (error: unknown) => {
          if (!waiting) return;
          leave();
          reject(error);
        },
      );
    });
  }
}
