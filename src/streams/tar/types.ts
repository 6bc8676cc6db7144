/**
 * The tar entry model shared by our reader and writer. Names, link targets, user and group
 * names, PAX keys and PAX values are bytes end to end (DESIGN.md §3): a name that is not
 * valid UTF-8 must come out with the same bytes it went in with.
 */

export type TarEntryType =
  | 'file'
  | 'link'
  | 'symlink'
  | 'character-device'
  | 'block-device'
  | 'directory'
  | 'fifo';

/** Where the data of a sparse file lies; the rest of the file is holes (zeros). */
export interface SparseMap {
  /** [offset, length] pairs, ascending, disjoint, each within the file's `size`. */
  readonly segments: ReadonlyArray<readonly [offset: number, length: number]>;
}

/** One PAX record: key and value, both raw bytes. Compare keys with `paxKeyIs` (pax-key.ts). */
export type PaxRecord = [key: Buffer, value: Buffer];

export interface TarHeader {
  /** The path as raw bytes, after GNU long-name and PAX `path` folding. No trailing slash. */
  name: Buffer;
  type: TarEntryType;
  /** The 12 permission bits plus setuid, setgid and sticky (`mode & 0o7777`). */
  mode: number;
  uid: number;
  gid: number;
  /**
   * The file's size in bytes (0 for everything but `file`). For a sparse file, its full
   * (apparent) size, holes included; the bytes stored in the archive are the sum of its
   * segment lengths.
   */
  size: number;
  /** Seconds since the epoch, whole part. A fractional PAX `mtime` stays in {@link pax}. */
  mtime: number;
  /** Hardlink or symlink target as raw bytes; empty for other types. */
  linkname: Buffer;
  uname: Buffer;
  gname: Buffer;
  devmajor: number;
  devminor: number;
  /**
   * PAX records not folded into the fields above, in the order read: `SCHILY.xattr.*`,
   * `LIBARCHIVE.xattr.*`, `atime`, `ctime`, a fractional `mtime`, and anything unknown.
   * Keys and values are raw bytes (a non-UTF-8 xattr name and binary xattr values such as
   * `security.capability` survive).
   */
  pax: PaxRecord[];
  /** Present only on sparse regular files (GNU sparse formats): where their data lies. */
  sparse?: SparseMap;
}

/** One entry from {@link readTar}: the header, and its body, which must be consumed or skipped. */
export interface TarEntry {
  header: TarHeader;
  /**
   * Zero-based position of this entry among the entries the reader yields: extension
   * headers (`x`, `g`, `L`, `K`) and skipped metadata entries (`V`, `A`, `N`) do not count,
   * so the same archive always numbers its entries the same way.
   */
  ordinal: number;
  /**
   * The whole content, chunk by chunk; a sparse file's holes come as zeros. Read it (or
   * {@link storedBody}) at most once, before asking for the next entry.
   */
  body(): AsyncIterable<Buffer>;
  /**
   * Only the bytes stored in the archive: for a sparse file the data of its segments in
   * order (the sum of their lengths), for any other entry the same as {@link body}.
   */
  storedBody(): AsyncIterable<Buffer>;
}

/** Something the reader accepted but a caller may want to report (ReadTarOptions.onWarning). */
export interface TarWarning {
  /** `TAR_NO_END_MARKER` or `TAR_SKIPPED_ENTRY`. */
  code: string;
  message: string;
}
