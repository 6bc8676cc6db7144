/** Our tar codec (DESIGN.md §3): a streaming reader and a byte-exact ustar/PAX writer. */
export type { PaxRecord, SparseMap, TarEntry, TarEntryType, TarHeader, TarWarning } from './types.js';
export { paxKey, paxKeyIs } from './pax-key.js';
export { readTar, type ReadTarOptions } from './reader.js';
export { bodyLength, encodeHeader, paddingFor, END_OF_ARCHIVE } from './writer.js';
export { alignSparse, alignedData, isBlockAligned } from './sparse-align.js';
