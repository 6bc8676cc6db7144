/**
 * Whether a single layer's tar, copied byte for byte, extracts to the tree the flattener would
 * write (DESIGN.md §3, §8). It is judged as it streams, entry by entry, and says no at the
 * first thing the flattener would change or an extractor could read differently: when in
 * doubt, no (the pull then flattens as usual). What it does not insist on: a root entry
 * (the flattener synthesizes `./` 0755 root:root; a published layer without one extracts the
 * same files) and the flattener's own header encoding (`./` prefixes, trailing slashes, GNU
 * long names vs PAX: the same names once read).
 */
import { isUtf8 } from 'node:buffer';
import type { TarHeader, TarWarning } from '../streams/tar/types.js';

/** Entry type flags that every extractor reads as the flattener writes them. */
const PLAIN_ENTRY_FLAGS = new Set(['0', '\0', '1', '2', '3', '4', '5', '6']);
/** Extension headers that only carry long names and per-entry records. */
const PLAIN_EXTENSION_FLAGS = new Set(['x', 'L', 'K']);
/** Larger values need base-256 in a ustar field, which the flattener adds (busybox reads only those). */
const MAX_OCTAL_11 = 8 ** 11 - 1;
const MAX_OCTAL_7 = 8 ** 7 - 1;
/** Anything `normalizeKey` would clean: an empty, `.` or `..` component, a leading or doubled slash. */
const NEEDS_CLEANING = /\/\/|(?:^|\/)\.\.?(?:\/|$)|^\//;

type Kind = 'directory' | 'file' | 'other';

export class PassthroughCheck {
  /** The first reason found; once set, nothing else is judged. */
  reason: string | undefined;
  /** Every path seen, and what it is: a duplicate, a parent that is not a directory, a link target. */
  readonly #seen = new Map<string, Kind>();
  entries = 0;
  /** The type flag of the last entry header, for what the reader folds away (a v7 directory). */
  #flag = '';

  /** A reader warning (no end marker, a skipped or dangling header): the bytes differ from our tar. */
  warning(warning: TarWarning): void {
    this.#reject(`the tar reader noted ${warning.code}`);
  }

  /** Every header block's type flag, with the payload of extension headers. */
  header(flag: string, payload?: Buffer): void {
    if (payload === undefined) {
      this.#flag = flag;
      if (!PLAIN_ENTRY_FLAGS.has(flag)) this.#reject(`an entry of type ${JSON.stringify(flag)}`);
      return;
    }
    if (!PLAIN_EXTENSION_FLAGS.has(flag)) {
      this.#reject(flag === 'g' ? 'a global PAX header' : `an extension header of type ${JSON.stringify(flag)}`);
      return;
    }
    // PAX records are "LEN KEY=VALUE\n": a key is always preceded by a space.
    if (flag === 'x' && (payload.includes(' hdrcharset=') || payload.includes(' GNU.sparse.'))) {
      this.#reject('a PAX hdrcharset or GNU sparse record');
    }
  }

  /** One entry; false once the layer cannot pass through. */
  entry(header: Readonly<TarHeader>): boolean {
    if (this.reason !== undefined) return false;
    this.entries++;
    let key = header.name.toString('latin1');
    if (key.startsWith('./')) key = key.slice(2);
    if (key.endsWith('/')) key = key.slice(0, -1);
    const root = key === '' || key === '.';
    const shown = (): string => JSON.stringify(header.name.toString('utf8'));
    if (header.name[0] === 0x2f) return this.#reject(`the absolute name ${shown()}`);
    // The flattener puts such names in ustar fields or GNU long names; a publisher may have
    // put them in PAX, where extractors warn.
    if (!isUtf8(header.name) || !isUtf8(header.linkname)) return this.#reject(`a name that is not UTF-8, ${shown()}`);
    if (!root && NEEDS_CLEANING.test(key)) return this.#reject(`the name ${shown()} needs cleaning`);
    if (key.includes('.wh.') && key.split('/').some((part) => part.startsWith('.wh.'))) {
      return this.#reject(`a whiteout or aufs name ${shown()}`);
    }
    if (header.sparse !== undefined) return this.#reject(`a sparse file ${shown()}`);
    if (header.size > MAX_OCTAL_11 || header.mtime < 0 || header.mtime > MAX_OCTAL_11) {
      return this.#reject(`a size or mtime beyond ustar fields in ${shown()}`);
    }
    if (header.uid > MAX_OCTAL_7 || header.gid > MAX_OCTAL_7 || header.devmajor > MAX_OCTAL_7 || header.devminor > MAX_OCTAL_7) {
      return this.#reject(`an id or device number beyond ustar fields in ${shown()}`);
    }
    // A regular-file entry whose name ends in `/` is a directory to every reader but busybox,
    // and the flattener writes it as one (type 5, no data): copied as it is, it reads otherwise.
    if (header.type === 'directory' && this.#flag !== '5') return this.#reject(`the directory ${shown()} written as a regular-file entry`);
    if (root) {
      if (header.type !== 'directory') return this.#reject('a root entry that is not a directory');
      if (this.#seen.has('')) return this.#reject('two root entries');
      this.#seen.set('', 'directory');
      return true;
    }
    if (this.#seen.has(key)) return this.#reject(`the path ${shown()} twice`);
    // Every parent declared before, as a directory: else the flattener would resolve it
    // through a symlink or write it itself.
    const slash = key.lastIndexOf('/');
    if (slash >= 0 && this.#seen.get(key.slice(0, slash)) !== 'directory') {
      return this.#reject(`${shown()} before its parent directory`);
    }
    if (header.type === 'link') {
      let target = header.linkname.toString('latin1');
      if (target.startsWith('./')) target = target.slice(2);
      if (NEEDS_CLEANING.test(target) || target.endsWith('/') || this.#seen.get(target) !== 'file') {
        return this.#reject(`a hardlink ${shown()} that is not to an earlier regular file`);
      }
    }
    this.#seen.set(key, header.type === 'directory' ? 'directory' : header.type === 'file' ? 'file' : 'other');
    return true;
  }

  #reject(reason: string): false {
    this.reason ??= reason;
    return false;
  }
}
