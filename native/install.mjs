// `npm install` hook: builds the optional libdeflate addon (native/oci_deflate.c) with
// node-gyp. It must never fail the install: without Linux, a C compiler, libdeflate's
// headers or node-gyp, it prints one line and oci-rootfs deflates with node:zlib instead.
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const fallback = 'oci-rootfs will deflate with node:zlib';

function say(line) {
  console.log(`oci-rootfs: ${line}`);
}

/** node-gyp as the running npm ships it, as the npm beside this node ships it, or our own copy. */
function findNodeGyp() {
  const candidates = [process.env.npm_config_node_gyp];
  if (process.env.npm_execpath) {
    candidates.push(join(dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  }
  // `node native/install.mjs` run by hand: npm is not running, but is usually installed.
  candidates.push(join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  try {
    candidates.push(createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not installed locally: npm's copy is the usual one
  }
  return candidates.find((path) => path !== undefined && path !== '' && existsSync(path));
}

/** The Node headers next to this node binary (official tarballs, Debian, nodesource), if any. */
function localNodeDir() {
  const prefix = join(dirname(process.execPath), '..');
  return existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? prefix : undefined;
}

function build() {
  // What this install could build, nothing older: an addon left from an earlier source or
  // Node would otherwise be loaded although this build was skipped or failed.
  rmSync(join(here, 'build'), { recursive: true, force: true });
  if (process.env.OCI_ROOTFS_NATIVE === '0') return say(`native deflate not built (OCI_ROOTFS_NATIVE=0); ${fallback}`);
  if (process.platform !== 'linux') return say(`native deflate is built on Linux only; ${fallback}`);
  const cc = process.env.CC || 'cc';
  // One preprocessor run answers "is there a C compiler" and "are libdeflate's headers there".
  const probe = spawnSync(cc, ['-E', '-x', 'c', '-'], { input: '#include <libdeflate.h>\n', stdio: ['pipe', 'ignore', 'ignore'] });
  if (probe.error !== undefined || probe.status !== 0) {
    return say(`no C compiler (${cc}) or no libdeflate headers (apt install libdeflate-dev); ${fallback}`);
  }
  const nodeGyp = findNodeGyp();
  if (nodeGyp === undefined) return say(`node-gyp not found; ${fallback}`);
  const nodeDir = localNodeDir();
  const args = [nodeGyp, 'rebuild', ...(nodeDir === undefined ? [] : [`--nodedir=${nodeDir}`])];
  // The addon is C only: link with the C compiler, so no C++ compiler is needed.
  const env = { ...process.env, CC: cc, LINK: process.env.LINK || cc };
  const result = spawnSync(process.execPath, args, { cwd: here, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (result.error !== undefined || result.status !== 0) {
    const detail = `${result.stderr ?? ''}`.trim().split('\n').filter((line) => /error/i.test(line)).slice(-1)[0];
    return say(`native deflate build failed${detail === undefined ? '' : ` (${detail.trim()})`}; ${fallback}`);
  }
  say('native deflate built (libdeflate)');
}

try {
  build();
} catch (error) {
  say(`native deflate not built (${error instanceof Error ? error.message : String(error)}); ${fallback}`);
}
process.exitCode = 0;
