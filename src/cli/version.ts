/**
 * `oci-rootfs --version`: the package version and the compression engines in use, with
 * nothing else loaded. `main.ts` answers a lone `--version` from here before the program
 * (commander, the commands) is imported; the program answers it from here too.
 */
import { readFileSync } from 'node:fs';

/** dist/cli/version.js and src/cli/version.ts both sit two levels below package.json. */
export function packageVersion(): string {
  const manifest: unknown = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  const version = (manifest as { version?: unknown }).version;
  return typeof version === 'string' ? version : 'unknown';
}

/**
 * The package version on the first line, then the engines in use. Finding the engines loads
 * the compressors and the native addon: only `--version` pays for that.
 */
export async function versionText(): Promise<string> {
  const { compressionEngines } = await import('../streams/compress.js');
  const { fsEngine } = await import('../unpack/native-fs.js');
  const engines = compressionEngines();
  return `${packageVersion()}\ngzip: ${engines.gzip}\nzstd: ${engines.zstd}\nfs: ${fsEngine()}\nnode: ${process.version}`;
}

/** Whether `args` (after node and the script) ask for the version and nothing else. */
export function asksForVersionOnly(args: readonly string[]): boolean {
  return args.length === 1 && (args[0] === '--version' || args[0] === '-V');
}
