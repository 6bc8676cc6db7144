#!/usr/bin/env node
// The Observable level: pullRootfs$() emits PullEvents while the bytes go to the `output`
// you give it (never through next()). Here RxJS turns the events into a percentage,
// printed at most every 200 ms, and a last line from the `done` event.
//
//   node examples/progress-rxjs.mjs alpine:3.20 alpine.tar
import { createWriteStream } from 'node:fs';
import { filter, map, scan, share, throttleTime, merge } from 'rxjs';
import { pullRootfs$ } from '../dist/index.js';

const image = process.argv[2] ?? process.env.OCI_ROOTFS_IMAGE ?? 'alpine:3.20';
const output = process.argv[3] ?? 'rootfs.tar';

const events$ = pullRootfs$(image, { output: createWriteStream(output) }).pipe(share());

// Bytes per layer (of the current pass), summed against the image's compressed size.
const percent$ = events$.pipe(
  scan(
    (state, event) => {
      if (event.type === 'resolved') return { ...state, total: event.layers.reduce((sum, l) => sum + l.size, 0) };
      if (event.type === 'progress') state.bytes.set(event.index, event.bytes);
      return state;
    },
    { total: 0, bytes: new Map() },
  ),
  filter((state) => state.total > 0),
  map((state) => Math.min(100, Math.floor(([...state.bytes.values()].reduce((a, b) => a + b, 0) * 100) / state.total))),
  throttleTime(200, undefined, { leading: true, trailing: true }),
  map((percent) => `${percent}%`),
);

const layers$ = events$.pipe(
  filter((event) => event.type === 'resolved' || event.type === 'layer-done' || event.type === 'done'),
  map((event) => {
    switch (event.type) {
      case 'resolved':
        return `resolved ${event.reference} to ${event.manifestDigest}: ${event.layers.length} layers`;
      case 'layer-done':
        return `layer ${event.index + 1} done: ${event.entriesWritten} entries`;
      default:
        return `done: ${event.bytesIn} bytes in, ${event.bytesOut} bytes of tar, ${event.entries} entries`;
    }
  }),
);

merge(percent$, layers$).subscribe({
  next: (line) => console.log(line),
  error: (error) => {
    console.error(`pull failed: ${error.message}`);
    process.exitCode = 1;
  },
  complete: () => console.log(`wrote ${output}`),
});
