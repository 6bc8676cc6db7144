/**
 * Loading our optional N-API addons (native/): built at `npm install` where a C compiler is,
 * absent elsewhere, and turned off by `OCI_ROOTFS_NATIVE=0`. A missing, unbuilt or foreign
 * addon is not an error, only the reason a caller falls back to its pure-Node path.
 */
import { createRequire } from 'node:module';

/** The environment variable that turns the addons off: `OCI_ROOTFS_NATIVE=0`. */
export const NATIVE_ENV = 'OCI_ROOTFS_NATIVE';

/** Whether the environment turns the addons off (`0`, `false`, `no`, `off`). */
export function nativeDisabled(env: NodeJS.ProcessEnv = process.env): boolean {
  const value = env[NATIVE_ENV]?.trim().toLowerCase();
  return value === '0' || value === 'false' || value === 'no' || value === 'off';
}

export interface AddonLoader<Binding> {
  /**
   * The addon, or undefined when it is turned off or cannot be loaded (then {@link loadError}
   * says why). Loaded once per process; the environment is read on every call.
   */
  load(env?: NodeJS.ProcessEnv): Binding | undefined;
  /** Why the addon could not be loaded, once {@link load} tried. */
  loadError(): unknown;
}

/**
 * A loader of `native/build/Release/<file>`, which must export every function of `functions`
 * (else it is some other file, or a build older than this code).
 */
export function addonLoader<Binding>(file: string, functions: ReadonlyArray<keyof Binding & string>, what: string): AddonLoader<Binding> {
  // Relative to src/ and dist/ alike.
  const path = `../native/build/Release/${file}`;
  let binding: Binding | null | undefined;
  let error: unknown;
  return {
    load(env = process.env) {
      if (nativeDisabled(env)) return undefined;
      if (binding === undefined) {
        try {
          const loaded = createRequire(import.meta.url)(path) as Record<string, unknown>;
          binding = functions.every((name) => typeof loaded[name] === 'function') ? (loaded as Binding) : null;
          if (binding === null) error = new Error(`${path} is not the oci-rootfs ${what} addon`);
        } catch (failure) {
          binding = null;
          error = failure;
        }
      }
      return binding ?? undefined;
    },
    loadError: () => error,
  };
}
