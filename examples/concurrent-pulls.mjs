#!/usr/bin/env node
// Several pulls with one concurrency limit: mergeMap(..., 2) keeps at most two pulls
// running; the third starts when one of them completes. Each pull is a cold Observable,
// so nothing starts before mergeMap subscribes to it.
//
//   node examples/concurrent-pulls.mjs alpine:3.20 debian:bookworm busybox
//   OCI_ROOTFS_IMAGES="alpine:3.20 debian:bookworm busybox" node examples/concurrent-pulls.mjs
import { createWriteStream } from 'node:fs';
import { defer, from, last, map, mergeMap, tap } from 'rxjs';
import { pullRootfs$ } from '../dist/index.js';

const images = process.argv.length > 2
  ? process.argv.slice(2)
  : (process.env.OCI_ROOTFS_IMAGES ?? 'alpine:3.20 busybox:1.36 debian:bookworm-slim').split(/\s+/).filter(Boolean);
const CONCURRENCY = 2;

/** `alpine:3.20` → `alpine-3.20.tar`: one output file per image. */
const fileFor = (image) => `${image.replace(/^.*\//, '').replace(/[^A-Za-z0-9._-]/g, '-')}.tar`;

let running = 0;
from(images)
  .pipe(
    mergeMap(
      (image) =>
        // defer: the output file is opened only when the pull is actually started.
        defer(() => {
          running++;
          console.log(`start ${image} (running: ${running})`);
          return pullRootfs$(image, { output: createWriteStream(fileFor(image)) });
        }).pipe(
          last(), // the `done` event
          // Counted down before completing: mergeMap starts the next pull on completion.
          tap(() => running--),
          map((done) => `done ${image} -> ${fileFor(image)}: ${done.entries} entries, ${done.bytesIn} bytes in`),
        ),
      CONCURRENCY,
    ),
    tap((line) => console.log(line)),
  )
  .subscribe({
    error: (error) => {
      console.error(`pull failed: ${error.message}`);
      process.exitCode = 1;
    },
    complete: () => console.log(`all ${images.length} images pulled, at most ${CONCURRENCY} at a time`),
  });
