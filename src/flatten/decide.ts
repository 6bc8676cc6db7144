import { MalformedArchiveError } from '../errors.js';
import { printable, type PathKey } from './paths.js';
import type { Visibility } from './visibility.js';

/** What the flatten does with one (placed, non-whiteout) entry of a layer. */
export interface Decision {
  /** The output shows it: nothing above hides or replaces its path. */
  visible: boolean;
  /** It goes into the output now (visible, not filtered out, not superseded). */
  written: boolean;
  /** Its layer wrote the same path before (a same-layer duplicate that is written again). */
  rewrite: boolean;
}

/** One entry as {@link decide} sees it. */
export interface Candidate {
  /** The parent path and the last component (undefined: the root entry). */
  parent: PathKey;
  base: string | undefined;
  key: PathKey;
  layer: number;
  isDir: boolean;
  /** The user's filter keeps it (a left-out entry makes no parents). */
  kept: boolean;
  /** An earlier attempt learnt that a later entry of the same layer replaces it. */
  superseded: boolean;
}

/**
 * The flatten rule for one entry (DESIGN.md §3), against what the layers above decided and
 * what its own layer did so far, recorded in `visibility`, which it updates. No I/O.
 */
export function decide(visibility: Visibility, entry: Candidate): Decision {
  const { parent, base, layer, isDir, kept, superseded } = entry;
  let verdict = visibility.enter(parent, base, layer, kept);
  if (!isDir && verdict !== 'hidden' && visibility.currentHasHigherDescendants(layer)) {
    // Higher layers put entries below this path, so base first it must have become a
    // directory again later in this layer: writing it would make an extractor replace a
    // non-empty directory. It still replaced what lower layers had below it.
    verdict = 'shadowed';
  }
  if (!isDir && verdict === 'shadowed') visibility.recordCurrentCover(layer);
  // A superseded entry is not written (each path once), but a non-directory still replaced
  // what lower layers had below it.
  if (superseded && verdict === 'visible' && !isDir) visibility.recordCurrentCover(layer);
  // Only a path this layer already wrote can have a same-layer record to displace.
  let rewrite = false;
  if (verdict === 'visible' && !superseded) {
    rewrite = visibility.currentWrittenBy() === layer;
    const earlier = visibility.currentWrittenInLayer(layer);
    if (!isDir && earlier && (earlier.dir || earlier.hasChildren)) {
      throw new MalformedArchiveError(
        `layer ${layer}: directory "${printable(entry.key)}" is replaced by a non-directory within the same layer`,
      );
    }
    visibility.recordCurrentWrite(layer, isDir);
  }
  const visible = verdict === 'visible';
  return { visible, written: visible && kept && !superseded, rewrite };
}
