/**
 * What an unpack may keep of each entry's metadata, as root or rootless, decided without I/O.
 *
 * Root keeps everything: numeric owners, all mode bits, xattrs (`security.capability`
 * included), device nodes. A rootless unpack keeps what an unprivileged user can: the files
 * are the user's, device nodes become empty regular files, `security.*` and `trusted.*` xattrs
 * are left out, and the owner an entry should have had is recorded, as umoci does, in the
 * `user.rootlesscontainers` xattr (the rootless-containers protobuf `Resource { uint32 uid = 1;
 * uint32 gid = 2; }`, with 2^32-1 meaning "unchanged" and nothing written for root:root), so
 * that a later privileged step (or a user-namespaced runtime) can restore them.
 */
import type { TarHeader } from '../streams/tar/types.js';
import { paxKeyIs } from '../streams/tar/pax-key.js';

export const ROOTLESS_XATTR = Buffer.from('user.rootlesscontainers', 'latin1');

/** The `NoopID` of the rootless-containers proto: "keep the owner it has". */
const NOOP_ID = 0xffffffff;

export interface UnpackPolicy {
  rootless: boolean;
}

/**
 * The `user.rootlesscontainers` value for an entry owned by `uid:gid`, byte for byte what
 * umoci writes (proto3: field 1 and 2 as varints); undefined for root:root, which needs none.
 */
export function rootlessOwnerRecord(uid: number, gid: number): Buffer | undefined {
  if (uid === 0 && gid === 0) return undefined;
  return Buffer.from([0x08, ...varint(uid === 0 ? NOOP_ID : uid), 0x10, ...varint(gid === 0 ? NOOP_ID : gid)]);
}

function varint(value: number): number[] {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  bytes.push(rest);
  return bytes;
}

/** Why an xattr of the image is not set on disk. */
export type XattrVerdict = 'set' | 'rootless' | 'host-specific';

/**
 * `security.selinux` is a label of the machine that built the layer, not of this one (umoci
 * leaves it out too); a rootless user cannot set `security.*` or `trusted.*`, and an image's
 * own `user.rootlesscontainers` would contradict the one we write.
 */
export function xattrVerdict(name: Buffer, policy: UnpackPolicy): XattrVerdict {
  const text = name.toString('latin1');
  if (text === 'security.selinux') return 'host-specific';
  if (policy.rootless && (text.startsWith('security.') || text.startsWith('trusted.') || text === ROOTLESS_XATTR.toString('latin1'))) {
    return 'rootless';
  }
  return 'set';
}

const SCHILY = 'SCHILY.xattr.';

/**
 * The xattrs a tar header carries: `SCHILY.xattr.NAME=value` (raw bytes), as GNU tar and Go
 * write them. bsdtar's `LIBARCHIVE.xattr.*` records are not applied: Docker, containerd and
 * umoci (Go) do not apply them, and the rootfs is what a runtime would show. The first
 * record of a name wins.
 */
export function entryXattrs(header: TarHeader): Array<[name: Buffer, value: Buffer]> {
  if (header.pax.length === 0) return [];
  const result: Array<[Buffer, Buffer]> = [];
  const seen = new Set<string>();
  for (const [key, value] of header.pax) {
    if (!startsWith(key, SCHILY)) continue;
    const name = key.subarray(SCHILY.length);
    const id = name.toString('latin1');
    if (seen.has(id)) continue;
    seen.add(id);
    result.push([name, value]);
  }
  return result;
}

/**
 * A fractional PAX `mtime` (the header's whole seconds otherwise): umoci and GNU tar restore
 * the sub-second part too.
 */
export function entryMtime(header: TarHeader): number {
  for (const [rawKey, value] of header.pax) {
    if (!paxKeyIs(rawKey, 'mtime')) continue;
    const seconds = Number(value.toString('latin1'));
    if (Number.isFinite(seconds)) return seconds;
  }
  return header.mtime;
}

function startsWith(key: Buffer, prefix: string): boolean {
  return key.length > prefix.length && key.toString('latin1', 0, prefix.length) === prefix;
}

