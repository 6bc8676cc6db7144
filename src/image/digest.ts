/** Content digests (`algorithm:hex`) of bytes in memory. */
import { createHash } from 'node:crypto';
import { DigestMismatchError, ManifestError } from '../errors.js';
import { isValidDigest } from '../reference/index.js';

/** sha256/sha384/sha512 of `bytes` in `algorithm:hex` form. */
export function digestOf(bytes: Uint8Array, algorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}

/** Throws {@link DigestMismatchError} unless `bytes` hash to `expected`. */
export function verifyDigest(bytes: Uint8Array, expected: string, what: string): void {
  if (!isValidDigest(expected)) throw new ManifestError(`${what}: cannot verify digest "${expected}"`);
  const actual = digestOf(bytes, algorithmOf(expected));
  if (actual !== expected) throw new DigestMismatchError(what, expected, actual, bytes.length);
}

/** `sha256` of `sha256:…`: the algorithm a digest names. */
export function algorithmOf(digest: string): string {
  const colon = digest.indexOf(':');
  return colon === -1 ? 'sha256' : digest.slice(0, colon);
}
