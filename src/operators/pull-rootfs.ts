import { PassThrough, type Readable, type Writable } from 'node:stream';
import { concat, defer, endWith, finalize, map, merge, mergeMap, Observable, of, Subject, switchMap, takeWhile } from 'rxjs';
import { AbortError, toOciRootfsError } from '../errors.js';
import { parseReference } from '../reference/index.js';
import { RegistryClient, type RegistryClientOptions } from '../registry/client.js';
import type { ResolvedImage } from '../registry/manifest.js';
import type { Platform } from '../registry/platform.js';
import type { PullEvent, ResolvedEvent } from './events.js';
import { flattenTo$, type FlattenToOptions, type RestartableOutput } from './flatten-to.js';
import type { FlattenLayer } from '../flatten/flatten.js';
import { openSource, parseSourceReference, type SourceImage, type SourceReference } from '../sources/index.js';
import { layerSources, type LayerSourceOptions } from './layer-sources.js';
import { connectionOptions, type PullOptions } from './pull-options.js';
import { resolveImage$ } from './resolve-image.js';

export interface PullRootfs$Options extends PullOptions, FlattenToOptions {
  /**
   * Where the uncompressed tar goes; it is ended on success and destroyed on failure. A
   * {@link RestartableOutput} (a file, e.g. `createAtomicFile()`) gets each path once and a
   * second fetch of a layer damaged in transit, starting over when needed (a `retry` event
   * with `what: 'output'` or the layer says why); a plain stream cannot start over, so a path
   * that a layer holds twice is written twice, with a `DUPLICATE_PATH` warning.
   */
  output: Writable | RestartableOutput;
}

const FINISHED = Symbol('finished');

/**
 * The whole pull as events: resolve, then stream every layer through the flattener into
 * `options.output`. Completes after the last byte reached `output`; fails with an
 * `OciRootfsError`; unsubscribing (or aborting `options.signal`) stops every request and
 * the pipeline.
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
    const source = parseSourceReference(reference);
    // Retries, resumes, rate limits and progress happen below the flow of layers; they reach
    // the subscriber through this subject, merged into the events.
    const network$ = new Subject<PullEvent>();
    let bytesIn = 0;
    const counters: LayerSourceOptions = {
      onBytes: (_index, bytes) => (bytesIn += bytes),
      onProgress: (index, bytes, total) => network$.next({ type: 'progress', index, bytes, total }),
      onResume: (index, offset) => network$.next({ type: 'resume', index, offset }),
      ...(options.timeoutMs === undefined ? {} : { checkTimeoutMs: options.timeoutMs }),
    };
    let close = (): void => undefined;
    let opened$: Observable<OpenedImage>;
    if (source.kind === 'registry') {
      const ref = parseReference(source.reference);
      const client = RegistryClient.for(ref, {
        ...clientOptions(options),
        onRetry: (notice) => network$.next({ type: 'retry', ...notice }),
        onRateLimit: (info) => network$.next({ type: 'rate-limit', ...info }),
        onWarning: (warning) => network$.next({ type: 'warning', ...warning }),
      });
      // Done or abandoned, nothing in flight is wanted: close every socket now (a graceful
      // close would wait on a request that an abort has not yet torn down).
      close = () => void client.destroy();
      opened$ = resolveImage$(client, ref, {
        ...(options.platform === undefined ? {} : { platform: options.platform }),
        ...(options.allowForeign === undefined ? {} : { allowForeign: options.allowForeign }),
      }).pipe(
        map((image) => ({
          resolved: resolvedEvent(reference, image),
          layers: layerSources(client, ref, image.layers, counters),
        })),
      );
    } else {
      opened$ = openLocalSource$(reference, source, options);
    }

    const pull$ = opened$.pipe(
      switchMap(({ resolved, layers }) => {
        let bytesOut = 0;
        let entries = 0;
        const flatten$ = flattenTo$(layers, options.output, options).pipe(
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
                bytesIn,
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
          }),
        );
        return concat(of(resolved), flatten$, done$);
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

/** An image resolved to its layers, wherever it came from. */
interface OpenedImage {
  resolved: ResolvedEvent;
  layers: FlattenLayer[];
}

/** `oci:DIR[:TAG]` and `docker-archive:FILE[:REF]`: the same flatten, fed from local files. */
function openLocalSource$(reference: string, source: SourceReference, options: PullRootfs$Options): Observable<OpenedImage> {
  return new Observable<OpenedImage>((subscriber) => {
    const controller = new AbortController();
    openSource(source, {
      signal: controller.signal,
      ...(options.platform === undefined ? {} : { platform: options.platform }),
      ...(options.allowForeign === undefined ? {} : { allowForeign: options.allowForeign }),
    }).then(
      ({ image, layers }) => {
        subscriber.next({ resolved: sourceResolvedEvent(reference, image), layers });
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
  options: PullOptions & FlattenToOptions & { onEvent?: (event: PullEvent) => void } = {},
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
    ...connectionOptions(options),
    // The bare client tries once; a pull always retries (DESIGN.md §4).
    retry: {
      ...(options.retries === undefined ? {} : { retries: options.retries }),
      ...(options.maxWaitMs === undefined ? {} : { maxWaitMs: options.maxWaitMs }),
      ...(options.retryBaseDelayMs === undefined ? {} : { baseDelayMs: options.retryBaseDelayMs }),
      ...(options.retryMaxDelayMs === undefined ? {} : { maxDelayMs: options.retryMaxDelayMs }),
    },
  };
}

function resolvedEvent(reference: string, image: ResolvedImage): ResolvedEvent {
  return describeImage(reference, image, image.manifestDigest, image.manifestMediaType, (layer) => layer.digest);
}

function sourceResolvedEvent(reference: string, image: SourceImage): ResolvedEvent {
  return describeImage(
    reference,
    image,
    // A `docker save` archive has no manifest: its config digest is the image ID.
    image.manifestDigest ?? image.config.digest,
    image.manifestMediaType ?? image.source.kind,
    (layer) => layer.digest ?? layer.diffId,
  );
}

/** The `resolved` event of an image, from a registry or a local source alike. */
function describeImage<L extends { size: number; mediaType: string }>(
  reference: string,
  image: { indexDigest?: string; platform: Platform; config: { digest: string }; layers: readonly L[] },
  manifestDigest: string,
  manifestMediaType: string,
  digestOf: (layer: L) => string,
): ResolvedEvent {
  return {
    type: 'resolved',
    reference,
    ...(image.indexDigest === undefined ? {} : { indexDigest: image.indexDigest }),
    manifestDigest,
    manifestMediaType,
    platform: {
      os: image.platform.os,
      architecture: image.platform.architecture,
      ...(image.platform.variant === undefined ? {} : { variant: image.platform.variant }),
    },
    configDigest: image.config.digest,
    layers: image.layers.map((layer, index) => ({
      index,
      digest: digestOf(layer),
      size: layer.size,
      mediaType: layer.mediaType,
    })),
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
