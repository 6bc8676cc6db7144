#!/usr/bin/env python3
"""The disk floor for `unpack`: replays a flattened tar's entries as plain syscalls, one at a
time, the way a minimal unpacker would (mkdir 0700 + lchown, open O_CREAT|O_EXCL|O_NOFOLLOW
+ write + fchmod + futimens + close, symlink + lutimes, link; directory modes and times
last). The tar is read into memory first and only the syscalls are timed, so the rate is
what this file system and kernel give one thread, without download, inflate or hashing.

    python3 bench/fs-replay.py FLAT.tar NEW-DIR      # prints "N entries in S s = R/s"
"""
import os
import sys
import tarfile
import time

tar_path, root = sys.argv[1], sys.argv[2]
entries = []
with tarfile.open(tar_path) as tar:
    for member in tar:
        data = tar.extractfile(member).read() if member.isreg() else None
        entries.append((member.name.rstrip('/'), member.type, data, member.mode, member.uid, member.gid, member.mtime, member.linkname))
os.mkdir(root)
start = time.time()
directories = []
for name, kind, data, mode, uid, gid, mtime, link in entries:
    path = os.path.join(root, name)
    if name in ('', '.'):
        continue
    if kind == tarfile.DIRTYPE:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        os.lchown(path, uid, gid)
        directories.append((path, mode, mtime))
    elif kind == tarfile.SYMTYPE:
        os.symlink(link, path)
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    elif kind in (tarfile.REGTYPE, tarfile.AREGTYPE):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.write(fd, data)
        if (uid, gid) != (os.geteuid(), os.getegid()):
            os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        os.utime(fd, (mtime, mtime))
        os.close(fd)
    elif kind == tarfile.LNKTYPE:
        os.link(os.path.join(root, link), path)
for path, mode, mtime in reversed(directories):
    os.chmod(path, mode)
    os.utime(path, (mtime, mtime))
elapsed = time.time() - start
print('%d entries in %.2f s = %.0f/s' % (len(entries), elapsed, len(entries) / elapsed))
