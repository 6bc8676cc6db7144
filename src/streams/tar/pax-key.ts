/** PAX keys are bytes (a non-UTF-8 `SCHILY.xattr.<name>` keeps its bytes); these build and compare them. */

/**
 * A PAX key from its text, one byte per char (latin1), so that `paxKey(key.toString('latin1'))`
 * gives `key` back for any key bytes. For an ASCII keyword (`mtime`, `SCHILY.xattr.user.x`)
 * that is simply its bytes; a non-ASCII name is better built with `Buffer.concat`.
 */
export function paxKey(text: string): Buffer {
  return Buffer.from(text, 'latin1');
}

/** Whether a PAX record key is exactly `text` (an ASCII keyword such as `mtime`). */
export function paxKeyIs(key: Buffer, text: string): boolean {
  if (key.length !== text.length) return false;
  for (let i = 0; i < key.length; i++) if (key[i] !== text.charCodeAt(i)) return false;
  return true;
}
