// How binding.gyp links libdeflate: its static archive when the toolchain has one (Debian's
// libdeflate.a is position-independent and ~8 % faster than its libdeflate.so, see
// native/README.md), else the shared library. OCI_ROOTFS_LIBDEFLATE=shared forces the latter.
'use strict';
const { execFileSync } = require('node:child_process');
const { isAbsolute } = require('node:path');

function staticArchive() {
  if (process.env.OCI_ROOTFS_LIBDEFLATE === 'shared') return undefined;
  try {
    const path = execFileSync(process.env.CC || 'cc', ['-print-file-name=libdeflate.a'], { encoding: 'utf8' }).trim();
    return isAbsolute(path) ? path : undefined;
  } catch {
    return undefined;
  }
}

const archive = staticArchive();
// --exclude-libs keeps the archive's symbols private to the addon, so another copy of
// libdeflate in the process (another addon) cannot be bound to ours or ours to it.
console.log(archive === undefined ? '-ldeflate' : `-Wl,--exclude-libs,ALL ${archive}`);
