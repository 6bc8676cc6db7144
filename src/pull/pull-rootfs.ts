import { PassThrough, type Readable, type Writable } from 'node:stream';
import { concat, defer, endWith, finalize, map, merge, mergeMap, Observable, of, Subject, switchMap, takeWhile, throwError } from 'rxjs';
import { AbortError, toOciRootfsError } from '../errors.js';
import { registryClientOptions } from '../queries/options.js';
import { resolveImage, type ResolvedImage } from '../queries/resolve.js';
import type { RegistryClientOptions } from '../registry/client.js';
import { openStore } from '../stores/index.js';
import type { ImageStore } from '../stores/store.js';
import type { PullEvent, ResolvedEvent } from './events.js';
import { flattenTo$, type FlattenToOptions, type RestartableOutput } from './flatten-to.js';
import { layerSources, type LayerSourceOptions } from '../stores/layer-sources.js';
import type { PullOptions } from './pull-options.js';
import { passThrough, passthroughLayer, type PassthroughOutput } from './passthrough.js';

export interface PullRootfs$Options extends PullOptions, FlattenToOptions {
  /**
   * Where the uncompressed tar goes; it is ended on success and destroyed on failure. A
   * {@link RestartableOutput} (a file, e.g. `createAtomicFile()`) gets each path once and a
   * second fetch of a layer damaged in transit, starting over when needed (a `retry` event
   * with `what: 'output'` or the layer says why); a plain stream cannot start over, so a path
   * that a layer holds twice is written twice, with a `DUPLICATE_PATH` warning.
   */
  output: Writable | RestartableOutput;
  /**
   * Told the resolved image (manifest and config bytes included) before the first layer
   * is fetched: what `--config-out` writes, with no second request for the config.
   */
  onResolved?: (image: ResolvedImage) => void;
  /**
   * Pass a single gzip layer through as its own bytes when `output` can take them (a
   * {@link PassthroughOutput}: a gzip file) and nothing in it would be changed by flattening
   * (default true; `--no-passthrough`). The `done` event's `path` says what ran.
   */
  passthrough?: boolean;
}

const FINISHED = Symbol('finished');

/**
 * The whole pull as events: resolve, then stream every layer through the flattener into
 * `options.output`. `reference` is a registry reference, `oci:DIR[:TAG]` or
 * `docker-archive:FILE[:REPO:TAG]`. Completes after the last byte reached `output`; fails
 * with an `OciRootfsError`; unsubscribing (or aborting `options.signal`) stops every
 * request and the pipeline.
 *
 * @example
 * ```ts
 * pullRootfs$('alpine:3.20', { output: createWriteStream('alpine.tar') })
 *   .pipe(filter((e) => e.type === 'layer-done'))
 *   .subscribe((e) => console.log(`layer ${e.index} done`));
 * ```
 */
export function pullRootfs$(reference: string, options: PullRootfs$Options): Observable<PullEvent> {
  return defer(() => {
    const started = Date.now();
    // Retries, resumes, rate limits and progress happen below the flow of layers; they reach
    // the subscriber through this subject, merged into the events.
    const network$ = new Subject<PullEvent>();
    /** Stored bytes received per layer (all passes), for `layer-done`; their sum for `done`. */
    const bytesInByLayer = new Map<number, number>();
    let bytesIn = 0;
    const counters: LayerSourceOptions = {
      onBytes: (index, bytes) => {
        bytesIn += bytes;
        bytesInByLayer.set(index, (bytesInByLayer.get(index) ?? 0) + bytes);
      },
      onProgress: (index, bytes, total) => network$.next({ type: 'progress', index, bytes, total }),
      onResume: (index, offset) => network$.next({ type: 'resume', index, offset }),
      ...(options.timeoutMs === undefined ? {} : { checkTimeoutMs: options.timeoutMs }),
    };
    const store = openStore(reference, {
      registry: {
        ...clientOptions(options),
        onRetry: (notice) => network$.next({ type: 'retry', ...notice }),
        onRateLimit: (info) => network$.next({ type: 'rate-limit', ...info }),
        onWarning: (warning) => network$.next({ type: 'warning', ...warning }),
      },
      ...(options.allowForeign === undefined ? {} : { allowForeign: options.allowForeign }),
    });
    // Done or abandoned, nothing in flight is wanted: close every socket now (a graceful
    // close would wait on a request that an abort has not yet torn down).
    const close = (): void => void store.destroy();

    const pull$ = resolveImage$(store, options).pipe(
      map((image) => {
        options.onResolved?.(image);
        return {
          resolved: resolvedEvent(reference, image),
          layers: layerSources(store, image.layers, counters),
          passthrough: passthroughLayer(image.layers, options.output, options),
        };
      }),
      switchMap(({ resolved, layers, passthrough }) => {
        let bytesOut = 0;
        let entries = 0;
        let path: 'passthrough' | 'flatten' = 'flatten';
        const flatten$ = (output: Writable | RestartableOutput): Observable<PullEvent> => flattenTo$(layers, output, options).pipe(
          mergeMap((event): PullEvent[] => {
            if (event.type === 'end') {
              bytesOut = event.bytesOut;
              return [];
            }
            if (event.type === 'warning') return [{ type: 'warning', code: event.code, message: event.message }];
            if (event.type === 'restart') {
              entries = 0;
              return [{ type: 'retry', what: event.what, attempt: event.attempt, reason: event.reason, delayMs: 0 }];
            }
            const layer = resolved.layers[event.index];
            if (event.type === 'layer-start') {
              return [{ type: 'layer-start', index: event.index, digest: layer?.digest ?? '', size: layer?.size ?? 0 }];
            }
            entries += event.entriesWritten;
            return [
              {
                type: 'layer-done',
                index: event.index,
                bytesIn: bytesInByLayer.get(event.index) ?? 0,
                bytesOut: event.bytesOut,
                entriesWritten: event.entriesWritten,
                entriesSkipped: event.entriesSkipped,
              },
            ];
          }),
        );
        const done$ = defer(() =>
          of<PullEvent>({
            type: 'done',
            manifestDigest: resolved.manifestDigest,
            bytesIn,
            bytesOut,
            entries,
            seconds: (Date.now() - started) / 1000,
            path,
          }),
        );
        if (passthrough === undefined) return concat(of(resolved), flatten$(options.output), done$);
        const output = options.output as PassthroughOutput;
        const layer = resolved.layers[0]!;
        const tried$ = (attempt: number): Observable<PullEvent> => passThrough$(store, passthrough, output, counters, attempt).pipe(
          mergeMap((outcome): Observable<PullEvent> => {
            if (outcome.passed) {
              path = 'passthrough';
              bytesOut = outcome.tarBytes;
              entries = outcome.entries;
              const done: PullEvent = {
                type: 'layer-done',
                index: 0,
                bytesIn: bytesInByLayer.get(0) ?? 0,
                bytesOut: outcome.tarBytes,
                entriesWritten: outcome.entries,
                entriesSkipped: 0,
              };
              return of(done);
            }
            if ('damaged' in outcome) {
              // Damaged on the way: once more, as the normal path fetches a damaged layer
              // once more; the output must not depend on the network.
              if (attempt > 0) return throwError(() => outcome.damaged);
              const what = `layer 0 (${layer.digest})`;
              const retry: PullEvent = { type: 'retry', what, attempt: attempt + 1, reason: outcome.reason, delayMs: 0 };
              return concat(of(retry), tried$(attempt + 1));
            }
            const retry: PullEvent = { type: 'retry', what: 'output', attempt: attempt + 1, reason: outcome.reason, delayMs: 0 };
            // The pass-through's attempts came first: the flatten's come after them.
            return concat(of(retry), flatten$({ open: (number: number) => output.open(number + attempt + 1) }));
          }),
        );
        const start: PullEvent = { type: 'layer-start', index: 0, digest: layer.digest, size: layer.size };
        return concat(of(resolved, start), tried$(0), done$);
      }),
    );
    return merge(pull$.pipe(endWith(FINISHED)), network$, abortError$(options.signal)).pipe(
      takeWhile((event): event is PullEvent => event !== FINISHED),
      finalize(() => {
        network$.complete();
        close();
      }),
    );
  });
}

/** {@link passThrough} as a cold Observable: unsubscribing aborts it. */
function passThrough$(
  store: ImageStore,
  layer: Parameters<typeof passThrough>[1],
  output: PassthroughOutput,
  counters: LayerSourceOptions,
  attempt: number,
): Observable<Awaited<ReturnType<typeof passThrough>>> {
  return new Observable((subscriber) => {
    const controller = new AbortController();
    passThrough(store, layer, output, { signal: controller.signal, counters, attempt }).then(
      (outcome) => {
        subscriber.next(outcome);
        subscriber.complete();
      },
      (error: unknown) => subscriber.error(error),
    );
    return () => controller.abort();
  });
}

/**
 * The resolve step as one cold Observable: each subscription resolves anew, and
 * unsubscribing aborts the requests in flight.
 */
function resolveImage$(store: ImageStore, options: PullOptions): Observable<ResolvedImage> {
  return new Observable<ResolvedImage>((subscriber) => {
    const controller = new AbortController();
    resolveImage(store, {
      signal: controller.signal,
      ...(options.platform === undefined ? {} : { platform: options.platform }),
      ...(options.allowForeign === undefined ? {} : { allowForeign: options.allowForeign }),
    }).then(
      (image) => {
        subscriber.next(image);
        subscriber.complete();
      },
      (error: unknown) => subscriber.error(error),
    );
    return () => controller.abort();
  });
}

/**
 * The whole pull as one uncompressed tar stream. The stream fails with an `OciRootfsError`
 * on any failure, before the end-of-archive marker, so a consumer never mistakes a
 * truncated rootfs for a whole one. Destroying the stream aborts the pull.
 *
 * @example
 * ```ts
 * await pipeline(pullRootfs('alpine:3.20'), createWriteStream('alpine.tar'));
 * ```
 */
export function pullRootfs(
  reference: string,
  options: PullOptions & FlattenToOptions & Pick<PullRootfs$Options, 'onResolved'> & { onEvent?: (event: PullEvent) => void } = {},
): Readable {
  const output = new PassThrough({ highWaterMark: 256 * 1024 });
  let failed = false;
  const subscription = pullRootfs$(reference, { ...options, output }).subscribe({
    next: (event) => options.onEvent?.(event),
    error: (error: unknown) => {
      failed = true;
      output.destroy(toOciRootfsError(error));
    },
  });
  // A consumer that destroys the stream early stops the pull; one that read it to the end
  // has not stopped anything, and the `done` event is still to come.
  output.once('close', () => {
    if (!failed && !output.readableEnded) subscription.unsubscribe();
  });
  return output;
}

function clientOptions(options: PullOptions): RegistryClientOptions {
  return {
    ...registryClientOptions(options),
    // The bare client tries once; a pull always retries (DESIGN.md §4).
    retry: {
      ...(options.retries === undefined ? {} : { retries: options.retries }),
      ...(options.maxWaitMs === undefined ? {} : { maxWaitMs: options.maxWaitMs }),
      ...(options.retryBaseDelayMs === undefined ? {} : { baseDelayMs: options.retryBaseDelayMs }),
      ...(options.retryMaxDelayMs === undefined ? {} : { maxDelayMs: options.retryMaxDelayMs }),
    },
  };
}

/** The `resolved` event of an image, wherever it came from. */
function resolvedEvent(reference: string, image: ResolvedImage): ResolvedEvent {
  return {
    type: 'resolved',
    reference,
    ...(image.indexDigest === undefined ? {} : { indexDigest: image.indexDigest }),
    manifestDigest: image.manifestDigest,
    manifestMediaType: image.manifestMediaType,
    platform: {
      os: image.platform.os,
      architecture: image.platform.architecture,
      ...(image.platform.variant === undefined ? {} : { variant: image.platform.variant }),
    },
    configDigest: image.config.digest,
    layers: image.layers.map((layer, index) => ({ index, digest: layer.digest, size: layer.size, mediaType: layer.mediaType })),
  };
}

/** Fails with an {@link AbortError} when `signal` aborts; never emits or completes otherwise. */
function abortError$(signal: AbortSignal | undefined): Observable<never> {
  return new Observable<never>((subscriber) => {
    if (!signal) return undefined;
    const onAbort = (): void => subscriber.error(new AbortError({ cause: signal.reason }));
    if (signal.aborted) {
      onAbort();
      return undefined;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    return () => signal.removeEventListener('abort', onAbort);
  });
}
