/**
 * Non-registry sources (OCI image layout, `docker save` archive): built in code, opened,
 * and flattened by the same `flattenLayers` as a registry pull; the listing of the output is
 * what is asserted. Every layer is checked against its diffID (and stored digest when known).
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { afterAll, describe, expect, it } from 'vitest';
import {
  DigestMismatchError,
  ManifestError,
  NotFoundError,
  PlatformNotFoundError,
  UsageError,
} from '../../src/errors.js';
import { flattenLayers } from '../../src/flatten/flatten.js';
import type { FlattenLayer } from '../../src/flatten/flatten.js';
import { parseSourceReference } from '../../src/stores/index.js';
import { indexTarFile } from '../../src/stores/tar-index.js';
import { openDockerArchive, openOciLayout, openSource } from '../helpers/open-source.js';
import { listTar, type ListedEntry } from '../helpers/listing.js';
import { sha256 } from '../helpers/push.js';
import { buildTar, type FixtureEntry } from '../helpers/tar-fixture.js';

const work = await mkdtemp(join(tmpdir(), 'oci-rootfs-sources-'));
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});
let counter = 0;
const freshDir = async (what: string): Promise<string> => {
  const dir = join(work, `${what}-${counter++}`);
  await mkdir(dir, { recursive: true });
  return dir;
};

async function flatten(layers: FlattenLayer[]): Promise<ListedEntry[]> {
  const chunks: Buffer[] = [];
  for await (const chunk of flattenLayers(layers)) chunks.push(chunk);
  const listed = await listTar(Buffer.concat(chunks));
  // Every flatten writes the root entry `./` (DESIGN.md §3); the cases below are about the rest.
  expect(listed.filter((e) => e.path === '.').map((e) => e.type)).toEqual(['dir']);
  return listed.filter((e) => e.path !== '.');
}

/** One line per entry, sorted: what the output holds, not the order the flattener wrote it in. */
const summary = (entries: ListedEntry[]): string[] =>
  entries
    .map((e) => `${e.type} ${e.path}${e.type === 'symlink' ? ` -> ${e.linkname}` : ''}${e.type === 'file' ? ` ${e.size}` : ''}`)
    .sort((a, b) => (a.split(' ')[1]! < b.split(' ')[1]! ? -1 : 1));

// Two layers: the upper one deletes `etc/old` and adds `etc/new` and a file under a symlinked dir.
const baseLayer: FixtureEntry[] = [
  { name: 'etc', type: 'dir' },
  { name: 'etc/old', type: 'file', content: 'old' },
  { name: 'etc/keep', type: 'file', content: 'keep me' },
  { name: 'usr', type: 'dir' },
  { name: 'usr/bin', type: 'dir' },
  { name: 'bin', type: 'symlink', linkname: 'usr/bin' },
];
const topLayer: FixtureEntry[] = [
  { name: 'etc', type: 'dir' },
  { name: 'etc/.wh.old', type: 'file' },
  { name: 'etc/new', type: 'file', content: 'new!' },
  { name: 'usr/bin/tool', type: 'file', content: 'binary', mode: 0o755 },
];
const expectedListing = [
  'symlink bin -> usr/bin',
  'dir etc',
  'file etc/keep 7',
  'file etc/new 4',
  'dir usr',
  'dir usr/bin',
  'file usr/bin/tool 6',
];

// ---------------------------------------------------------------------------------------------
// OCI layout, written by hand

type Compression = 'gzip' | 'zstd' | 'none';

function compress(tar: Buffer, compression: Compression): Buffer {
  if (compression === 'gzip') return gzipSync(tar);
  if (compression === 'zstd') return execFileSync('zstd', ['-q', '-c'], { input: tar });
  return tar;
}

const LAYER_TYPE: Record<Compression, string> = {
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  none: 'application/vnd.oci.image.layer.v1.tar',
};

interface Blob {
  digest: string;
  size: number;
}

async function putBlob(dir: string, bytes: Buffer): Promise<Blob> {
  const digest = sha256(bytes);
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length)), bytes);
  return { digest, size: bytes.length };
}

interface LayoutImage {
  layers: FixtureEntry[][];
  compression?: Compression;
  platform?: { os: string; architecture: string; variant?: string };
}

/** Writes one image (layers, config, manifest) into the layout's blobs; returns the manifest descriptor. */
async function putImage(dir: string, image: LayoutImage): Promise<Blob & { mediaType: string }> {
  const compression = image.compression ?? 'gzip';
  const platform = image.platform ?? { os: 'linux', architecture: 'amd64' };
  const layers = [];
  const diffIds = [];
  for (const entries of image.layers) {
    const tar = buildTar(entries);
    diffIds.push(sha256(tar));
    layers.push({ mediaType: LAYER_TYPE[compression], ...(await putBlob(dir, compress(tar, compression))) });
  }
  const config = Buffer.from(
    JSON.stringify({ ...platform, config: { Cmd: ['/bin/sh'] }, rootfs: { type: 'layers', diff_ids: diffIds } }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...(await putBlob(dir, config)) },
      layers,
    }),
  );
  return { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...(await putBlob(dir, manifest)) };
}

async function writeLayout(dir: string, entries: Array<Record<string, unknown>>): Promise<void> {
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: entries }));
}

const named = (tag: string): Record<string, unknown> => ({
  annotations: { 'org.opencontainers.image.ref.name': tag },
});

describe('parseSourceReference', () => {
  it.each([
    ['oci:./out', { kind: 'oci', path: './out' }],
    ['oci:/tmp/layout:v1.2', { kind: 'oci', path: '/tmp/layout', tag: 'v1.2' }],
    ['oci:C:\\images\\alp:latest', { kind: 'oci', path: 'C:\\images\\alp', tag: 'latest' }],
    ['docker-archive:alpine.tar', { kind: 'docker-archive', path: 'alpine.tar' }],
    ['docker-archive:/x/a.tar:alpine:3.20', { kind: 'docker-archive', path: '/x/a.tar', reference: 'alpine:3.20' }],
    ['docker-archive:a.tar:localhost:5000/x:y', { kind: 'docker-archive', path: 'a.tar', reference: 'localhost:5000/x:y' }],
    ['docker-archive:a.tar:@1', { kind: 'docker-archive', path: 'a.tar', reference: '@1' }],
    ['docker://alpine:3.20', { kind: 'registry', reference: 'alpine:3.20' }],
    ['alpine:3.20', { kind: 'registry', reference: 'alpine:3.20' }],
    ['localhost:5000/oci:tag', { kind: 'registry', reference: 'localhost:5000/oci:tag' }],
  ])('reads %s', (input, expected) => {
    expect(parseSourceReference(input)).toEqual(expected);
  });

  it.each(['oci:', 'oci::tag', 'docker-archive:a.tar:'])('refuses %s as a usage error', (input) => {
    expect(() => parseSourceReference(input)).toThrow(UsageError);
  });
});

describe('OCI image layout source', () => {
  it.each<Compression>(['gzip', 'zstd', 'none'])('flattens a tagged %s image like a registry pull', async (compression) => {
    const dir = await freshDir('layout');
    const manifest = await putImage(dir, { layers: [baseLayer, topLayer], compression });
    const other = await putImage(dir, { layers: [[{ name: 'other', type: 'file', content: 'x' }]] });
    await writeLayout(dir, [
      { ...other, ...named('other') },
      { ...manifest, ...named('v1') },
    ]);
    const { image, layers } = await openSource(parseSourceReference(`oci:${dir}:v1`));
    expect(image.manifestDigest).toBe(manifest.digest);
    expect(image.platform).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(image.config.json.config?.Cmd).toEqual(['/bin/sh']);
    expect(image.layers.map((l) => l.compression)).toEqual([compression, compression]);
    expect(summary(await flatten(layers))).toEqual(expectedListing);
  });

  it('takes the only image of an index without a tag, and names the tags it has when one is missing', async () => {
    const dir = await freshDir('layout');
    const manifest = await putImage(dir, { layers: [baseLayer] });
    await writeLayout(dir, [{ ...manifest, ...named('latest') }]);
    const { image } = await openOciLayout(dir);
    expect(image.manifestDigest).toBe(manifest.digest);
    const error = await openOciLayout(dir, 'nope').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NotFoundError);
    expect((error as Error).message).toMatch(/"nope".*latest/);
    // A layout is no HTTP server: the error names the file, and no status.
    expect(error).toMatchObject({ path: join(dir, 'index.json'), status: undefined, method: undefined, url: undefined });
  });

  it('follows a nested index and picks the platform, as a registry pull does', async () => {
    const dir = await freshDir('layout');
    const amd = await putImage(dir, { layers: [[{ name: 'arch', type: 'file', content: 'amd64' }]] });
    const arm = await putImage(dir, {
      layers: [[{ name: 'arch', type: 'file', content: 'arm64!' }]],
      platform: { os: 'linux', architecture: 'arm64' },
    });
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [
          { ...amd, platform: { os: 'linux', architecture: 'amd64' } },
          { ...arm, platform: { os: 'linux', architecture: 'arm64' } },
        ],
      }),
    );
    const indexBlob = await putBlob(dir, index);
    await writeLayout(dir, [{ mediaType: 'application/vnd.oci.image.index.v1+json', ...indexBlob, ...named('multi') }]);
    const { image, layers } = await openOciLayout(dir, 'multi', { platform: 'linux/arm64' });
    expect(image.indexDigest).toBe(indexBlob.digest);
    expect(image.manifestDigest).toBe(arm.digest);
    expect(image.platform).toEqual({ os: 'linux', architecture: 'arm64' });
    expect(summary(await flatten(layers))).toEqual(['file arch 6']);
    await expect(openOciLayout(dir, 'multi', { platform: 'linux/s390x' })).rejects.toBeInstanceOf(PlatformNotFoundError);
  });

  it('fails the pass when a layer blob does not match its digest', async () => {
    const dir = await freshDir('layout');
    const manifest = await putImage(dir, { layers: [baseLayer, topLayer], compression: 'none' });
    await writeLayout(dir, [{ ...manifest, ...named('v1') }]);
    const { image, layers } = await openOciLayout(dir, 'v1');
    const top = image.layers[1]!;
    // A valid tar of the same size with other content.
    const swapped = topLayer.map((entry) => (entry.name === 'etc/new' ? { ...entry, content: 'NEW!' } : entry));
    await writeFile(join(dir, 'blobs', 'sha256', top.digest!.slice('sha256:'.length)), buildTar(swapped));
    await expect(flatten(layers)).rejects.toBeInstanceOf(DigestMismatchError);
  });

  it('refuses a directory that is not a layout', async () => {
    const dir = await freshDir('not-layout');
    await expect(openOciLayout(dir)).rejects.toBeInstanceOf(UsageError);
  });
});

// ---------------------------------------------------------------------------------------------
// docker save archive, written by hand (tar-stream): `<id>/layer.tar`, config, manifest last

interface ArchiveMember {
  name: string;
  content?: Buffer;
  symlink?: string;
}

async function writeTar(path: string, members: ArchiveMember[]): Promise<void> {
  const archive = pack();
  for (const member of members) {
    if (member.symlink !== undefined) {
      archive.entry({ name: member.name, type: 'symlink', linkname: member.symlink, mtime: new Date(0) });
    } else if (member.content === undefined) {
      archive.entry({ name: member.name, type: 'directory', mode: 0o755, mtime: new Date(0) });
    } else {
      archive.entry({ name: member.name, size: member.content.length, mode: 0o644, mtime: new Date(0) }, member.content);
    }
  }
  archive.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of archive as AsyncIterable<Buffer>) chunks.push(chunk);
  await writeFile(path, Buffer.concat(chunks));
}

interface SavedImage {
  tags: string[];
  layers: Array<{ entries: FixtureEntry[]; gzip?: boolean; duplicateOf?: number }>;
  /** Overrides the diff_ids (negative tests). */
  diffIds?: string[];
}

/** Members of a `docker save` of `images` (legacy layout, as Docker < 25 writes it). */
function savedMembers(images: SavedImage[]): ArchiveMember[] {
  const members: ArchiveMember[] = [];
  const manifest: Array<Record<string, unknown>> = [];
  const repositories: Record<string, Record<string, string>> = {};
  images.forEach((image, n) => {
    const layerPaths: string[] = [];
    const diffIds: string[] = [];
    image.layers.forEach((layer, i) => {
      const tar = buildTar(layer.entries);
      diffIds.push(sha256(tar));
      const id = sha256(Buffer.from(`image ${n} layer ${i}`)).slice('sha256:'.length);
      members.push({ name: `${id}/` });
      if (layer.duplicateOf !== undefined) {
        // docker save stores a layer once and links the other copies to it.
        members.push({ name: `${id}/layer.tar`, symlink: `../${layerPaths[layer.duplicateOf]!.split('/')[0]!}/layer.tar` });
      } else {
        members.push({ name: `${id}/layer.tar`, content: layer.gzip === true ? gzipSync(tar) : tar });
      }
      members.push({ name: `${id}/VERSION`, content: Buffer.from('1.0') });
      layerPaths.push(`${id}/layer.tar`);
    });
    const config = Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: { Env: ['PATH=/bin'], Cmd: ['/bin/sh'], User: 'app' },
        rootfs: { type: 'layers', diff_ids: image.diffIds ?? diffIds },
      }),
    );
    const configName = `${sha256(config).slice('sha256:'.length)}.json`;
    members.push({ name: configName, content: config });
    manifest.push({ Config: configName, RepoTags: image.tags, Layers: layerPaths });
    for (const tag of image.tags) {
      const [repo = '', version = ''] = tag.split(':');
      repositories[repo] = { [version]: layerPaths[layerPaths.length - 1]!.split('/')[0]! };
    }
  });
  members.push({ name: 'manifest.json', content: Buffer.from(JSON.stringify(manifest)) });
  members.push({ name: 'repositories', content: Buffer.from(JSON.stringify(repositories)) });
  return members;
}

async function writeArchive(images: SavedImage[]): Promise<string> {
  const path = join(await freshDir('archive'), 'saved.tar');
  await writeTar(path, savedMembers(images));
  return path;
}

describe('docker save archive source', () => {
  it('flattens an archive whose manifest comes last, layers plain, gzip and linked', async () => {
    const file = await writeArchive([
      {
        tags: ['example/app:1.0'],
        layers: [
          { entries: baseLayer },
          { entries: [{ name: 'etc', type: 'dir' }, { name: 'etc/mid', type: 'file', content: 'mid' }], gzip: true },
          // The same layer again (a re-applied base): stored once, linked.
          { entries: baseLayer, duplicateOf: 0 },
          { entries: topLayer },
        ],
      },
    ]);
    const { image, layers } = await openSource(parseSourceReference(`docker-archive:${file}:example/app:1.0`));
    expect(image.layers.map((l) => l.compression)).toEqual(['none', 'gzip', 'none', 'none']);
    expect(image.config.json.config?.User).toBe('app');
    expect(image.platform).toEqual({ os: 'linux', architecture: 'amd64' });
    const listing = summary(await flatten(layers));
    // The re-applied base brings etc/old back above the middle layer, then the top deletes it again.
    expect(listing).toEqual([...expectedListing.slice(0, 3), 'file etc/mid 3', ...expectedListing.slice(3)]);
  });

  it('indexes member offsets in one header pass', async () => {
    const file = await writeArchive([{ tags: ['a:b'], layers: [{ entries: baseLayer }] }]);
    const index = await indexTarFile(file);
    expect(index.get('manifest.json')?.type).toBe('file');
    expect(index.get('repositories')?.size).toBeGreaterThan(0);
    expect([...index.values()].filter((entry) => entry.name.endsWith('/layer.tar'))).toHaveLength(1);
  });

  it('picks an image by tag (as written or normalised) or position, and asks when there are several', async () => {
    const file = await writeArchive([
      { tags: ['one:latest'], layers: [{ entries: [{ name: 'one', type: 'file', content: '1' }] }] },
      { tags: ['two:latest'], layers: [{ entries: [{ name: 'two', type: 'file', content: '22' }] }] },
    ]);
    expect(summary(await flatten((await openDockerArchive(file, 'two:latest')).layers))).toEqual(['file two 2']);
    expect(summary(await flatten((await openDockerArchive(file, 'docker.io/library/one')).layers))).toEqual(['file one 1']);
    expect(summary(await flatten((await openDockerArchive(file, '@1')).layers))).toEqual(['file two 2']);
    await expect(openDockerArchive(file)).rejects.toThrow(/2 images.*one:latest, two:latest/);
    await expect(openDockerArchive(file, 'three:latest')).rejects.toBeInstanceOf(NotFoundError);
    await expect(openDockerArchive(file, 'three:latest')).rejects.toMatchObject({ path: file, status: undefined });
  });

  it('fails the layer whose bytes do not match the diffID of the config', async () => {
    const file = await writeArchive([
      { tags: ['bad:1'], layers: [{ entries: baseLayer }], diffIds: [sha256(Buffer.from('something else'))] },
    ]);
    const { layers } = await openDockerArchive(file);
    await expect(flatten(layers)).rejects.toBeInstanceOf(DigestMismatchError);
  });

  it('refuses a pipe: the archive must be a seekable file', async () => {
    const fifo = join(await freshDir('fifo'), 'pipe.tar');
    execFileSync('mkfifo', [fifo]);
    const error = await openDockerArchive(fifo).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UsageError);
    expect((error as Error).message).toMatch(/not a regular file.*seekable/);
  });

  it('says when the tar is not a docker save archive', async () => {
    const path = join(await freshDir('plain'), 'plain.tar');
    await writeTar(path, [{ name: 'hello', content: Buffer.from('hi') }]);
    await expect(openDockerArchive(path)).rejects.toBeInstanceOf(ManifestError);
  });
});
