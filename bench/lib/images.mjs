// The bench's images: generated deterministically from a seeded PRNG, written as ustar
// layers, gzipped with `pigz -6 -n` (or `gzip -6 -n`), and cached under bench/.cache/images/
// keyed by kind, size and generator version. A cached image is only pushed again.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { elfContent, ident, randomContent, TEXT_STYLES, textContent } from './content.mjs';
import { Rng } from './prng.mjs';
import { END_OF_ARCHIVE, header, padding } from './tar.mjs';
import { hasTool } from './util.mjs';

/** Bump when the generator changes what it produces: old cache entries are then ignored. */
const GENERATOR_VERSION = 3;
/**
 * A kind whose output changed alone gets its own version, so the other kinds' cached images
 * (minutes to build at full size) stay valid. (single 4 had a `./` entry for a while; single
 * is back to version 3's layer, without one, as Docker's and BuildKit's layer diffs are.)
 */
const KIND_VERSION = {};
const MTIME = 1_700_000_000;
const MB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// The layer model: a map of path -> entry; ancestors are added as directories.

class Layer {
  constructor(index, seed) {
    this.index = index;
    this.seed = seed;
    this.entries = new Map();
    this.bytes = 0;
    this.counter = 0;
  }

  dir(path, mode = 0o755) {
    const existing = this.entries.get(path);
    if (existing !== undefined) return existing;
    this.parents(path);
    const entry = { path, type: 'dir', mode };
    this.entries.set(path, entry);
    return entry;
  }

  parents(path) {
    const slash = path.lastIndexOf('/');
    if (slash > 0) this.dir(path.slice(0, slash));
  }

  file(path, kind, size, mode = 0o644, group) {
    this.parents(path);
    const entry = { path, type: 'file', mode, size, kind, seed: `${this.seed}:${this.counter++}`, group };
    this.entries.set(path, entry);
    this.bytes += size;
    return entry;
  }

  symlink(path, target) {
    this.parents(path);
    this.entries.set(path, { path, type: 'symlink', mode: 0o777, linkname: target });
  }

  whiteout(path) {
    const slash = path.lastIndexOf('/');
    const marker = slash < 0 ? `.wh.${path}` : `${path.slice(0, slash)}/.wh.${path.slice(slash + 1)}`;
    this.parents(marker);
    this.entries.set(marker, { path: marker, type: 'file', mode: 0o644, size: 0, kind: 'empty', seed: '' });
  }

  opaque(dir) {
    this.dir(dir);
    const marker = `${dir}/.wh..wh..opq`;
    this.entries.set(marker, { path: marker, type: 'file', mode: 0o644, size: 0, kind: 'empty', seed: '' });
  }

  /** Entries in GNU tar `--sort=name` order: component-wise byte order, parents first. */
  sorted() {
    const list = [...this.entries.values()];
    for (const entry of list) entry.parts = entry.path.split('/');
    list.sort((a, b) => {
      const n = Math.min(a.parts.length, b.parts.length);
      for (let i = 0; i < n; i++) {
        if (a.parts[i] !== b.parts[i]) return a.parts[i] < b.parts[i] ? -1 : 1;
      }
      return a.parts.length - b.parts.length;
    });
    return list;
  }
}

function contentOf(entry) {
  if (entry.size === 0) return Buffer.alloc(0);
  const rng = new Rng(entry.seed);
  switch (entry.kind) {
    case 'random':
      return randomContent(rng, entry.size);
    case 'elf':
      return elfContent(rng, entry.size);
    default:
      return textContent(rng, entry.size, entry.kind);
  }
}

// ---------------------------------------------------------------------------------------------
// Filling layers with "packages"

/** Share of bytes per kind; random (incompressible) ~25%. */
const KIND_SHARE = { random: 0.25, elf: 0.33, text: 0.42 };

class Filler {
  constructor(layer, rng, live) {
    this.layer = layer;
    this.rng = rng;
    this.live = live; // path -> { kind, size, hard } of regular files visible after this layer
    this.byKind = { random: 0, elf: 0, text: 0 };
  }

  nextKind() {
    const total = this.byKind.random + this.byKind.elf + this.byKind.text + 1;
    let best = 'text';
    let deficit = -Infinity;
    for (const [kind, share] of Object.entries(KIND_SHARE)) {
      const d = share - this.byKind[kind] / total + this.rng.float() * 0.05;
      if (d > deficit) {
        deficit = d;
        best = kind;
      }
    }
    return best;
  }

  sizeFor(kind) {
    // Mostly small files, a long tail of big ones: ~20k entries per GiB, as in real images.
    const rng = this.rng;
    const r = rng.float();
    if (kind === 'random') return r < 0.8 ? rng.logInt(1024, 64 * 1024) : r < 0.98 ? rng.logInt(64 * 1024, 2 * MB) : rng.logInt(2 * MB, 32 * MB);
    if (kind === 'elf') return r < 0.7 ? rng.logInt(4096, 128 * 1024) : r < 0.95 ? rng.logInt(128 * 1024, 2 * MB) : rng.logInt(2 * MB, 16 * MB);
    return r < 0.8 ? rng.logInt(100, 8192) : r < 0.97 ? rng.logInt(8192, 128 * 1024) : rng.logInt(128 * 1024, 2 * MB);
  }

  add(path, kind, size, mode = 0o644) {
    const fileKind = kind === 'text' ? this.rng.pick(TEXT_STYLES) : kind;
    this.layer.file(path, fileKind, size, mode);
    this.live.set(path, { kind, size, hard: false });
    this.byKind[kind] += size;
  }

  /** One package of roughly `budget` bytes, spread over the usual places. */
  package(name, budget) {
    const rng = this.rng;
    const start = this.layer.bytes;
    const lib = `usr/lib/x86_64-linux-gnu`;
    let n = 0;
    const soVersion = `${rng.int(0, 9)}.${rng.int(0, 30)}.${rng.int(0, 9)}`;
    const so = `${lib}/lib${name}.so.${soVersion}`;
    let haveSo = false;
    const subdirs = ['', ...Array.from({ length: rng.int(0, 6) }, () => `/${ident(rng).toLowerCase()}`)];
    while (this.layer.bytes - start < budget) {
      const kind = this.nextKind();
      const size = Math.min(this.sizeFor(kind), Math.max(budget - (this.layer.bytes - start), 64));
      n++;
      if (kind === 'elf') {
        if (!haveSo) {
          haveSo = true;
          this.add(so, 'elf', size);
          this.layer.symlink(`${lib}/lib${name}.so.${soVersion.split('.')[0]}`, `lib${name}.so.${soVersion}`);
          this.layer.symlink(`${lib}/lib${name}.so`, `lib${name}.so.${soVersion.split('.')[0]}`);
        } else if (rng.chance(0.3)) {
          this.add(`usr/bin/${name}${n > 1 ? `-${ident(rng).toLowerCase()}` : ''}`, 'elf', size, 0o755);
        } else {
          this.add(`usr/lib/${name}${rng.pick(subdirs)}/${ident(rng)}.so`, 'elf', size);
        }
      } else if (kind === 'random') {
        const ext = rng.pick(['png', 'jpg', 'gz', 'whl', 'woff2', 'zip', 'bin']);
        this.add(`usr/share/${name}${rng.pick(subdirs)}/${ident(rng)}-${n}.${ext}`, 'random', size);
      } else {
        const place = rng.int(0, 9);
        if (place === 0) this.add(`usr/share/doc/${name}/${rng.pick(['README.md', 'NEWS.md', 'changelog', 'copyright', `${ident(rng)}.md`])}`, 'text', size);
        else if (place === 1) this.add(`etc/${name}/${ident(rng)}.conf`, 'text', Math.min(size, 16384));
        else if (place === 2) this.add(`var/log/${name}/${ident(rng)}.log`, 'text', size);
        else {
          const ext = rng.pick(['py', 'js', 'rb', 'pl', 'sh', 'h', 'c', 'go', 'json', 'txt']);
          this.add(`usr/lib/${name}${rng.pick(subdirs)}/${ident(rng)}.${ext}`, 'text', size);
        }
      }
    }
  }

  /** Whole layer of packages up to `target` bytes. */
  fill(target, prefix) {
    let p = 0;
    while (this.layer.bytes < target) {
      const budget = Math.min(this.rng.logInt(256 * 1024, 48 * MB), target - this.layer.bytes);
      this.package(`${prefix}${p++}${ident(this.rng).toLowerCase().replace(/_/g, '-')}`, budget);
    }
  }

  /** A few hardlinks to regular files of this layer (as `ln` in a Dockerfile RUN would make). */
  hardlinks(count) {
    const own = [...this.layer.entries.values()].filter((e) => e.type === 'file' && e.kind === 'elf' && e.path.startsWith('usr/bin/'));
    for (let i = 0; i < count && own.length > 0; i++) {
      const target = own[this.rng.int(0, own.length - 1)];
      const group = target.group ?? (target.group = `${this.layer.seed}:g${i}`);
      const base = target.path.slice(target.path.lastIndexOf('/') + 1);
      const alias = `usr/sbin/${base}${i % 2 === 0 ? '' : '.alias'}`;
      if (this.layer.entries.has(alias)) continue;
      this.layer.parents(alias);
      this.layer.entries.set(alias, { path: alias, type: 'link-member', group, mode: target.mode });
      this.live.get(target.path).hard = true;
      this.live.set(alias, { kind: 'elf', size: target.size, hard: true });
    }
  }

  /** Upper-layer changes against the files visible below. */
  modifyLower(lowerLive, { overwrite, whiteout, deleteDirs, opaqueDirs, dirPrefix = 'usr/lib/' }) {
    const rng = this.rng;
    const candidates = [...lowerLive.entries()].filter(([path, f]) => !f.hard && !this.layer.entries.has(path));
    for (const [path, f] of candidates) {
      const r = rng.float();
      if (r < overwrite) {
        this.add(path, f.kind, Math.max(64, Math.floor(f.size * (0.5 + rng.float()))), 0o644);
      } else if (r < overwrite + whiteout) {
        this.layer.whiteout(path);
        this.live.delete(path);
      }
    }
    // Package directories: one level below `dirPrefix` (never a shared one like x86_64-linux-gnu).
    const depth = dirPrefix.split('/').length;
    const dirs = [...new Set([...lowerLive.keys()].filter((p) => p.startsWith(dirPrefix)).map((p) => p.split('/').slice(0, depth).join('/')))]
      .filter((d) => d.split('/').length === depth && !/x86_64|node_modules|python3/.test(d.slice(dirPrefix.length)))
      .sort();
    for (let i = 0; i < deleteDirs && dirs.length > 0; i++) {
      const dir = dirs.splice(rng.int(0, dirs.length - 1), 1)[0];
      const hasHard = [...this.live.entries()].some(([p, f]) => p.startsWith(`${dir}/`) && f.hard);
      if (hasHard || [...this.layer.entries.keys()].some((p) => p === dir || p.startsWith(`${dir}/`))) continue;
      this.layer.whiteout(dir);
      for (const p of [...this.live.keys()]) if (p.startsWith(`${dir}/`)) this.live.delete(p);
    }
    const docs = [...new Set([...lowerLive.keys()].filter((p) => p.startsWith('usr/share/doc/')).map((p) => p.split('/').slice(0, 4).join('/')))].sort();
    for (let i = 0; i < opaqueDirs && docs.length > 0; i++) {
      const dir = docs.splice(rng.int(0, docs.length - 1), 1)[0];
      if ([...this.layer.entries.keys()].some((p) => p.startsWith(`${dir}/`) && p !== `${dir}/.wh..wh..opq`)) continue;
      for (const p of [...this.live.keys()]) if (p.startsWith(`${dir}/`)) this.live.delete(p);
      this.layer.opaque(dir);
      this.add(`${dir}/README.md`, 'text', rng.logInt(500, 8000));
    }
  }
}

function baseSkeleton(layer) {
  for (const d of ['usr/bin', 'usr/sbin', 'usr/lib/x86_64-linux-gnu', 'usr/lib64', 'usr/share/doc', 'etc', 'var/log', 'var/lib', 'home', 'opt', 'srv', 'run', 'mnt', 'media']) layer.dir(d);
  layer.dir('tmp', 0o1777);
  layer.dir('root', 0o700);
  layer.symlink('bin', 'usr/bin');
  layer.symlink('sbin', 'usr/sbin');
  layer.symlink('lib', 'usr/lib');
  layer.symlink('lib64', 'usr/lib64');
  layer.symlink('usr/lib64/ld-linux-x86-64.so.2', '/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2');
  layer.file('etc/os-release', 'config', 300);
  layer.file('etc/passwd', 'config', 900);
  layer.file('etc/group', 'config', 500);
}

/** big: ~`mb` MiB uncompressed in 5 layers. */
function bigLayers(mb, seed) {
  const fractions = [0.42, 0.22, 0.15, 0.12, 0.09];
  const layers = [];
  let live = new Map();
  fractions.forEach((fraction, index) => {
    const layer = new Layer(index, `${seed}:L${index}`);
    const rng = new Rng(`${seed}:L${index}`);
    const lowerLive = live;
    live = new Map(lowerLive);
    const filler = new Filler(layer, rng, live);
    const target = Math.floor(mb * MB * fraction);
    if (index === 0) baseSkeleton(layer);
    else filler.modifyLower(lowerLive, { overwrite: 0.03, whiteout: 0.01, deleteDirs: 1, opaqueDirs: 1 });
    filler.fill(target, `p${index}-`);
    filler.hardlinks(index === 0 ? 6 : 2);
    layers.push(layer);
  });
  return layers;
}

/** many: `count` small files in 2 layers (70% / 30%), node_modules / site-packages style. */
function manyLayers(count, seed) {
  const layers = [];
  let live = new Map();
  [0.7, 0.3].forEach((fraction, index) => {
    const layer = new Layer(index, `${seed}:L${index}`);
    const rng = new Rng(`${seed}:L${index}`);
    const lowerLive = live;
    live = new Map(lowerLive);
    const filler = new Filler(layer, rng, live);
    if (index === 0) baseSkeleton(layer);
    else filler.modifyLower(lowerLive, { overwrite: 0.02, whiteout: 0.005, deleteDirs: 1, opaqueDirs: 0, dirPrefix: 'usr/lib/node_modules/' });
    const target = Math.floor(count * fraction);
    let files = 0;
    for (let pkg = 0; files < target; pkg++) {
      const root = index === 0 ? `usr/lib/node_modules/m${pkg}-${ident(rng).toLowerCase()}` : `usr/lib/python3/dist-packages/p${pkg}_${ident(rng).toLowerCase()}`;
      const dirs = [root, ...Array.from({ length: rng.int(0, 5) }, (_, i) => `${root}/${i % 2 ? 'lib' : 'src'}/${ident(rng).toLowerCase()}`)];
      const nfiles = Math.min(rng.logInt(3, 120), target - files);
      for (let f = 0; f < nfiles; f++, files++) {
        const dir = rng.pick(dirs);
        const r = rng.float();
        if (r < 0.9) {
          const ext = index === 0 ? rng.pick(['js', 'js', 'json', 'md', 'd.ts', 'map']) : rng.pick(['py', 'py', 'pyi', 'txt', 'cfg']);
          filler.add(`${dir}/${ident(rng)}-${f}.${ext}`, 'text', rng.logInt(60, 12000));
        } else if (r < 0.97) {
          filler.add(`${dir}/${ident(rng)}-${f}.${index === 0 ? 'node' : 'pyc'}`, 'elf', rng.logInt(500, 20000));
        } else {
          filler.add(`${dir}/${ident(rng)}-${f}.png`, 'random', rng.logInt(200, 8000));
        }
      }
      if (index === 0 && rng.chance(0.2)) {
        layer.symlink(`usr/lib/node_modules/.bin/${ident(rng).toLowerCase()}-${pkg}`, `../${root.split('/').pop()}/index.js`);
      }
    }
    layers.push(layer);
  });
  return layers;
}

/**
 * million: `count` tiny files (20 B-1.5 KiB, one tar block of body at most) in 3 layers
 * (60/25/15 %), for the memory per path (issue 10): packages of 2-4 directory levels with
 * 3-120 files each, as node_modules / site-packages / TeX trees have; the upper layers
 * overwrite 1 %, white out 0.5 % and delete one package directory each.
 */
function millionLayers(count, seed) {
  const layers = [];
  let live = new Map();
  const roots = ['usr/lib/node_modules', 'usr/lib/python3/dist-packages', 'usr/share/texlive/texmf-dist/tex'];
  [0.6, 0.25, 0.15].forEach((fraction, index) => {
    const layer = new Layer(index, `${seed}:L${index}`);
    const rng = new Rng(`${seed}:L${index}`);
    const lowerLive = live;
    live = new Map(lowerLive);
    const filler = new Filler(layer, rng, live);
    if (index === 0) baseSkeleton(layer);
    else filler.modifyLower(lowerLive, { overwrite: 0.01, whiteout: 0.005, deleteDirs: 1, opaqueDirs: 0, dirPrefix: `${roots[index - 1]}/` });
    const target = Math.floor(count * fraction);
    let files = 0;
    for (let pkg = 0; files < target; pkg++) {
      const root = `${roots[index]}/${index === 0 ? 'm' : index === 1 ? 'p' : 't'}${pkg}-${ident(rng).toLowerCase()}`;
      const dirs = [root];
      for (let i = rng.int(0, 6); i > 0; i--) {
        const parent = rng.pick(dirs);
        if (parent.split('/').length < root.split('/').length + 3) dirs.push(`${parent}/${ident(rng).toLowerCase()}`);
      }
      const nfiles = Math.min(rng.logInt(3, 120), target - files);
      for (let f = 0; f < nfiles; f++, files++) {
        const ext = rng.pick(['js', 'json', 'md', 'py', 'pyc', 'sty', 'tex', 'txt']);
        filler.add(`${rng.pick(dirs)}/${ident(rng)}-${f}.${ext}`, 'text', rng.logInt(20, 1500));
      }
    }
    layers.push(layer);
  });
  return layers;
}

/** single: one base-style layer of ~`mb` MiB. */
function singleLayers(mb, seed) {
  const layer = new Layer(0, `${seed}:L0`);
  const rng = new Rng(`${seed}:L0`);
  const filler = new Filler(layer, rng, new Map());
  baseSkeleton(layer);
  filler.fill(mb * MB, 's-');
  filler.hardlinks(4);
  return [layer];
}

// ---------------------------------------------------------------------------------------------
// Writing layers: tar -> pigz -6 -n (or gzip -6 -n), hashing both sides.

async function writeLayer(layer, outDir) {
  const useGzip = hasTool('pigz') ? ['pigz', ['-6', '-n', '-c', '-p', '2']] : ['gzip', ['-6', '-n', '-c']];
  const temp = join(outDir, `layer-${layer.index}.tmp`);
  const child = spawn(useGzip[0], useGzip[1], { stdio: ['pipe', 'pipe', 'inherit'] });
  const compressedHash = createHash('sha256');
  const out = createWriteStream(temp);
  let compressedSize = 0;
  child.stdout.on('data', (chunk) => {
    compressedHash.update(chunk);
    compressedSize += chunk.length;
  });
  child.stdout.pipe(out);
  const exited = once(child, 'exit');
  const diffHash = createHash('sha256');
  let tarSize = 0;
  let pending = [];
  let pendingBytes = 0;
  const flush = async () => {
    if (pending.length === 0) return;
    const chunk = pending.length === 1 ? pending[0] : Buffer.concat(pending);
    pending = [];
    pendingBytes = 0;
    diffHash.update(chunk);
    tarSize += chunk.length;
    if (!child.stdin.write(chunk)) await once(child.stdin, 'drain');
  };
  const write = async (buf) => {
    pending.push(buf);
    pendingBytes += buf.length;
    if (pendingBytes >= 1024 * 1024) await flush();
  };
  const firstOfGroup = new Map();
  let entries = 0;
  for (const entry of layer.sorted()) {
    entries++;
    const base = { mtime: MTIME + layer.index * 86400, uid: 0, gid: 0 };
    if (entry.type === 'dir') await write(header({ ...base, path: entry.path, type: 'dir', mode: entry.mode }));
    else if (entry.type === 'symlink') await write(header({ ...base, path: entry.path, type: 'symlink', mode: 0o777, linkname: entry.linkname }));
    else if (entry.group !== undefined && firstOfGroup.has(entry.group)) {
      await write(header({ ...base, path: entry.path, type: 'link', mode: entry.mode, linkname: firstOfGroup.get(entry.group) }));
    } else {
      // A regular file (or the first member of a hardlink group met in tar order).
      const source = entry.type === 'link-member' ? [...layer.entries.values()].find((e) => e.type === 'file' && e.group === entry.group) : entry;
      if (entry.group !== undefined) firstOfGroup.set(entry.group, entry.path);
      const body = contentOf(source);
      await write(header({ ...base, path: entry.path, type: 'file', mode: source.mode, size: body.length }));
      await write(body);
      await write(padding(body.length));
    }
  }
  await write(END_OF_ARCHIVE);
  await flush();
  child.stdin.end();
  const [code] = await exited;
  if (!out.closed) await once(out, 'close');
  if (code !== 0) throw new Error(`${useGzip[0]} exited with ${code}`);
  const digest = `sha256:${compressedHash.digest('hex')}`;
  const file = join(outDir, `${digest.replace(':', '-')}.tar.gz`);
  await rename(temp, file);
  return { digest, diffId: `sha256:${diffHash.digest('hex')}`, size: compressedSize, tarSize, entries, file };
}

// ---------------------------------------------------------------------------------------------

export const IMAGE_KINDS = {
  big: { layers: bigLayers, describe: (p) => `${p} MiB, 5 gzip layers` },
  many: { layers: manyLayers, describe: (p) => `${p} small files, 2 gzip layers` },
  million: { layers: millionLayers, describe: (p) => `${p} tiny files, 3 gzip layers` },
  single: { layers: singleLayers, describe: (p) => `${p} MiB, 1 gzip layer` },
};

/** A cache copied or moved from another checkout still names its old paths: rebase them on `dir`. */
function relocate(meta, dir) {
  const here = (file) => join(dir, basename(file));
  return {
    ...meta,
    dir,
    configFile: here(meta.configFile),
    manifestFile: here(meta.manifestFile),
    layers: meta.layers.map((l) => ({ ...l, file: here(l.file) })),
  };
}

/**
 * The image `kind` with parameter `param` (MiB or file count), built once and cached.
 * Returns { key, dir, layers: [{ digest, diffId, size, tarSize, entries, file }], config, manifest }.
 */
export async function ensureImage(cacheRoot, kind, param, log) {
  const key = `${kind}-${param}-g${KIND_VERSION[kind] ?? GENERATOR_VERSION}`;
  const dir = join(cacheRoot, 'images', key);
  const metaPath = join(dir, 'meta.json');
  if (existsSync(metaPath)) {
    const meta = relocate(JSON.parse(await readFile(metaPath, 'utf8')), dir);
    if (meta.layers.every((l) => existsSync(l.file))) {
      log(`image ${key}: cached`);
      return meta;
    }
  }
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const started = performance.now();
  log(`image ${key}: generating (${IMAGE_KINDS[kind].describe(param)})...`);
  const layers = [];
  for (const layer of IMAGE_KINDS[kind].layers(param, `${kind}:${param}`)) {
    const written = await writeLayer(layer, dir);
    log(`  layer ${layer.index}: ${written.entries} entries, ${(written.tarSize / MB).toFixed(1)} MiB tar, ${(written.size / MB).toFixed(1)} MiB gz`);
    layers.push(written);
  }
  const config = Buffer.from(
    JSON.stringify({
      architecture: hostArchitecture(),
      os: 'linux',
      config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      history: layers.map((_, i) => ({ created: '2024-01-01T00:00:00Z', created_by: `bench layer ${i}` })),
    }),
  );
  const configDescriptor = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length };
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: configDescriptor,
      layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: l.digest, size: l.size })),
    }),
  );
  await writeFile(join(dir, 'config.json'), config);
  await writeFile(join(dir, 'manifest.json'), manifest);
  const meta = {
    key,
    kind,
    param,
    dir,
    layers,
    configFile: join(dir, 'config.json'),
    config: configDescriptor,
    manifestFile: join(dir, 'manifest.json'),
    manifestDigest: sha256(manifest),
    tarBytes: layers.reduce((s, l) => s + l.tarSize, 0),
    gzBytes: layers.reduce((s, l) => s + l.size, 0),
    entries: layers.reduce((s, l) => s + l.entries, 0),
    generatedSeconds: (performance.now() - started) / 1000,
  };
  await writeFile(metaPath, JSON.stringify(meta, null, 2));
  log(`image ${key}: generated in ${meta.generatedSeconds.toFixed(1)} s`);
  return meta;
}

export function sha256(bytes) {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

export function hostArchitecture() {
  const map = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64', ia32: '386' };
  return map[process.arch] ?? process.arch;
}
