/**
 * What a non-registry source (an OCI image layout, a `docker save` archive) gives the
 * flattener: the same image description a registry pull resolves to, and one cold
 * {@link FlattenLayer} per layer whose bytes are checked as a registry blob's are.
 */
import type { FlattenLayer } from '../flatten/flatten.js';
import type { Compression } from '../registry/media-types.js';
import type { ImageConfigJson } from '../registry/manifest.js';
import type { Platform } from '../registry/platform.js';

/** A source named on the command line (see `parseSourceReference`). */
export type SourceReference =
  | {
      kind: 'registry';
      /** The image reference, without a `docker://` prefix. */
      reference: string;
    }
  | {
      kind: 'oci';
      /** The layout directory. */
      path: string;
      /** `org.opencontainers.image.ref.name` of the wanted index entry. */
      tag?: string;
    }
  | {
      kind: 'docker-archive';
      /** The archive file (seekable: a regular file). */
      path: string;
      /** `REPO:TAG` among the archive's `RepoTags`, or `@N` for the N-th image (0-based). */
      reference?: string;
    };

/** A layer of a non-registry image, base first. */
export interface SourceLayer {
  /** Digest of the bytes as stored (compressed or not), when the source names it. */
  digest?: string;
  /** Bytes as stored. */
  size: number;
  mediaType: string;
  compression: Compression;
  /** sha256 of the uncompressed tar; always known and always checked for these sources. */
  diffId: string;
  /** Foreign layers: where the blob is served when the layout does not hold it. */
  urls?: string[];
}

/** The image a source holds, in the shape of a registry `ResolvedImage`. */
export interface SourceImage {
  source: SourceReference & { kind: 'oci' | 'docker-archive' };
  /** Digest of the index the platform was picked from (OCI layout with a nested index). */
  indexDigest?: string;
  /** Digest of the image manifest; a `docker save` archive has none. */
  manifestDigest?: string;
  manifestMediaType?: string;
  platform: Platform;
  config: { digest: string; mediaType: string; size: number; json: ImageConfigJson };
  /** Base layer first. */
  layers: SourceLayer[];
}

/** An opened source: its image, and the layers as the flattener takes them. */
export interface OpenedSource {
  image: SourceImage;
  /** Same order as `image.layers` (base first); `open()` may be called more than once. */
  layers: FlattenLayer[];
}

export interface OpenSourceOptions {
  signal?: AbortSignal;
  /** `os/arch[/variant]` or a {@link Platform}; as for a registry pull. */
  platform?: string | Platform;
  /** OCI layout only: fetch foreign layers the layout does not hold from their `urls`. */
  allowForeign?: boolean;
}
