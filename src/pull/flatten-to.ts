import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Observable } from 'rxjs';
import {
  flattenLayers,
  type FlattenLayer,
  type FlattenOptions,
  type LayerFlattenStats,
} from '../flatten/flatten.js';

export interface FlattenToOptions {
  /** Applied after the flatten decision: a left-out path still hides its lower copies. */
  filter?: FlattenOptions['filter'];
  /** Bytes of hidden same-layer files kept for hardlinks before a layer is read again. */
  hiddenBodyBudget?: number;
}

/** What the flatten stage reports; `pullRootfs$` turns these into `PullEvent`s. */
export type FlattenEvent =
  | { type: 'layer-start'; index: number }
  /** `bytesOut`: tar bytes written while this layer was read (held entries land in a later layer's count). */
  | ({ type: 'layer-done'; bytesOut: number } & LayerFlattenStats)
  /** Last, once `output` has every byte: the whole tar's size, end-of-archive marker included. */
  | { type: 'end'; bytesOut: number };

/**
 * The byte stage as an Observable boundary: subscribing runs the flattened tar through
 * `stream.pipeline` into `output`; events say which layer is being read; completion means
 * `output` has received every byte and finished. Unsubscribing aborts the pipeline, which
 * destroys `output` too. Bytes never travel through `next()`.
 *
 * @example
 * ```ts
 * flattenTo$(layers, createWriteStream('rootfs.tar')).subscribe({ complete: () => console.log('done') });
 * ```
 */
export function flattenTo$(
  layers: readonly FlattenLayer[],
  output: Writable,
  options: FlattenToOptions = {},
): Observable<FlattenEvent> {
  return new Observable<FlattenEvent>((subscriber) => {
    const controller = new AbortController();
    let bytesOut = 0;
    let bytesOutAtLayerStart = 0;
    const tar = flattenLayers(layers, {
      signal: controller.signal,
      ...(options.filter === undefined ? {} : { filter: options.filter }),
      ...(options.hiddenBodyBudget === undefined ? {} : { hiddenBodyBudget: options.hiddenBodyBudget }),
      onLayerStart: (index) => {
        bytesOutAtLayerStart = bytesOut;
        subscriber.next({ type: 'layer-start', index });
      },
      onLayerDone: (stats) => subscriber.next({ type: 'layer-done', bytesOut: bytesOut - bytesOutAtLayerStart, ...stats }),
    });
    async function* counted(): AsyncGenerator<Buffer> {
      for await (const chunk of tar) {
        bytesOut += chunk.length;
        yield chunk;
      }
    }
    pipeline(Readable.from(counted(), { objectMode: false }), output, { signal: controller.signal }).then(
      () => {
        subscriber.next({ type: 'end', bytesOut });
        subscriber.complete();
      },
      (error: unknown) => subscriber.error(error),
    );
    return () => controller.abort();
  });
}
