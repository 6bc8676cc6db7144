import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Observable } from 'rxjs';
import {
  flattenLayers,
  FlattenRestart,
  type FlattenLayer,
  type FlattenLessons,
  type FlattenOptions,
  type LayerFlattenStats,
} from '../flatten/flatten.js';

export interface FlattenToOptions {
  /** Applied after the flatten decision: a left-out path still hides its lower copies. */
  filter?: FlattenOptions['filter'];
  /** Bytes of hidden same-layer files kept for hardlinks before a layer is read again. */
  hiddenBodyBudget?: number;
  /** Write sparse files expanded (holes as zeros) instead of sparse (`--expand-sparse`). */
  expandSparse?: boolean;
}

/**
 * An output that can start over: a file can (truncate it), stdout cannot. Given one, a pull
 * writes each path once (a layer that holds a path twice makes it start over knowing which
 * entry to leave out) and fetches a layer damaged in transit once more (DESIGN.md §3).
 *
 * @example
 * ```ts
 * const file = await createAtomicFile('rootfs.tar'); // src/streams/output-file.ts
 * try {
 *   await lastValueFrom(pullRootfs$('alpine:3.20', { output: file }));
 *   await file.commit();
 * } finally {
 *   await file.discard();
 * }
 * ```
 */
export interface RestartableOutput {
  /**
   * A stream for attempt `attempt` (0 first) that starts an empty output: whatever earlier
   * attempts wrote is gone. The stream of the previous attempt has been destroyed (with the
   * reason) before this is called; the last stream is ended on success.
   */
  open(attempt: number): Writable | Promise<Writable>;
}

/** What the flatten stage reports; `pullRootfs$` turns these into `PullEvent`s. */
export type FlattenEvent =
  | { type: 'layer-start'; index: number }
  /** `bytesOut`: tar bytes written while this layer was read (held entries land in a later layer's count). */
  | ({ type: 'layer-done'; bytesOut: number } & LayerFlattenStats)
  | { type: 'warning'; code: string; message: string; layer?: number }
  /**
   * The output starts over (only a {@link RestartableOutput}): attempt `attempt` (1 for the
   * first restart) begins; `what` is the layer fetched again, or `output`.
   */
  | { type: 'restart'; attempt: number; what: string; reason: string }
  /** Last, once `output` has every byte: the whole tar's size, end-of-archive marker included. */
  | { type: 'end'; bytesOut: number };

/** A bound on restarts, beyond the one per layer and the one for duplicates that can happen. */
const EXTRA_ATTEMPTS = 2;

/** Whether `output` is a stream (written once) rather than a {@link RestartableOutput}. */
function isStream(output: Writable | RestartableOutput): output is Writable {
  return typeof (output as Partial<Writable>).write === 'function';
}

/**
 * The byte stage as an Observable boundary: subscribing runs the flattened tar through
 * `stream.pipeline` into `output`; events say which layer is being read; completion means
 * `output` has received every byte and finished. Unsubscribing aborts the pipeline, which
 * destroys `output` too. Bytes never travel through `next()`.
 *
 * A {@link RestartableOutput} is written with one entry per path, and may be started over
 * (a `restart` event says why); a plain stream gets a duplicated path twice, with a warning.
 *
 * @example
 * ```ts
 * flattenTo$(layers, createWriteStream('rootfs.tar')).subscribe({ complete: () => console.log('done') });
 * ```
 */
export function flattenTo$(
  layers: readonly FlattenLayer[],
  output: Writable | RestartableOutput,
  options: FlattenToOptions = {},
): Observable<FlattenEvent> {
  return new Observable<FlattenEvent>((subscriber) => {
    const controller = new AbortController();
    const restartable = !isStream(output);
    let bytesOut = 0;
    // An attempt after a restart reads the same layers again: say each thing once.
    const warned = new Set<string>();
    const attempt = async (number: number, lessons: FlattenLessons | undefined): Promise<void> => {
      const sink = isStream(output) ? output : await output.open(number);
      bytesOut = 0;
      let bytesOutAtLayerStart = 0;
      const tar = flattenLayers(layers, {
        signal: controller.signal,
        ...(options.filter === undefined ? {} : { filter: options.filter }),
        ...(options.hiddenBodyBudget === undefined ? {} : { hiddenBodyBudget: options.hiddenBodyBudget }),
        ...(options.expandSparse === undefined ? {} : { expandSparse: options.expandSparse }),
        ...(restartable ? { restartable } : {}),
        ...(lessons === undefined ? {} : { lessons }),
        onLayerStart: (index) => {
          bytesOutAtLayerStart = bytesOut;
          subscriber.next({ type: 'layer-start', index });
        },
        onLayerDone: (stats) => subscriber.next({ type: 'layer-done', bytesOut: bytesOut - bytesOutAtLayerStart, ...stats }),
        onWarning: (warning) => {
          const key = `${warning.code}\0${warning.message}`;
          if (warned.has(key)) return;
          warned.add(key);
          subscriber.next({ type: 'warning', ...warning });
        },
      });
      async function* counted(): AsyncGenerator<Buffer> {
        for await (const chunk of tar) {
          bytesOut += chunk.length;
          yield chunk;
        }
      }
      await pipeline(Readable.from(counted(), { objectMode: false }), sink, { signal: controller.signal });
    };
    const attempts = async (): Promise<void> => {
      let lessons: FlattenLessons | undefined;
      for (let number = 0; ; number++) {
        try {
          await attempt(number, lessons);
          return;
        } catch (error) {
          if (!(error instanceof FlattenRestart) || number >= layers.length + EXTRA_ATTEMPTS) throw error;
          lessons = error.lessons;
          const what = error.refetch === undefined ? 'output' : `layer ${error.refetch.index} (${error.refetch.name})`;
          subscriber.next({ type: 'restart', attempt: number + 1, what, reason: error.message });
        }
      }
    };
    attempts().then(
      () => {
        subscriber.next({ type: 'end', bytesOut });
        subscriber.complete();
      },
      (error: unknown) => subscriber.error(error),
    );
    return () => controller.abort();
  });
}
