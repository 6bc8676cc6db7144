import { R_WRITTEN, flagsOf, ordinalOf, type LayerState } from './layer-state.js';
import type { PathKey } from './paths.js';

/** Per layer index, tar ordinals of entries that a later entry of the same layer replaces. */
export type Superseded = ReadonlyMap<number, ReadonlySet<number>>;

/** What earlier attempts of a restartable flatten learnt; the next attempt needs it. */
export interface FlattenLessons {
  /** Entries to leave out so that each path is written once (they still serve as hardlink sources). */
  superseded: Superseded;
  /** Layers already fetched again after a damaged download: another failure is final. */
  refetched: ReadonlySet<number>;
}

/**
 * Thrown by a flatten with `restartable: true` when the output must start over; nothing it
 * wrote is wanted. Start a new attempt on an emptied output with `lessons`. Each restart
 * learns something new (a layer's duplicates, a layer to fetch again), so they are few: one
 * for all the duplicates of the image, one per damaged download.
 */
export class FlattenRestart extends Error {
  constructor(
    readonly lessons: FlattenLessons,
    /** Why, in words, for a `retry` event. */
    readonly reason: string,
    /** The layer fetched again, when a damaged download is the reason. */
    readonly refetch?: { index: number; name: string; error: unknown },
  ) {
    super(reason);
    this.name = 'FlattenRestart';
  }
}

/** Paths named in a `DUPLICATE_PATH` warning. */
const MAX_EXAMPLES = 3;

/**
 * One entry per path (DESIGN.md §3, duplicate paths inside one layer): what this attempt was
 * told to leave out, what it learns to leave out next time, and whether it must start over.
 */
export class DuplicateLedger {
  /** Entries this attempt found replaced by a later same-layer entry at the same path. */
  private readonly learned = new Map<number, Set<number>>();
  /** A restartable flatten found a path written twice: it reads on, writing nothing. */
  discarding = false;

  constructor(
    private readonly given: FlattenLessons | undefined,
    private readonly restartable: boolean,
  ) {}

  /** Whether an earlier attempt learnt that a later entry of the layer replaces this one. */
  superseded(layer: number, ordinal: number): boolean {
    return this.given?.superseded.get(layer)?.has(ordinal) === true;
  }

  /** Whether `layer` was fetched again already (a second damaged download is final). */
  refetched(layer: number): boolean {
    return this.given?.refetched.has(layer) === true;
  }

  /**
   * A later entry of the same layer replaces the entry at `key`, and the output would hold a
   * path twice: `key` itself (`rewritten`: both written), or the hardlinks of higher layers
   * that the earlier entry took and that are written again after this one. Learnt, so that a
   * restart leaves the earlier entry out; a restartable flatten stops writing from here on.
   */
  note(key: PathKey, state: LayerState, rewritten: boolean): void {
    const previous = state.get(key);
    if (previous === undefined) return;
    if (!(rewritten && flagsOf(previous) & R_WRITTEN) && !state.watchHits.has(key)) return;
    const ordinal = ordinalOf(previous);
    let ordinals = this.learned.get(state.index);
    if (ordinals === undefined) this.learned.set(state.index, (ordinals = new Set()));
    if (ordinals.has(ordinal)) return;
    ordinals.add(ordinal);
    state.duplicates++;
    if (state.duplicateExamples.length < MAX_EXAMPLES) state.duplicateExamples.push(key);
    if (this.restartable) this.discarding = true;
  }

  /** What the next attempt must know; `failed`: a layer whose learnings cannot be trusted. */
  lessons(failed: number | undefined): FlattenLessons {
    const superseded = new Map<number, Set<number>>();
    for (const [layer, ordinals] of this.given?.superseded ?? []) superseded.set(layer, new Set(ordinals));
    for (const [layer, ordinals] of this.learned) {
      if (layer === failed) continue;
      const set = superseded.get(layer) ?? new Set<number>();
      for (const ordinal of ordinals) set.add(ordinal);
      superseded.set(layer, set);
    }
    const refetched = new Set(this.given?.refetched ?? []);
    if (failed !== undefined) refetched.add(failed);
    return { superseded, refetched };
  }
}
