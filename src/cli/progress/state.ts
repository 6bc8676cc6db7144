/**
 * What the progress display knows, folded from `PullEvent`s. No I/O and an injected clock,
 * so every number a display shows can be tested without a terminal or a registry.
 */
import type { DoneEvent, PullEvent, ResolvedEvent } from '../../index.js';

/** How far back a rate looks: long enough to smooth bursts, short enough to follow a stall. */
const RATE_WINDOW_MS = 3_000;

/** Bytes per second over the last few seconds of samples. */
export class RateWindow {
  readonly #samples: Array<{ at: number; bytes: number }> = [];

  /** Records that `bytes` (a running total) had been reached at `at` (ms). */
  sample(at: number, bytes: number): void {
    this.#samples.push({ at, bytes });
    while (this.#samples.length > 2 && (this.#samples[1]?.at ?? at) <= at - RATE_WINDOW_MS) this.#samples.shift();
  }

  /** The rate up to `now`; undefined until there are two samples a little apart. */
  rate(now: number): number | undefined {
    const first = this.#samples[0];
    const last = this.#samples[this.#samples.length - 1];
    if (first === undefined || last === undefined || last === first) return undefined;
    // Measured to `now`, not to the last sample, so a stalled download shows its rate falling.
    const span = Math.max(now, last.at) - first.at;
    return span < 100 ? undefined : ((last.bytes - first.bytes) * 1000) / span;
  }
}

export type LayerState = 'waiting' | 'active' | 'done';

export interface LayerProgress {
  /** Position in the manifest, base first. */
  index: number;
  digest: string;
  /** Compressed size. */
  size: number;
  state: LayerState;
  /** Compressed bytes of the current pass (a re-read starts again from 0). */
  bytes: number;
  /** Compressed bytes of every pass, for the layer's rate. */
  received: number;
  readonly rate: RateWindow;
  entriesWritten?: number;
  entriesSkipped?: number;
}

/** The pull as the display sees it. */
export class PullProgress {
  resolved: ResolvedEvent | undefined;
  done: DoneEvent | undefined;
  layers: LayerProgress[] = [];
  /** Every compressed byte received, re-reads included: what the total rate is made of. */
  received = 0;
  readonly started: number;
  readonly #rate = new RateWindow();
  readonly #now: () => number;

  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
    this.started = now();
  }

  apply(event: PullEvent): void {
    const now = this.#now();
    switch (event.type) {
      case 'resolved':
        this.resolved = event;
        this.layers = event.layers.map((layer) => ({
          index: layer.index,
          digest: layer.digest,
          size: layer.size,
          state: 'waiting',
          bytes: 0,
          received: 0,
          rate: new RateWindow(),
        }));
        this.#rate.sample(now, 0);
        break;
      case 'layer-start': {
        const layer = this.layers[event.index];
        if (layer === undefined) break;
        if (layer.state === 'waiting') layer.state = 'active';
        // The rate of the layer counts from its start, not from its first progress report.
        layer.rate.sample(now, layer.received);
        break;
      }
      case 'progress': {
        const layer = this.layers[event.index];
        if (layer === undefined) break;
        // Fewer bytes than before means a new pass over the layer (a re-read); every byte counts.
        const delta = event.bytes >= layer.bytes ? event.bytes - layer.bytes : event.bytes;
        this.received += delta;
        layer.bytes = event.bytes;
        if (layer.state === 'waiting') layer.state = 'active';
        layer.received += delta;
        layer.rate.sample(now, layer.received);
        this.#rate.sample(now, this.received);
        break;
      }
      case 'layer-done': {
        const layer = this.layers[event.index];
        if (layer === undefined) break;
        layer.state = 'done';
        layer.bytes = layer.size;
        layer.entriesWritten = event.entriesWritten;
        layer.entriesSkipped = event.entriesSkipped;
        break;
      }
      case 'done':
        this.done = event;
        break;
      default:
        break;
    }
  }

  /** Milliseconds since the display started. */
  elapsedMs(): number {
    return this.#now() - this.started;
  }

  /** Compressed bytes of the image. */
  totalBytes(): number {
    return this.layers.reduce((sum, layer) => sum + layer.size, 0);
  }

  /** Compressed bytes read so far, counting each layer at most once. */
  doneBytes(): number {
    return this.layers.reduce((sum, layer) => sum + Math.min(layer.bytes, layer.size), 0);
  }

  /** Bytes per second over the last seconds, all layers together. */
  rate(): number | undefined {
    return this.#rate.rate(this.#now());
  }

  /** The rate of one layer while it is being read. */
  layerRate(layer: LayerProgress): number | undefined {
    return layer.state === 'active' ? layer.rate.rate(this.#now()) : undefined;
  }

  /** Seconds left for the whole image at the current rate. */
  eta(): number | undefined {
    return etaOf(this.totalBytes() - this.doneBytes(), this.rate());
  }

  layerEta(layer: LayerProgress): number | undefined {
    return etaOf(layer.size - layer.bytes, this.layerRate(layer));
  }
}

function etaOf(remaining: number, rate: number | undefined): number | undefined {
  if (rate === undefined || rate <= 0) return undefined;
  return Math.max(0, remaining) / rate;
}
