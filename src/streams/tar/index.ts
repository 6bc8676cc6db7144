/** Our tar codec (DESIGN.md §3): a streaming reader and a byte-exact ustar/PAX writer. */
export type { SparseMap, TarEntry, TarEntryType, TarHeader } from './types.js';
export { readTar, type ReadTarOptions } from './reader.js';
export { encodeHeader, paddingFor, END_OF_ARCHIVE } from './writer.js';
