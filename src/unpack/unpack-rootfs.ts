/**
 * `unpackRootfs$` / `unpackRootfs`: the pull of {@link pullRootfs$}, written to a directory
 * instead of a tar (issue 12).
 */
import { resolve as resolvePath } from 'node:path';
import type { Writable } from 'node:stream';
import { Observable } from 'rxjs';
import { AbortError, toOciRootfsError, UsageError } from '../errors.js';
import type { DoneEvent, PullEvent, WarningEvent } from '../pull/events.js';
import type { FlattenToOptions, RestartableOutput } from '../pull/flatten-to.js';
import type { PullOptions } from '../pull/pull-options.js';
import { pullRootfs$, type PullRootfs$Options } from '../pull/pull-rootfs.js';
import { createDiskSink, type DiskSink } from './disk-sink.js';
import { createPartialDirectory, emptyDirectory, type PartialDirectory } from './partial-directory.js';

export interface UnpackOptions extends PullOptions, FlattenToOptions, Pick<PullRootfs$Options, 'onResolved'> {
  /** Where the rootfs goes: a directory that does not exist yet, or an empty one. */
  dir: string;
  /**
   * Unpack as an unprivileged user would even when running as root (files owned by the
   * caller, devices as empty files, owners in `user.rootlesscontainers`). Default: rootless
   * exactly when the process is not root.
   */
  rootless?: boolean;
}

export interface UnpackResult {
  /** The directory the rootfs is in (absolute). */
  dir: string;
  manifestDigest: string;
  /** Entries written to the tree. */
  entries: number;
  rootless: boolean;
  /** What could not be kept, one summary per kind. */
  warnings: WarningEvent[];
  seconds: number;
}

/**
 * Refuses where Unix metadata cannot be kept (owners, modes, symlinks, device nodes): there
 * the tar from `pull` is the answer, e.g. `wsl --import` on Windows.
 */
export function checkUnpackSupported(platform: NodeJS.Platform = process.platform): void {
  if (platform !== 'linux') {
    throw new UsageError(
      `unpack needs Linux to keep owners, modes, device nodes and xattrs, and this is ${platform}: ` +
        'use "oci-rootfs pull IMAGE -o rootfs.tar" instead (on Windows: wsl --import NAME DIR rootfs.tar)',
    );
  }
}

/**
 * The whole pull into a directory, as events: the same resolve, layers and flatten as
 * {@link pullRootfs$}, with the flattened tar written entry by entry to its final place in a
 * sibling `DIR.partial-*` directory, which becomes `dir` only once everything succeeded and
 * is removed on any failure or abort. Each kind of metadata that could not be kept (rootless:
 * devices, privileged xattrs) is one `warning` event, before `done`.
 *
 * @example
 * ```ts
 * unpackRootfs$('alpine:3.20', { dir: './alpine' })
 *   .subscribe({ next: (e) => e.type === 'warning' && console.warn(e.message) });
 * ```
 */
export function unpackRootfs$(reference: string, options: UnpackOptions): Observable<PullEvent> {
  return new Observable<PullEvent>((subscriber) => {
    const rootless = isRootless(options);
    let stopPull = (): void => undefined;
    let stopSink = (): void => undefined;
    let partial: PartialDirectory | undefined;
    let stopped: Promise<void> = Promise.resolve();
    let settled = false;

    const run = async (): Promise<void> => {
      checkUnpackSupported();
      partial = await createPartialDirectory(options.dir);
      if (subscriber.closed) {
        await partial.remove();
        return;
      }
      const output = createRestartableTree(partial, rootless);
      stopped = output.stopped();
      stopSink = () => {
        // A pull that fails before its first byte never ends or destroys the sink itself.
        output.stop();
        stopped = output.stopped();
      };
      let done: DoneEvent | undefined;
      const { dir: _dir, rootless: _rootless, ...pullOptions } = options;
      await new Promise<void>((resolve, reject) => {
        const subscription = pullRootfs$(reference, { ...pullOptions, output }).subscribe({
          next: (event) => {
            // `done` waits for the rename: until then the rootfs is not where it was asked to be.
            if (event.type === 'done') done = event;
            else subscriber.next(event);
          },
          error: reject,
          complete: resolve,
        });
        stopPull = () => subscription.unsubscribe();
      });
      await output.stopped();
      await partial.commit();
      settled = true;
      for (const warning of output.warnings()) subscriber.next(warning);
      if (done !== undefined) subscriber.next({ ...done, entries: output.entries() });
      subscriber.complete();
    };

    run().catch(async (error: unknown) => {
      settled = true;
      // Nothing may be left behind: wait until the writer has let go of the tree, then remove it.
      stopPull();
      stopSink();
      await stopped;
      await partial?.remove();
      subscriber.error(toOciRootfsError(error));
    });

    return () => {
      if (settled) return;
      // Unsubscribed mid-way: stop, then clean up in the background.
      settled = true;
      stopPull();
      stopSink();
      void stopped.then(() => partial?.remove());
    };
  });
}

/**
 * {@link unpackRootfs$} as one Promise: resolves with what was unpacked once `dir` holds the
 * whole rootfs; rejects with an `OciRootfsError` and leaves nothing behind otherwise.
 *
 * @example
 * ```ts
 * const { dir, warnings } = await unpackRootfs('debian:bookworm', { dir: '/var/lib/machines/debian' });
 * ```
 */
export function unpackRootfs(
  reference: string,
  options: UnpackOptions & { onEvent?: (event: PullEvent) => void },
): Promise<UnpackResult> {
  const { onEvent, ...unpackOptions } = options;
  return new Promise<UnpackResult>((resolve, reject) => {
    const warnings: WarningEvent[] = [];
    let done: DoneEvent | undefined;
    unpackRootfs$(reference, unpackOptions).subscribe({
      next: (event) => {
        if (event.type === 'warning') warnings.push(event);
        if (event.type === 'done') done = event;
        onEvent?.(event);
      },
      error: reject,
      complete: () => {
        resolve({
          dir: resolvePath(options.dir),
          manifestDigest: done?.manifestDigest ?? '',
          entries: done?.entries ?? 0,
          rootless: isRootless(options),
          warnings,
          seconds: done?.seconds ?? 0,
        });
      },
    });
  });
}

/** The partial directory as a {@link RestartableOutput}: one disk sink per attempt. */
interface RestartableTree extends RestartableOutput {
  /** Destroys the current attempt's sink, if any. */
  stop(): void;
  /** Settles once the current attempt's writer touches the tree no more. */
  stopped(): Promise<void>;
  /** What the last attempt could not keep, one summary per kind. */
  warnings(): WarningEvent[];
  /** Entries the last attempt wrote. */
  entries(): number;
}

/**
 * Like a file output, the tree can start over (DESIGN.md §3): a layer that holds a path
 * twice restarts the pull knowing which copy to leave out, and a layer damaged in transit
 * is fetched once more. Each attempt after the first waits for the previous writer to let
 * go, empties the partial directory (keeping it, 0700 and ours) and starts a fresh disk
 * sink, whose warnings alone count: the earlier attempt's tree is gone.
 */
function createRestartableTree(partial: PartialDirectory, rootless: boolean): RestartableTree {
  let sink: DiskSink | undefined;
  let warnings: WarningEvent[] = [];
  let stopped = false;
  return {
    async open(attempt: number): Promise<Writable> {
      if (sink !== undefined) {
        if (!sink.stream.destroyed) sink.stream.destroy();
        await sink.stopped;
        sink = undefined;
      }
      if (attempt > 0) await emptyDirectory(partial.path);
      // Stopped meanwhile: the partial directory is being removed, so start no writer in it.
      if (stopped) throw new AbortError();
      warnings = [];
      const attemptWarnings = warnings;
      sink = createDiskSink(partial.path, {
        rootless,
        onWarning: (warning) => attemptWarnings.push({ type: 'warning', ...warning }),
      });
      return sink.stream;
    },
    stop() {
      stopped = true;
      sink?.stream.destroy();
    },
    stopped: () => sink?.stopped ?? Promise.resolve(),
    warnings: () => warnings,
    entries: () => sink?.entries ?? 0,
  };
}

function isRootless(options: UnpackOptions): boolean {
  return options.rootless === true || (process.geteuid?.() ?? 0) !== 0;
}
