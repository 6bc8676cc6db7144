/**
 * Image formats against real registries (DESIGN.md §4, §7): zstd layers, Docker schema 1
 * (pushed by skopeo into a second registry that accepts it), foreign layers served by a
 * small in-process HTTP server, and unknown layer media types.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { MalformedArchiveError, ManifestError, NetworkError, OciRootfsError } from '../../src/errors.js';
import { flattenLayers, type FlattenLayer } from '../../src/flatten/flatten.js';
import { pullRootfs } from '../../src/pull/pull-rootfs.js';
import { parseReference } from '../../src/reference/index.js';
import { openBlob } from '../../src/registry/blob.js';
import { RegistryClient } from '../../src/registry/client.js';
import { openForeignBlob } from '../../src/registry/foreign.js';
import { EMPTY_GZIP_LAYER_DIGEST } from '../../src/image/schema1.js';
import type { LayerDescriptor } from '../../src/image/types.js';
import { layerSources } from '../../src/stores/layer-sources.js';
import { inspectImage } from '../../src/queries/inspect.js';
import { resolveImage as resolveFromStore, type ResolveOptions, type ResolvedImage } from '../../src/queries/resolve.js';
import { registryStore } from '../../src/stores/registry-store.js';

/** The resolver over the registry store of `ref`. */
function resolveImage(client: RegistryClient, ref: ReturnType<typeof parseReference>, options: ResolveOptions = {}): Promise<ResolvedImage> {
  return resolveFromStore(registryStore(client, ref), options);
}
import { listTar, type ListedEntry } from '../helpers/listing.js';
import { pushBlob, pushImage, pushManifest, sha256 } from '../helpers/push.js';
import { startRegistry, type RegistryServer } from '../helpers/registry-server.js';
import { buildTar, type FixtureEntry } from '../helpers/tar-fixture.js';

const execFileAsync = promisify(execFile);
const registry = inject('registry');
const work = await mkdtemp(join(tmpdir(), 'oci-rootfs-formats-'));
const noConfig = await mkdtemp(join(tmpdir(), 'oci-rootfs-formats-noconfig-'));
const clients: RegistryClient[] = [];
afterAll(async () => {
  await Promise.all(clients.map((client) => client.close()));
  await rm(work, { recursive: true, force: true });
  await rm(noConfig, { recursive: true, force: true });
});

const uniqueRepo = (what: string): string => `e2e-formats/${what}-${randomBytes(4).toString('hex')}`;

function clientFor(reference: string): { client: RegistryClient; ref: ReturnType<typeof parseReference> } {
  const ref = parseReference(reference);
  const client = RegistryClient.for(ref, { dockerConfigDir: noConfig });
  clients.push(client);
  return { client, ref };
}

async function pullListing(reference: string): Promise<ListedEntry[]> {
  const chunks: Buffer[] = [];
  for await (const chunk of pullRootfs(reference, { dockerConfigDir: noConfig })) chunks.push(chunk as Buffer);
  return listTar(Buffer.concat(chunks));
}

async function flatten(layers: FlattenLayer[]): Promise<ListedEntry[]> {
  const chunks: Buffer[] = [];
  for await (const chunk of flattenLayers(layers)) chunks.push(chunk);
  return listTar(Buffer.concat(chunks));
}

/** Sorted `type path [size]` lines: what the output holds. */
const summary = (entries: ListedEntry[]): string[] =>
  entries.map((e) => `${e.type} ${e.path}${e.type === 'file' ? ` ${e.size}` : ''}`).sort();

const zstd = (bytes: Buffer): Buffer => execFileSync('zstd', ['-q', '-c', '-5'], { input: bytes });

const lower: FixtureEntry[] = [
  { name: 'etc', type: 'dir' },
  { name: 'etc/os-release', type: 'file', content: 'ID=test\n' },
  { name: 'etc/gone', type: 'file', content: 'bye' },
];
const upper: FixtureEntry[] = [
  { name: 'etc', type: 'dir' },
  { name: 'etc/.wh.gone', type: 'file' },
  { name: 'srv', type: 'dir' },
  { name: 'srv/data', type: 'file', content: randomBytes(100_000) },
];
// `dir .`: every output has a root entry (DESIGN.md §3).
const expected = ['dir .', 'dir etc', 'dir srv', 'file etc/os-release 8', 'file srv/data 100000'];

interface RawLayer {
  blob: Buffer;
  tar: Buffer;
  mediaType: string;
  urls?: string[];
  /** Do not upload the blob (foreign layers). */
  skipUpload?: boolean;
}

/** Pushes an OCI image whose layer blobs are given as they are (any compression, any media type). */
async function pushRawImage(host: string, repo: string, layers: RawLayer[]): Promise<string> {
  const descriptors = [];
  for (const layer of layers) {
    if (layer.skipUpload !== true) await pushBlob(host, repo, layer.blob);
    descriptors.push({
      mediaType: layer.mediaType,
      digest: sha256(layer.blob),
      size: layer.blob.length,
      ...(layer.urls === undefined ? {} : { urls: layer.urls }),
    });
  }
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: layers.map((layer) => sha256(layer.tar)) },
    }),
  );
  const configDigest = await pushBlob(host, repo, config);
  const mediaType = 'application/vnd.oci.image.manifest.v1+json';
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
      layers: descriptors,
    }),
  );
  await pushManifest(host, repo, 'v1', mediaType, manifest);
  return `${host}/${repo}:v1`;
}

const ZSTD_LAYER = 'application/vnd.oci.image.layer.v1.tar+zstd';

// ---------------------------------------------------------------------------------------------

describe('zstd layers', () => {
  it('pulls an image whose layers are zstd (one gzip layer mixed in), digests and diffIDs checked', async () => {
    const lowerTar = buildTar(lower);
    const upperTar = buildTar(upper);
    const reference = await pushRawImage(registry, uniqueRepo('zstd'), [
      { blob: zstd(lowerTar), tar: lowerTar, mediaType: ZSTD_LAYER },
      { blob: gzipSync(upperTar), tar: upperTar, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' },
      { blob: zstd(buildTar([{ name: 'srv/zstd', type: 'file', content: 'z' }])), tar: buildTar([{ name: 'srv/zstd', type: 'file', content: 'z' }]), mediaType: ZSTD_LAYER },
    ]);
    expect(summary(await pullListing(reference))).toEqual([...expected, 'file srv/zstd 1'].sort());
  });

  it('fails a zstd layer with data after its last frame as malformed', async () => {
    const tar = buildTar(lower);
    const blob = Buffer.concat([zstd(tar), Buffer.from('trailing garbage')]);
    const reference = await pushRawImage(registry, uniqueRepo('zstd-garbage'), [{ blob, tar, mediaType: ZSTD_LAYER }]);
    const error = await pullListing(reference).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MalformedArchiveError);
  });

  it('fails a truncated zstd layer as malformed (the blob digest matches what was pushed)', async () => {
    const tar = buildTar(upper);
    const full = zstd(tar);
    const blob = full.subarray(0, full.length - 100);
    const reference = await pushRawImage(registry, uniqueRepo('zstd-cut'), [{ blob, tar, mediaType: ZSTD_LAYER }]);
    const error = await pullListing(reference).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MalformedArchiveError);
  });
});

describe('unknown layer media types', () => {
  it('are an error naming the layer and the type, never skipped', async () => {
    const tar = buildTar(lower);
    const reference = await pushRawImage(registry, uniqueRepo('unknown'), [
      { blob: gzipSync(tar), tar, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' },
      { blob: Buffer.from('{"helm":true}'), tar: Buffer.from('{"helm":true}'), mediaType: 'application/vnd.cncf.helm.chart.content.v1.tar+gzip' },
    ]);
    const { client, ref } = clientFor(reference);
    const error = await resolveImage(client, ref).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ManifestError);
    expect((error as Error).message).toMatch(/layer 1 \(sha256:[0-9a-f]{64}\) has the unknown media type application\/vnd\.cncf\.helm/);
    await expect(pullListing(reference)).rejects.toBeInstanceOf(ManifestError);
  });
});

// ---------------------------------------------------------------------------------------------
// Foreign layers

describe('foreign layers', () => {
  let foreignRegistry: RegistryServer;
  let server: Server;
  let base: string;
  const seen: Array<{ url: string; headers: IncomingHttpHeaders }> = [];
  const files = new Map<string, Buffer>();

  beforeAll(async () => {
    foreignRegistry = await startRegistry({
      extraConfig: ['validation:', '  manifests:', '    urls:', '      allow:', "        - '^https?://'"].join('\n'),
    });
    server = createServer((req, res) => {
      seen.push({ url: req.url ?? '', headers: req.headers });
      const path = req.url ?? '';
      if (path.startsWith('/redirect/')) {
        res.writeHead(302, { location: `/blobs/${path.slice('/redirect/'.length)}` }).end();
        return;
      }
      const body = files.get(path);
      if (body === undefined) {
        res.writeHead(404).end('no');
        return;
      }
      res.writeHead(200, { 'content-length': body.length, 'content-type': 'application/octet-stream' }).end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await foreignRegistry?.stop();
    await new Promise<void>((resolve) => server?.close(() => resolve()));
  });

  /** Registry-served layers through the client, foreign ones from their URLs; both through the one verified pipeline. */
  function sources(client: RegistryClient, ref: ReturnType<typeof parseReference>, layers: LayerDescriptor[]): FlattenLayer[] {
    return layerSources(registryStore(client, ref), layers);
  }

  it('are refused unless allowed; allowed, they keep their URLs and come from the first URL that works, with no credentials', async () => {
    const lowerTar = buildTar(lower);
    const upperTar = buildTar(upper);
    const foreignBlob = gzipSync(lowerTar);
    const digest = sha256(foreignBlob);
    files.set(`/blobs/${digest}`, foreignBlob);
    const urls = [`${base}/missing/${digest}`, `${base}/redirect/${digest}`];
    const reference = await pushRawImage(foreignRegistry.host, uniqueRepo('foreign'), [
      {
        blob: foreignBlob,
        tar: lowerTar,
        mediaType: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
        urls,
        skipUpload: true,
      },
      { blob: gzipSync(upperTar), tar: upperTar, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' },
    ]);
    const { client, ref } = clientFor(reference);
    await expect(resolveImage(client, ref)).rejects.toThrow(/layer 0 .* is a foreign layer served from .*missing/);

    const image = await resolveImage(client, ref, { allowForeign: true });
    expect(image.layers[0]?.urls).toEqual(urls);
    expect(image.layers[1]?.urls).toBeUndefined();
    expect(summary(await flatten(sources(client, ref, image.layers)))).toEqual(expected);
    expect(seen.map((request) => request.url)).toEqual([`/missing/${digest}`, `/redirect/${digest}`, `/blobs/${digest}`]);
    expect(seen.every((request) => request.headers.authorization === undefined && request.headers.cookie === undefined)).toBe(true);
  });

  it('fail as an integrity error when a URL serves other bytes, and say every URL when none works', async () => {
    const tar = buildTar(lower);
    const blob = gzipSync(tar);
    const digest = sha256(blob);
    files.set(`/wrong/${digest}`, Buffer.concat([blob.subarray(0, -1), Buffer.from([blob[blob.length - 1]! ^ 1])]));
    const layer: LayerDescriptor = { digest, size: blob.length, mediaType: 'x', compression: 'gzip', diffId: sha256(tar), urls: [`${base}/wrong/${digest}`] };
    const { client, ref } = clientFor(`${registry}/unused:v1`);
    const error = await flatten(sources(client, ref, [layer])).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OciRootfsError);
    expect((error as OciRootfsError).exitCode).toBe(7);

    const none = await openForeignBlob([`${base}/nothing`, 'ftp://example.com/x', 'http://user:pw@127.0.0.1:1/x', 'http://127.0.0.1:1/x'], layer).catch(
      (e: unknown) => e,
    );
    expect(none).toBeInstanceOf(NetworkError);
    expect((none as Error).message).toMatch(/nothing: not found.*ftp: is not http or https.*credentials are refused/);
  });
});

// ---------------------------------------------------------------------------------------------
// Docker schema 1, pushed by skopeo into a registry that still accepts it

describe('Docker schema 1', () => {
  let schema1Registry: RegistryServer;
  let policy: string;

  beforeAll(async () => {
    schema1Registry = await startRegistry({ extraConfig: ['compatibility:', '  schema1:', '    enabled: true'].join('\n') });
    policy = join(work, 'policy.json');
    await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  });
  afterAll(async () => {
    await schema1Registry?.stop();
  });

  it('resolves a signed schema 1 image: layers base first without throwaways, config from v1Compatibility, digest over the payload', async () => {
    const repo = uniqueRepo('schema1');
    const pushed = await pushImage(registry, repo, 'v1', {
      format: 'docker',
      layers: [
        { tar: buildTar(lower), compression: 'gzip' },
        { tar: buildTar(upper), compression: 'gzip' },
      ],
      config: {
        config: { Env: ['PATH=/bin', 'MODE=s1'], Cmd: ['/bin/app', '--serve'], User: '1000:1000', WorkingDir: '/srv', Entrypoint: ['/bin/tini', '--'] },
        history: [
          { created: '2024-01-01T00:00:00Z', created_by: 'ADD lower /' },
          { created: '2024-01-02T00:00:00Z', created_by: 'ENV MODE=s1', empty_layer: true },
          { created: '2024-01-03T00:00:00Z', created_by: 'ADD upper /' },
          { created: '2024-01-04T00:00:00Z', created_by: 'CMD ["/bin/app"]', empty_layer: true },
        ],
      },
    });
    const target = `${schema1Registry.host}/${repo}:v1`;
    await execFileAsync('skopeo', [
      '--policy',
      policy,
      'copy',
      '--format',
      'v2s1',
      '--src-tls-verify=false',
      '--dest-tls-verify=false',
      `docker://${registry}/${repo}:v1`,
      `docker://${target}`,
    ]);

    const served = await fetch(`http://${target.replace(`/${repo}:v1`, '')}/v2/${repo}/manifests/v1`, {
      headers: { accept: 'application/vnd.docker.distribution.manifest.v1+prettyjws' },
    });
    const registryDigest = served.headers.get('docker-content-digest');
    const body = Buffer.from(await served.arrayBuffer());
    expect(served.headers.get('content-type')).toMatch(/prettyjws/);
    expect(body.toString()).toContain('"signatures"');
    expect(registryDigest).not.toBe(sha256(body));
    // skopeo wrote the two empty history entries as throwaway layers: 4 fsLayers for 2 layers.
    const schema1 = JSON.parse(body.toString()) as { fsLayers: Array<{ blobSum: string }>; history: Array<{ v1Compatibility: string }> };
    expect(schema1.fsLayers).toHaveLength(4);
    expect(schema1.fsLayers.filter((layer) => layer.blobSum === EMPTY_GZIP_LAYER_DIGEST)).toHaveLength(2);
    expect(schema1.history.filter((entry) => (JSON.parse(entry.v1Compatibility) as { throwaway?: boolean }).throwaway === true)).toHaveLength(2);

    const { client, ref } = clientFor(target);
    const image = await resolveImage(client, ref);
    expect(image.manifestMediaType).toBe('application/vnd.docker.distribution.manifest.v1+prettyjws');
    // Our digest of the payload is the registry's.
    expect(image.manifestDigest).toBe(registryDigest);
    expect(image.layers.map((layer) => layer.digest)).toEqual(pushed.layers.map((layer) => layer.digest));
    expect(image.layers.map((layer) => layer.size)).toEqual(pushed.layers.map((layer) => layer.size));
    expect(image.layers.every((layer) => layer.diffId === undefined && layer.digest !== EMPTY_GZIP_LAYER_DIGEST)).toBe(true);
    expect(image.platform).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(image.config.synthesised).toBe(true);
    expect(image.config.json.config).toMatchObject({
      Env: ['PATH=/bin', 'MODE=s1'],
      Cmd: ['/bin/app', '--serve'],
      Entrypoint: ['/bin/tini', '--'],
      User: '1000:1000',
      WorkingDir: '/srv',
    });
    expect(image.config.json.rootfs).toEqual({ type: 'layers', diff_ids: [] });

    // By digest: the payload digest verifies.
    const byDigest = clientFor(`${schema1Registry.host}/${repo}@${image.manifestDigest}`);
    const again = await resolveImage(byDigest.client, byDigest.ref);
    expect(again.layers).toEqual(image.layers);

    // Its layers flatten like any other (compressed digest and size checked; no diffID).
    const layers = layerSources(registryStore(client, ref), image.layers);
    expect(summary(await flatten(layers))).toEqual(expected);
    // And through the whole pull, which skips the diffID check for a layer without one.
    expect(summary(await pullListing(target))).toEqual(expected);

    // inspect reads it through the same resolver: the layers and config a pull sees.
    const inspected = await inspectImage(target, { dockerConfigDir: noConfig });
    expect(inspected.manifest.digest).toBe(registryDigest);
    expect(inspected.layers).toEqual(image.layers.map(({ digest, mediaType, size }) => ({ digest, mediaType, size })));
    expect(inspected.config.json?.config?.Cmd).toEqual(['/bin/app', '--serve']);
    expect(inspected.platform).toEqual({ os: 'linux', architecture: 'amd64' });
  });
});
