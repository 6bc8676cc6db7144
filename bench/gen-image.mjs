// Builds (or finds cached) one bench image without the registry: node bench/gen-image.mjs KIND PARAM
// Prints the cache key, e.g. `million-1000000-g3`, for bench/heap-per-path.mjs.
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureImage } from './lib/images.mjs';

const [kind, param] = process.argv.slice(2);
if (!kind || !param) throw new Error('usage: node bench/gen-image.mjs KIND PARAM');
const here = dirname(fileURLToPath(import.meta.url));
const meta = await ensureImage(process.env.BENCH_CACHE_DIR ?? join(here, '.cache'), kind, Number(param), (m) => process.stderr.write(`${m}\n`));
console.log(meta.key);
