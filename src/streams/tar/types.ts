/**
 * The tar entry model shared by our reader and writer. Names, link targets, user and group
 * names and PAX values are bytes end to end (DESIGN.md §3): a name that is not valid UTF-8
 * must come out with the same bytes it went in with.
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

export interface TarHeader {
  /** The path as raw bytes, after GNU long-name and PAX `path` folding. No trailing slash. */
  name: Buffer;
  type: TarEntryType;
  /** The 12 permission bits plus setuid, setgid and sticky (`mode & 0o7777`). */
  mode: number;
  uid: number;
  gid: number;
  /** Body size in bytes (0 for everything but `file`; sparse files are already expanded). */
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
   * Values are raw bytes (binary xattrs such as `security.capability` survive).
   */
  pax: Array<[key: string, value: Buffer]>;
  /** Present only on sparse regular files; `size` is then the full (apparent) size. */
  sparse?: SparseMap;
}

/** One entry from {@link readTar}: the header, and its body, which must be consumed or skipped. */
export interface TarEntry {
  header: TarHeader;
  /** Zero-based position of this entry in its archive (extension headers do not count). */
  ordinal: number;
  /** The body, chunk by chunk. Read it at most once, before asking for the next entry. */
  body(): AsyncIterable<Buffer>;
  /**
   * Only the bytes of the segments of a sparse file, in order (the sum of the segment
   * lengths); for any other entry the same as {@link body}. Read one of the two, not both.
   */
  storedBody(): AsyncIterable<Buffer>;
}
