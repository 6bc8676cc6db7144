import { PassThrough, type Readable, type Writable } from 'node:stream';
import { concat, defer, endWith, map, merge, Observable, of, Subject, switchMap, takeWhile, finalize } from 'rxjs';
import { AbortError, toOciRootfsError } from '../errors.js';
import { parseReference } from '../reference/index.js';
import { RegistryClient, type RegistryClientOptions } from '../registry/client.js';
import type { ResolvedImage } from '../registry/manifest.js';
import type { PullEvent, ResolvedEvent } from './events.js';
import { flattenTo$, type FlattenToOptions } from './flatten-to.js';
import { layerSources } from './layer-sources.js';
import type { PullOptions } from './pull-options.js';
import { resolveImage$ } from './resolve-image.js';

export interface PullRootfs$Options extends PullOptions, FlattenToOptions {
  /** Where the uncompressed tar goes; it is ended on success and destroyed on failure. */
  output: Writable;
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
    const ref = parseReference(reference);
    const client = RegistryClient.for(ref, clientOptions(options));
    let bytesIn = 0;
    let bytesOut = 0;
    let entries = 0;

    const pull$ = resolveImage$(client, ref, options.platform === undefined ? {} : { platform: options.platform }).pipe(
      switchMap((image) => {
        const progress$ = new Subject<PullEvent>();
        const sources = layerSources(client, ref, image.layers, {
          onBytes: (_index, bytes) => (bytesIn += bytes),
          onProgress: (index, bytes, total) => progress$.next({ type: 'progress', index, bytes, total }),
        });
        const flatten$ = flattenTo$(sources, options.output, options).pipe(
          map((event): PullEvent => {
            const layer = image.layers[event.index];
            if (event.type === 'layer-start') {
              return { type: 'layer-start', index: event.index, digest: layer?.digest ?? '', size: layer?.size ?? 0 };
            }
            entries += event.entriesWritten;
            bytesOut = event.bytesOut;
            return {
              type: 'layer-done',
              index: event.index,
              bytesIn,
              bytesOut: event.bytesOut,
              entriesWritten: event.entriesWritten,
              entriesSkipped: event.entriesSkipped,
            };
          }),
          finalize(() => progress$.complete()),
        );
        const done$ = defer(() =>
          of<PullEvent>({
            type: 'done',
            manifestDigest: image.manifestDigest,
            bytesIn,
            bytesOut,
            entries,
            seconds: (Date.now() - started) / 1000,
          }),
        );
        return concat(of(resolvedEvent(reference, image)), merge(flatten$, progress$), done$);
      }),
    );
    return merge(pull$.pipe(endWith(FINISHED)), abortError$(options.signal)).pipe(
      takeWhile((event): event is PullEvent => event !== FINISHED),
      finalize(() => void client.close()),
    );
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
  // A consumer that destroys the stream early stops the pull.
  output.once('close', () => {
    if (!failed) subscription.unsubscribe();
  });
  return output;
}

function clientOptions(options: PullOptions): RegistryClientOptions {
  return {
    ...(options.plainHttp === undefined ? {} : { plainHttp: options.plainHttp }),
    ...(options.username === undefined ? {} : { username: options.username }),
    ...(options.password === undefined ? {} : { password: options.password }),
    ...(options.dockerConfigDir === undefined ? {} : { dockerConfigDir: options.dockerConfigDir }),
  };
}

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
    layers: image.layers.map((layer, index) => ({
      index,
      digest: layer.digest,
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
