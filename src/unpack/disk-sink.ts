/**
 * The right-hand end of an unpack: a Writable that takes the flattened tar stream, parses it
 * with our reader and writes each entry straight to its place under `root`. It finishes (its
 * `final` callback) only after the last entry and the finishing pass for directories are on
 * disk, so a pipeline into it completes when the tree is whole.
 */
import { PassThrough, Writable } from 'node:stream';
import { readTar } from '../streams/tar/reader.js';
import { TreeWriter, type TreeWriterOptions } from './tree-writer.js';

export interface DiskSink {
  /** Where the tar bytes go. */
  readonly stream: Writable;
  /** Settles once the writer touches the tree no more, whatever the outcome. */
  readonly stopped: Promise<void>;
  /** Entries written so far. */
  readonly entries: number;
}

/** Bytes parsed ahead of the entry being written. */
const BUFFERED_BYTES = 64 * 1024;

export function createDiskSink(root: string, options: TreeWriterOptions): DiskSink {
  const tree = new TreeWriter(root, options);
  const input = new PassThrough({ highWaterMark: BUFFERED_BYTES });

  const run = async (): Promise<void> => {
    try {
      for await (const entry of readTar(input)) await tree.write(entry);
      await tree.finish();
    } finally {
      await tree.close();
    }
  };
  const done = run();
  const stopped = done.then(
    () => undefined,
    () => undefined,
  );

  const stream = new Writable({
    highWaterMark: BUFFERED_BYTES,
    write(chunk: Buffer, _encoding, callback) {
      if (input.write(chunk)) callback();
      else input.once('drain', () => callback());
    },
    final(callback) {
      input.end();
      done.then(() => callback(), callback);
    },
    destroy(error, callback) {
      // The reader then fails on its next read, and the writer stops between entries.
      if (!input.destroyed) input.destroy(error ?? new Error('the unpack was stopped'));
      void stopped.then(() => callback(error));
    },
  });
  // A failed entry fails the stream, and through it the pipeline that feeds it.
  done.catch((error: unknown) => stream.destroy(error instanceof Error ? error : new Error(String(error))));

  return {
    stream,
    stopped,
    get entries() {
      return tree.entries;
    },
  };
}
