/**
 * The optional libdeflate addon (native/oci_deflate.c), loaded lazily the first time a gzip
 * output asks for it. It is built at `npm install` where a C compiler and libdeflate's
 * headers exist and skipped elsewhere (Windows, macOS, no compiler); a missing, unbuilt or
 * unloadable addon is not an error, only the reason gzip falls back to node:zlib.
 * `OCI_ROOTFS_NATIVE=0` turns it off (to compare engines, or to rule it out).
 */
import { addonLoader } from '../native-addon.js';
import type { MemberDeflater } from './parallel-gzip.js';

/** What native/oci_deflate.c exports. */
export interface NativeDeflateBinding {
  /** One gzip member of `input` (OS byte 3, no time), deflated on libuv's thread pool. */
  deflate(input: Uint8Array, level: number, callback: (error: Error | null, member?: Buffer) => void): void;
  /** Jobs queued or running (all Node environments of the process). */
  pending(): number;
  libdeflateVersion: string;
}

const addon = addonLoader<NativeDeflateBinding>('oci_deflate.node', ['deflate', 'pending'], 'deflate');

/**
 * The addon, or undefined when it is turned off or cannot be loaded (then
 * {@link nativeLoadError} says why).
 */
export function loadNativeDeflate(env: NodeJS.ProcessEnv = process.env): NativeDeflateBinding | undefined {
  return addon.load(env);
}

/** Why the addon could not be loaded, once {@link loadNativeDeflate} tried. */
export function nativeLoadError(): unknown {
  return addon.loadError();
}

/** A {@link MemberDeflater} on `addon`: libdeflate on libuv's thread pool. */
export function nativeMember(addon: NativeDeflateBinding): MemberDeflater {
  return (block, level) =>
    new Promise((resolve, reject) => {
      addon.deflate(block, level, (error, member) => {
        if (error !== null) reject(new Error(`gzip (libdeflate) failed: ${error.message}`, { cause: error }));
        else resolve(member as Buffer);
      });
    });
}
