/**
 * The optional oci_fs addon (native/oci_fs.c): lsetxattr, lremovexattr, llistxattr, mknod
 * and mkfifo as direct, synchronous syscalls, and writeBatch, which makes many small files
 * and directories in one trip to the thread pool. Built at `npm install` wherever a C
 * compiler is (it needs only libc); without it unpack does the former through a python3
 * helper process (special-files.ts) and the latter with node:fs (file-jobs.ts).
 * `OCI_ROOTFS_NATIVE=0` turns it off, as it does the deflate addon.
 */
import { addonLoader } from '../native-addon.js';

/** What native/oci_fs.c exports. Errors carry `code` (the errno name) and `errno` (negative), like node:fs's. */
export interface NativeFsBinding {
  lsetxattr(path: Buffer, name: Buffer, value: Buffer): void;
  lremovexattr(path: Buffer, name: Buffer): void;
  llistxattr(path: Buffer): Buffer[];
  /** `mode` holds the type bits (S_IFCHR, S_IFBLK) and the permissions (the umask applies). */
  mknod(path: Buffer, mode: number, major: number, minor: number): void;
  mkfifo(path: Buffer, mode: number): void;
  /**
   * Many small files and directories in one trip to the thread pool, in order. Entry i is
   * meta[9i..9i+8]: flags, uid (-1 keeps it), gid, mode, mtime seconds, offset of its
   * NUL-terminated path in `paths`, offset and length of its body in `bodies`, kind (0 file,
   * 1 directory: mkdir 0700, an existing directory kept, then lchown). An existing
   * non-directory at a path is unlinked and the call retried once. results[2i] is 0 or the
   * errno of entry i, results[2i+1] the number of the syscall that failed (file-jobs.ts names
   * them). The callback gets an error only when the batch could not run at all.
   */
  writeBatch(meta: Float64Array, paths: Buffer, bodies: Buffer, results: Int32Array, callback: (error: Error | null) => void): void;
}

const addon = addonLoader<NativeFsBinding>('oci_fs.node', ['lsetxattr', 'lremovexattr', 'llistxattr', 'mknod', 'mkfifo', 'writeBatch'], 'fs');

/**
 * The addon, or undefined when it is turned off or cannot be loaded (then
 * {@link nativeFsLoadError} says why).
 */
export function loadNativeFs(env: NodeJS.ProcessEnv = process.env): NativeFsBinding | undefined {
  return addon.load(env);
}

/** Why the addon could not be loaded, once {@link loadNativeFs} tried. */
export function nativeFsLoadError(): unknown {
  return addon.loadError();
}

/** What `unpack` uses for xattrs, device nodes and fifos: `native` or `python3` (for `--version`). */
export function fsEngine(env: NodeJS.ProcessEnv = process.env): 'native' | 'python3' {
  return loadNativeFs(env) === undefined ? 'python3' : 'native';
}
