/**
 * "Has the image changed since I pulled it?" for `pull --if-changed` and for API users
 * with their own caches. The answer must cost as little as possible when nothing changed
 * (the common case of a cron job): a HEAD, which Docker Hub does not count as a pull.
 */
import { PlatformNotFoundError } from '../errors.js';
import { indexEntries } from '../image/manifest.js';
import { isIndexMediaType } from '../image/media-types.js';
import { selectPlatform } from '../image/platform.js';
import { registryClientOptions, type QueryOptions } from './options.js';
import { walkToManifest } from './resolve.js';
import { openStore, type SourceReference } from '../stores/index.js';
import { wantedPlatform } from './inspect.js';

/** What a pull was made from: the digests of its `resolved` event. */
export interface PulledImageDigests {
  /** The index digest when the reference named an index, else the manifest digest. */
  digest: string;
  /** Set when the reference named an index. */
  indexDigest?: string;
  /** The image manifest the layers came from. */
  manifestDigest: string;
}

/** The verdict of {@link checkImageChanged}. */
export interface ImageChangeCheck {
  changed: boolean;
  /** What the reference points at now (index or manifest digest), when it was learnt. */
  digest?: string;
  /**
   * How the verdict was reached: `reference` (pinned by digest, no request), `head`
   * (Docker-Content-Digest), `get` (the manifest or index body was needed), `platform`
   * (the index changed but the platform's manifest did not).
   */
  by: 'reference' | 'head' | 'get' | 'platform';
}

/**
 * Compares what `source` (a registry reference, `oci:` or `docker-archive:`) points at now with `previous`:
 * 1. the digest the reference names (pinned: no request; else `Docker-Content-Digest` of
 *    a HEAD) equal to `previous.digest`: unchanged;
 * 2. a different digest for a single-platform image: changed (no GET spent);
 * 3. an index whose digest changed, or a registry that sends no digest header: one GET of
 *    the manifest; unchanged if its bytes hash to `previous.digest`, or if it is an index
 *    whose entry for the platform (`options.platform`, else the host's) is still
 *    `previous.manifestDigest` (another platform was rebuilt; our layers did not move).
 * Local sources have no HEAD: they are read (cheaply) and compared the same way.
 *
 * Errors (not found, auth, network) reject: a caller that cannot tell should not skip.
 *
 * @example
 * ```ts
 * const { changed } = await checkImageChanged('alpine:3.20', saved);
 * if (changed) await pullAgain();
 * ```
 */
export async function checkImageChanged(
  source: string | SourceReference,
  previous: PulledImageDigests,
  options: QueryOptions = {},
): Promise<ImageChangeCheck> {
  const store = openStore(source, { registry: registryClientOptions(options) });
  const { signal } = options;
  try {
    const now = await store.currentDigest?.(signal);
    if (now !== undefined) {
      if (now.digest === previous.digest) return { changed: false, digest: now.digest, by: now.by };
      // A changed manifest digest is a changed image; only an index can change around us.
      if (previous.indexDigest === undefined) return { changed: true, digest: now.digest, by: now.by };
    }
    const root = await store.root(signal);
    if (root.kind === 'entries') {
      // An OCI layout: walk it (no network, nothing counted) and compare what the pull saw.
      const walk = await walkToManifest(store, options, root);
      const digest = walk.indexDigest ?? walk.manifest.digest;
      if (digest === previous.digest) return { changed: false, digest, by: 'get' };
      return { changed: walk.manifest.digest !== previous.manifestDigest, digest, by: walk.index === undefined ? 'get' : 'platform' };
    }
    const manifest = root.manifest;
    if (manifest.digest === previous.digest) return { changed: false, digest: manifest.digest, by: 'get' };
    if (!isIndexMediaType(manifest.mediaType) || previous.indexDigest === undefined) {
      return { changed: true, digest: manifest.digest, by: 'get' };
    }
    try {
      const entries = indexEntries(manifest.json, `index ${manifest.digest} of ${store.name}`);
      const { entry } = selectPlatform(entries, wantedPlatform(options));
      return { changed: entry.digest !== previous.manifestDigest, digest: manifest.digest, by: 'platform' };
    } catch (error) {
      // The platform is gone from the index: "changed", and the pull will say what is left.
      if (error instanceof PlatformNotFoundError) return { changed: true, digest: manifest.digest, by: 'platform' };
      throw error;
    }
  } finally {
    await store.close();
  }
}
