/**
 * The optional libdeflate addon (native/oci_deflate.c), loaded lazily the first time a gzip
 * output asks for it. It is built at `npm install` where a C compiler and libdeflate's
 * headers exist and skipped elsewhere (Windows, macOS, no compiler); a missing, unbuilt or
 * unloadable addon is not an error, only the reason gzip falls back to node:zlib.
 * `OCI_ROOTFS_NATIVE=0` turns it off (to compare engines, or to rule it out).
 */
import { createRequire } from 'node:module';
import type { MemberDeflater } from './parallel-gzip.js';

/** What native/oci_deflate.c exports. */
export interface NativeDeflateBinding {
  /** One gzip member of `input` (OS byte 3, no time), deflated on libuv's thread pool. */
  deflate(input: Uint8Array, level: number, callback: (error: Error | null, member?: Buffer) => void): void;
  /** Jobs queued or running (all Node environments of the process). */
  pending(): number;
  libdeflateVersion: string;
}

/** Relative to src/streams/ and dist/streams/ alike. */
const ADDON_PATH = '../../native/build/Release/oci_deflate.node';

/** The environment variable that turns the addon off: `OCI_ROOTFS_NATIVE=0`. */
export const NATIVE_ENV = 'OCI_ROOTFS_NATIVE';

let binding: NativeDeflateBinding | null | undefined;
let loadError: unknown;

/** Whether the environment turns the addon off (`0`, `false`, `no`, `off`). */
export function nativeDisabled(env: NodeJS.ProcessEnv = process.env): boolean {
  const value = env[NATIVE_ENV]?.trim().toLowerCase();
  return value === '0' || value === 'false' || value === 'no' || value === 'off';
}

/**
 * The addon, or undefined when it is turned off or cannot be loaded (then
 * {@link nativeLoadError} says why). Loaded once per process; the environment is read on
 * every call.
 */
export function loadNativeDeflate(env: NodeJS.ProcessEnv = process.env): NativeDeflateBinding | undefined {
  if (nativeDisabled(env)) return undefined;
  if (binding === undefined) {
    try {
      const loaded = createRequire(import.meta.url)(ADDON_PATH) as Partial<NativeDeflateBinding>;
      binding = typeof loaded.deflate === 'function' && typeof loaded.pending === 'function' ? (loaded as NativeDeflateBinding) : null;
      if (binding === null) loadError = new Error(`${ADDON_PATH} is not the oci-rootfs deflate addon`);
    } catch (error) {
      binding = null;
      loadError = error;
    }
  }
  return binding ?? undefined;
}

/** Why the addon could not be loaded, once {@link loadNativeDeflate} tried. */
export function nativeLoadError(): unknown {
  return loadError;
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
