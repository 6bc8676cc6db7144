export * from './errors.js';
export type * from './streams/tar/types.js';
