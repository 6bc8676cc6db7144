/**
 * `pull -o FILE`: the pull written to a file that can start over (DESIGN.md §3: each path
 * once, a layer damaged in transit fetched again), through the stages the CLI puts in front
 * (compressor, digest), made afresh for every attempt. The file appears only when complete.
 */
import * as streams from 'node:stream';
import type { Duplex, Writable } from 'node:stream';
import type { PullEvent, PullOptions, ResolvedImage, WriteOutputResult } from '../index.js';

/** `stream.compose` (Node ≥ 16.9), which @types/node 20 does not declare. */
const compose = (streams as unknown as { compose(...stages: Array<Duplex | Writable>): Duplex }).compose;

/**
 * Pulls `reference` into `path`; `stages(attempt)` gives the transforms in front of the file
 * for each attempt (a restart needs a new compressor: the old one's state is spoilt).
 */
export async function pullToFile(
  reference: string,
  options: PullOptions & { onEvent?: (event: PullEvent) => void; onResolved?: (image: ResolvedImage) => void },
  path: string,
  stages: (attempt: number) => Duplex[],
  /**
   * Given, the output may take a single gzip layer's stored bytes as they are (pass-through):
   * the stages in front of the file then, with no compressor.
   */
  storedStages?: (attempt: number) => Duplex[],
): Promise<WriteOutputResult> {
  const { createAtomicFile, pullRootfs$ } = await import('../index.js');
  const file = createAtomicFile(path, options.signal === undefined ? {} : { signal: options.signal });
  try {
    const opener = (front: (attempt: number) => Duplex[]) => async (attempt: number) => {
      const sink = await file.open(attempt);
      const stages = front(attempt);
      // compose() ends when the file has finished, and destroys every stage on failure.
      return stages.length === 0 ? sink : compose(...stages, sink);
    };
    const output = { open: opener(stages), ...(storedStages === undefined ? {} : { openStored: opener(storedStages) }) };
    await new Promise<void>((done, fail) => {
      pullRootfs$(reference, { ...options, output }).subscribe({
        next: (event) => options.onEvent?.(event),
        error: fail,
        complete: done,
      });
    });
    return await file.commit();
  } finally {
    await file.discard();
  }
}
