// `npm install` hook: builds the optional addons (native/oci_fs.c, native/oci_deflate.c)
// with node-gyp. It must never fail the install: without Linux, a C compiler or node-gyp it
// prints one line and oci-rootfs deflates with node:zlib and unpack uses python3 instead;
// without libdeflate's headers only the deflate addon is skipped.
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const deflateFallback = 'oci-rootfs will deflate with node:zlib';
const fsFallback = 'unpack will use python3 for xattrs, device nodes and fifos';
const fallback = `${deflateFallback}; ${fsFallback}`;

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

/** One node-gyp rebuild; the last line mentioning an error when it fails, else undefined. */
function gypRebuild(nodeGyp, cc, buildDeflate) {
  const nodeDir = localNodeDir();
  const args = [nodeGyp, 'rebuild', ...(nodeDir === undefined ? [] : [`--nodedir=${nodeDir}`])];
  // The addons are C only: link with the C compiler, so no C++ compiler is needed.
  const env = { ...process.env, CC: cc, LINK: process.env.LINK || cc, OCI_ROOTFS_BUILD_DEFLATE: buildDeflate ? '1' : '0' };
  const result = spawnSync(process.execPath, args, { cwd: here, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (result.error === undefined && result.status === 0) return undefined;
  const detail = `${result.stderr ?? ''}`.trim().split('\n').filter((line) => /error/i.test(line)).slice(-1)[0];
  return detail === undefined ? 'failed' : `failed (${detail.trim()})`;
}

function succeeded(cc, args) {
  const probe = spawnSync(cc, args.args, { input: args.input, stdio: ['pipe', 'ignore', 'ignore'] });
  return probe.error === undefined && probe.status === 0;
}

/**
 * Two addons, each optional on its own: oci_fs (libc only: xattrs, device nodes and fifos
 * for `unpack`) and oci_deflate (libdeflate). Where libdeflate's headers are missing or its
 * addon fails to build, oci_fs is built alone.
 */
function build() {
  // What this install could build, nothing older: an addon left from an earlier source or
  // Node would otherwise be loaded although this build was skipped or failed.
  rmSync(join(here, 'build'), { recursive: true, force: true });
  if (process.env.OCI_ROOTFS_NATIVE === '0') return say(`native addons not built (OCI_ROOTFS_NATIVE=0); ${fallback}`);
  if (process.platform !== 'linux') return say(`native addons are built on Linux only; ${fallback}`);
  const cc = process.env.CC || 'cc';
  if (!succeeded(cc, { args: ['-E', '-x', 'c', '-'], input: '#include <sys/xattr.h>\n' })) {
    return say(`no C compiler (${cc}); ${fallback}`);
  }
  const nodeGyp = findNodeGyp();
  if (nodeGyp === undefined) return say(`node-gyp not found; ${fallback}`);
  let deflateNote = 'native deflate built (libdeflate)';
  let failure;
  if (!succeeded(cc, { args: ['-E', '-x', 'c', '-'], input: '#include <libdeflate.h>\n' })) {
    deflateNote = `no libdeflate headers (apt install libdeflate-dev); ${deflateFallback}`;
  } else {
    failure = gypRebuild(nodeGyp, cc, true);
    if (failure === undefined) return say(`native fs built; ${deflateNote}`);
    deflateNote = `native deflate build ${failure}; ${deflateFallback}`;
  }
  failure = gypRebuild(nodeGyp, cc, false);
  if (failure !== undefined) return say(`native addons build ${failure}; ${fallback}`);
  say(`native fs built; ${deflateNote}`);
}

try {
  build();
} catch (error) {
  say(`native addons not built (${error instanceof Error ? error.message : String(error)}); ${fallback}`);
}
process.exitCode = 0;
