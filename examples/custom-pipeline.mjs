#!/usr/bin/env node
// The parts: open the store (a registry here; `oci:DIR:TAG` or `docker-archive:FILE`
// work the same), resolve the image, make one cold verified source per layer, flatten
// them with a filter, compress, write. Here the filter leaves out /usr/share/doc: a left-out path
// still hides its lower copies (the filter runs after the flatten decision), so no older
// layer's docs come back.
//
//   node examples/custom-pipeline.mjs debian:bookworm debian-nodoc.tar.gz
import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createCompressor, flattenLayers, formatFromPath, layerSources, openStore, resolveImage } from '../dist/index.js';

const image = process.argv[2] ?? process.env.OCI_ROOTFS_IMAGE ?? 'debian:bookworm';
const output = process.argv[3] ?? 'rootfs-nodoc.tar.gz';
const LEFT_OUT = 'usr/share/doc';

const store = openStore(image);
const controller = new AbortController();
process.once('SIGINT', () => controller.abort());
try {
  const resolved = await resolveImage(store, { signal: controller.signal });
  console.log(`${store.name} is ${resolved.manifestDigest}, ${resolved.layers.length} layers`);

  let leftOut = 0;
  const tar = flattenLayers(layerSources(store, resolved.layers), {
    signal: controller.signal,
    // Names are bytes (they need not be UTF-8); latin1 maps each byte to one character.
    filter: (header) => {
      const name = header.name.toString('latin1').replace(/\/$/, '');
      const keep = name !== LEFT_OUT && !name.startsWith(`${LEFT_OUT}/`);
      if (!keep) leftOut++;
      return keep;
    },
    onLayerDone: ({ index, entriesWritten }) => console.log(`layer ${index + 1}: ${entriesWritten} entries`),
  });
  await pipeline(Readable.from(tar), createCompressor(formatFromPath(output) ?? 'tar'), createWriteStream(output));
  console.log(`wrote ${output}, ${leftOut} entries under /${LEFT_OUT} left out`);
} finally {
  await store.close();
}
