/** How a source is named on the command line and in the API (see `parseSourceReference`). */
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
