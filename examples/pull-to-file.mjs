#!/usr/bin/env node
// The stream level: pullRootfs() is one Readable of the uncompressed rootfs tar; compress
// it and write it with stream.pipeline, which destroys every stage (and so aborts the
// pull) if any of them fails.
//
//   node examples/pull-to-file.mjs alpine:3.20 alpine.tar.gz
//   OCI_ROOTFS_IMAGE=alpine:3.20 node examples/pull-to-file.mjs
import { createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { createCompressor, formatFromPath, pullRootfs } from '../dist/index.js';

const image = process.argv[2] ?? process.env.OCI_ROOTFS_IMAGE ?? 'alpine:3.20';
const output = process.argv[3] ?? 'rootfs.tar.gz';

// Ctrl-C aborts the pull: every request stops and the stream fails with an AbortError.
const controller = new AbortController();
process.once('SIGINT', () => controller.abort());

await pipeline(
  pullRootfs(image, { signal: controller.signal }),
  createCompressor(formatFromPath(output) ?? 'tar'),
  createWriteStream(output),
);
// A real tool would write to a temporary name and rename it (writeAtomically does).
console.log(`wrote ${output} (${(await stat(output)).size} bytes) from ${image}`);
