/**
 * The registry client against the real distribution registry (started by the global
 * setup), plus small in-process servers for what a real registry will not do: token
 * realms, tampered bodies, cross-origin redirects, 429s.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { gunzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  AuthError,
  DigestMismatchError,
  ManifestError,
  NetworkError,
  NotFoundError,
  PlatformNotFoundError,
  RateLimitError,
  RegistryError,
} from '../../src/errors.js';
import { parseReference, type ImageReference } from '../../src/reference/index.js';
import { MediaType } from '../../src/image/media-types.js';
import { resolveImage as resolveFromStore, type ResolveOptions, type ResolvedImage } from '../../src/queries/resolve.js';
import { openBlob } from '../../src/registry/blob.js';
import { RegistryClient, type RegistryClientOptions } from '../../src/registry/client.js';
import { fetchManifest } from '../../src/registry/manifest.js';
import { registryStore } from '../../src/stores/registry-store.js';
import { DigestVerifier } from '../../src/streams/digest-verifier.js';
import { freePort, startRegistry, type RegistryServer } from '../helpers/registry-server.js';
import { makeTar, pushImage, pushIndex, sha256, type PushedImage } from '../helpers/push.js';

const registry = inject('registry');
const clients: RegistryClient[] = [];
const emptyConfigDir = await mkdtemp(join(tmpdir(), 'oci-rootfs-noconfig-'));

/** The resolver over the registry store of `ref`. */
function resolveImage(registryClient: RegistryClient, ref: ImageReference, options: ResolveOptions = {}): Promise<ResolvedImage> {
  return resolveFromStore(registryStore(registryClient, ref), options);
}

/** A client that never reads the developer's own ~/.docker unless told to. */
function client(host: string, options: RegistryClientOptions = {}): RegistryClient {
  const created = new RegistryClient(host, { dockerConfigDir: emptyConfigDir, ...options });
  clients.push(created);
  return created;
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});
afterAll(async () => {
  await rm(emptyConfigDir, { recursive: true, force: true });
});

async function readAll(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

interface TestServer {
  host: string;
  close(): Promise<void>;
}

type Handler = (req: IncomingMessage, res: ServerResponse, url: URL) => void;

/** A tiny plain-HTTP server on a free loopback port. */
async function serve(handler: Handler): Promise<TestServer> {
  const server = createServer((req, res) => handler(req, res, new URL(req.url ?? '/', 'http://x')));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const servers: TestServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});
async function track(server: Promise<TestServer>): Promise<TestServer> {
  const started = await server;
  servers.push(started);
  return started;
}

describe('against the real registry, anonymously', () => {
  let image: PushedImage;
  let tars: Buffer[];
  let ref: ImageReference;

  beforeAll(async () => {
    tars = [
      await makeTar([
        { name: 'etc/', type: 'directory' },
        { name: 'etc/os-release', content: 'ID=test\n' },
      ]),
      await makeTar([{ name: 'hello.txt', content: 'hello\n' }]),
    ];
    image = await pushImage(registry, 'e2e/simple', 'v1', {
      layers: [
        { tar: tars[0] ?? Buffer.alloc(0), compression: 'gzip' },
        { tar: tars[1] ?? Buffer.alloc(0), compression: 'none' },
      ],
    });
    ref = parseReference(`${registry}/e2e/simple:v1`);
  });

  it('fetches a manifest by tag over plain HTTP after HTTPS fails on a loopback host', async () => {
    const manifest = await fetchManifest(client(registry), ref);
    expect(manifest.mediaType).toBe(MediaType.ociManifest);
    expect(manifest.digest).toBe(image.manifestDigest);
    expect(manifest.bytes.equals(image.manifestBytes)).toBe(true);
    expect(manifest.json['schemaVersion']).toBe(2);
  });

  it('also talks plain HTTP straight away when asked to', async () => {
    const manifest = await fetchManifest(client(registry, { plainHttp: true }), ref);
    expect(manifest.digest).toBe(image.manifestDigest);
  });

  it('resolves an image to its config and base-first layers with compression and diffIDs', async () => {
    const resolved = await resolveImage(client(registry), ref, { platform: 'linux/amd64' });
    expect(resolved.manifestDigest).toBe(image.manifestDigest);
    expect(resolved.indexDigest).toBeUndefined();
    expect(resolved.manifestMediaType).toBe(MediaType.ociManifest);
    expect(resolved.platform).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(resolved.config.digest).toBe(image.configDigest);
    expect(resolved.config.json.rootfs.diff_ids).toEqual(image.layers.map((l) => l.diffId));
    expect(resolved.layers).toEqual([
      { ...image.layers[0], compression: 'gzip' },
      { ...image.layers[1], compression: 'none' },
    ]);
  });

  it('streams a blob whose bytes pass the digest check', async () => {
    const layer = image.layers[0];
    if (layer === undefined) throw new Error('no layer');
    const body = await openBlob(client(registry), ref, layer);
    const verifier = new DigestVerifier({ digest: layer.digest, size: layer.size });
    const bytes = await readAll(body.pipe(verifier));
    expect(gunzipSync(bytes).equals(tars[0] ?? Buffer.alloc(0))).toBe(true);
  });

  it('resumes a blob from an offset with a Range request', async () => {
    const layer = image.layers[1];
    if (layer === undefined) throw new Error('no layer');
    const body = await openBlob(client(registry), ref, layer, { offset: 100 });
    expect((await readAll(body)).equals((tars[1] ?? Buffer.alloc(0)).subarray(100))).toBe(true);
  });

  it('reads Docker schema 2 images', async () => {
    const docker = await pushImage(registry, 'e2e/docker', 'v1', {
      format: 'docker',
      layers: [{ tar: tars[1] ?? Buffer.alloc(0), compression: 'gzip' }],
      platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
    });
    const resolved = await resolveImage(client(registry), parseReference(`${registry}/e2e/docker:v1`));
    expect(resolved.manifestMediaType).toBe(MediaType.dockerManifest);
    expect(resolved.manifestDigest).toBe(docker.manifestDigest);
    expect(resolved.platform).toEqual({ os: 'linux', architecture: 'arm64', variant: 'v8' });
    expect(resolved.layers[0]).toMatchObject({ mediaType: MediaType.dockerLayerGzip, compression: 'gzip' });
  });

  it('refuses a single-platform image that does not match an explicit platform', async () => {
    const error = await resolveImage(client(registry), ref, { platform: 'linux/arm64' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PlatformNotFoundError);
    expect((error as PlatformNotFoundError).available).toEqual(['linux/amd64']);
  });

  it('pulls by digest, and the digest wins over the tag', async () => {
    const other = await pushImage(registry, 'e2e/simple', 'other', {
      layers: [{ tar: tars[1] ?? Buffer.alloc(0), compression: 'gzip' }],
    });
    const byDigest = await fetchManifest(client(registry), parseReference(`${registry}/e2e/simple@${image.manifestDigest}`));
    expect(byDigest.digest).toBe(image.manifestDigest);
    const both = await resolveImage(
      client(registry),
      parseReference(`${registry}/e2e/simple:v1@${other.manifestDigest}`),
    );
    expect(both.manifestDigest).toBe(other.manifestDigest);
  });

  it('maps an unknown repository, tag and blob to NotFoundError with the registry error envelope', async () => {
    const c = client(registry);
    const repo = await fetchManifest(c, parseReference(`${registry}/e2e/missing:v1`)).catch((e: unknown) => e);
    expect(repo).toBeInstanceOf(NotFoundError);
    expect((repo as NotFoundError).status).toBe(404);
    expect((repo as NotFoundError).errors[0]?.code).toMatch(/NAME_UNKNOWN|MANIFEST_UNKNOWN/);
    const tag = await fetchManifest(c, parseReference(`${registry}/e2e/simple:nope`)).catch((e: unknown) => e);
    expect(tag).toBeInstanceOf(NotFoundError);
    expect((tag as NotFoundError).errors[0]?.code).toBe('MANIFEST_UNKNOWN');
    const blob = await openBlob(c, ref, { digest: sha256(Buffer.from('nothing')) }).catch((e: unknown) => e);
    expect(blob).toBeInstanceOf(NotFoundError);
    expect((blob as NotFoundError).errors[0]?.code).toBe('BLOB_UNKNOWN');
  });

  it('names the layer of an unknown media type', async () => {
    await pushImage(registry, 'e2e/weird', 'v1', {
      layers: [{ tar: tars[1] ?? Buffer.alloc(0), compression: 'none', mediaType: 'application/x-weird' }],
    });
    const error = await resolveImage(client(registry), parseReference(`${registry}/e2e/weird:v1`)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ManifestError);
    expect((error as Error).message).toMatch(/layer 0 \(sha256:[0-9a-f]{64}\) has the unknown media type application\/x-weird/);
  });

  it('reports a refused connection to a loopback registry as NetworkError naming both attempts, https then plain http', async () => {
    const port = await freePort();
    const error = await fetchManifest(client(`127.0.0.1:${port}`), parseReference(`127.0.0.1:${port}/x:y`)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NetworkError);
    const message = (error as Error).message;
    expect(message).toContain(`https://127.0.0.1:${port}/v2/`);
    expect(message).toContain(`http://127.0.0.1:${port}/v2/`);
    expect(message.indexOf('https://')).toBeLessThan(message.indexOf('http://'));
    expect(message.match(/ECONNREFUSED/g)).toHaveLength(2);
  });

  it('aborts a request through its signal', async () => {
    const controller = new AbortController();
    controller.abort();
    const error = await fetchManifest(client(registry), ref, { signal: controller.signal }).catch((e: unknown) => e);
    expect((error as Error).name).toBe('AbortError');
  });
});

describe('multi-platform indexes on the real registry', () => {
  let amd64: PushedImage;
  let arm64: PushedImage;
  let index: { digest: string };
  const ref = (): ImageReference => parseReference(`${registry}/e2e/multi:v1`);

  beforeAll(async () => {
    const tar = await makeTar([{ name: 'arch', content: 'x' }]);
    amd64 = await pushImage(registry, 'e2e/multi', 'amd64', {
      layers: [{ tar, compression: 'gzip' }],
      platform: { os: 'linux', architecture: 'amd64' },
    });
    arm64 = await pushImage(registry, 'e2e/multi', 'arm64', {
      layers: [{ tar, compression: 'gzip' }],
      platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
    });
    // What BuildKit adds: an attestation manifest with the platform unknown/unknown.
    const attestation = await pushImage(registry, 'e2e/multi', 'att', {
      layers: [{ tar: Buffer.from('{"_type":"https://in-toto.io/Statement/v0.1"}'), compression: 'none', mediaType: 'application/vnd.in-toto+json' }],
      platform: { os: 'unknown', architecture: 'unknown' },
    });
    index = await pushIndex(registry, 'e2e/multi', 'v1', [
      { digest: amd64.manifestDigest, size: amd64.manifestSize, mediaType: amd64.manifestMediaType, platform: { os: 'linux', architecture: 'amd64' } },
      { digest: arm64.manifestDigest, size: arm64.manifestSize, mediaType: arm64.manifestMediaType, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      {
        digest: attestation.manifestDigest,
        size: attestation.manifestSize,
        mediaType: attestation.manifestMediaType,
        platform: { os: 'unknown', architecture: 'unknown' },
        annotations: { 'vnd.docker.reference.type': 'attestation-manifest', 'vnd.docker.reference.digest': amd64.manifestDigest },
      },
    ]);
  });

  it('picks linux/amd64 from the index', async () => {
    const resolved = await resolveImage(client(registry), ref(), { platform: 'linux/amd64' });
    expect(resolved.indexDigest).toBe(index.digest);
    expect(resolved.manifestDigest).toBe(amd64.manifestDigest);
    expect(resolved.platform).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(resolved.layers.map((l) => l.digest)).toEqual(amd64.layers.map((l) => l.digest));
  });

  it('picks linux/arm64 (no variant asked means v8)', async () => {
    for (const platform of ['linux/arm64', 'linux/arm64/v8', 'linux/aarch64']) {
      const resolved = await resolveImage(client(registry), ref(), { platform });
      expect(resolved.manifestDigest).toBe(arm64.manifestDigest);
      expect(resolved.platform).toEqual({ os: 'linux', architecture: 'arm64', variant: 'v8' });
    }
  });

  it('fails for linux/s390x and lists what the index has, without the attestation', async () => {
    const error = await resolveImage(client(registry), ref(), { platform: 'linux/s390x' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PlatformNotFoundError);
    expect((error as PlatformNotFoundError).available).toEqual(['linux/amd64', 'linux/arm64/v8']);
    expect((error as Error).message).toBe('no manifest for platform linux/s390x; available: linux/amd64, linux/arm64/v8');
  });

  it('reads Docker manifest lists too', async () => {
    await pushIndex(
      registry,
      'e2e/multi',
      'list',
      [{ digest: amd64.manifestDigest, size: amd64.manifestSize, mediaType: amd64.manifestMediaType, platform: { os: 'linux', architecture: 'amd64' } }],
      { format: 'docker' },
    );
    const resolved = await resolveImage(client(registry), parseReference(`${registry}/e2e/multi:list`), { platform: 'linux/amd64' });
    expect(resolved.manifestDigest).toBe(amd64.manifestDigest);
  });
});

describe('a registry behind htpasswd Basic auth', () => {
  const auth = { user: 'tester', password: 's3cr3t:with colon' };
  let secured: RegistryServer | undefined;
  let ref: ImageReference;
  let image: PushedImage;
  let configDir: string | undefined;
  const host = (): string => secured?.host ?? 'not-started';
  const dir = (): string => configDir ?? 'not-created';

  beforeAll(async () => {
    secured = await startRegistry({ htpasswd: auth });
    ref = parseReference(`${host()}/private/app:v1`);
    image = await pushImage(host(), 'private/app', 'v1', {
      auth,
      layers: [{ tar: await makeTar([{ name: 'secret', content: 'x' }]), compression: 'gzip' }],
    });
    configDir = await mkdtemp(join(tmpdir(), 'oci-rootfs-dockercfg-'));
  });
  afterAll(async () => {
    await secured?.stop();
    if (configDir !== undefined) await rm(configDir, { recursive: true, force: true });
  });

  it('fails with AuthError without credentials', async () => {
    const error = await fetchManifest(client(host()), ref).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthError);
    expect((error as Error).message).toMatch(/no credentials found/);
  });

  it('fails with AuthError with a wrong password', async () => {
    const error = await fetchManifest(client(host(), { username: auth.user, password: 'wrong' }), ref).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthError);
  });

  it('pulls with explicit credentials', async () => {
    const resolved = await resolveImage(client(host(), { username: auth.user, password: auth.password }), ref);
    expect(resolved.manifestDigest).toBe(image.manifestDigest);
  });

  it.each([
    ['host', (host: string) => host, 'auth'],
    ['https://host', (host: string) => `https://${host}`, 'auth'],
    ['http://host/v2/', (host: string) => `http://${host}/v2/`, 'fields'],
  ] as const)('pulls with credentials from DOCKER_CONFIG/config.json keyed %s', async (_name, key, form) => {
    const entry =
      form === 'auth'
        ? { auth: Buffer.from(`${auth.user}:${auth.password}`).toString('base64') }
        : { username: auth.user, password: auth.password };
    await writeFile(join(dir(), 'config.json'), JSON.stringify({ auths: { 'other.example': {}, [key(host())]: entry } }));
    const saved = process.env['DOCKER_CONFIG'];
    process.env['DOCKER_CONFIG'] = dir();
    try {
      const c = new RegistryClient(host());
      clients.push(c);
      const manifest = await fetchManifest(c, ref);
      expect(manifest.digest).toBe(image.manifestDigest);
    } finally {
      if (saved === undefined) delete process.env['DOCKER_CONFIG'];
      else process.env['DOCKER_CONFIG'] = saved;
    }
  });
});

describe('in-process registries for what a real one will not do', () => {
  const manifestBytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: { mediaType: MediaType.ociConfig, digest: sha256(Buffer.from('{}')), size: 2 },
      layers: [],
    }),
  );

  it('runs the bearer token flow: service and scope to the realm, access_token, refetch on 401', async () => {
    const problems: string[] = [];
    let tokens = 0;
    let manifestRequests = 0;
    const server = await track(
      serve((req, res, url) => {
        if (url.pathname === '/v2/') {
          res.writeHead(401, {
            'www-authenticate': `Bearer realm="http://${server.host}/token",service="test registry",scope="repository:team/app:pull,push"`,
          });
          res.end();
        } else if (url.pathname === '/token') {
          tokens++;
          if (url.searchParams.get('service') !== 'test registry') problems.push(`service ${url.searchParams.get('service')}`);
          if (url.searchParams.get('scope') !== 'repository:team/app:pull') problems.push(`scope ${url.searchParams.get('scope')}`);
          const basic = `Basic ${Buffer.from('robot:pw').toString('base64')}`;
          if (req.headers.authorization !== basic) problems.push(`token auth ${req.headers.authorization}`);
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ access_token: `tok-${tokens}`, expires_in: 300 }));
        } else if (url.pathname === '/v2/team/app/manifests/v1') {
          manifestRequests++;
          // The first token is "revoked": the client must fetch a fresh one and retry.
          if (req.headers.authorization !== 'Bearer tok-2') {
            res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${server.host}/token",service="test registry",scope="repository:team/app:pull"` });
            res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'token revoked' }] }));
            return;
          }
          res.writeHead(200, { 'content-type': MediaType.ociManifest });
          res.end(manifestBytes);
        } else {
          res.writeHead(404);
          res.end();
        }
      }),
    );
    const c = client(server.host, { username: 'robot', password: 'pw' });
    const manifest = await fetchManifest(c, parseReference(`${server.host}/team/app:v1`));
    expect(manifest.digest).toBe(sha256(manifestBytes));
    expect(problems).toEqual([]);
    expect(tokens).toBe(2);
    expect(manifestRequests).toBe(2);
    // A second fetch reuses the cached token.
    await fetchManifest(c, parseReference(`${server.host}/team/app:v1`));
    expect(tokens).toBe(2);
  });

  it('gives up with AuthError when the registry keeps answering 401 to fresh tokens', async () => {
    let tokens = 0;
    const server = await track(
      serve((_req, res, url) => {
        if (url.pathname === '/token') {
          tokens++;
          res.end(JSON.stringify({ token: `t${tokens}` }));
          return;
        }
        res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${server.host}/token",service="s"` });
        res.end();
      }),
    );
    const error = await fetchManifest(client(server.host), parseReference(`${server.host}/a/b:c`)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthError);
    expect(tokens).toBe(2);
  });

  it('refuses a plain-http token realm on a host that is neither loopback nor the registry', async () => {
    const server = await track(
      serve((_req, res) => {
        res.writeHead(401, { 'www-authenticate': 'Bearer realm="http://auth.example.invalid/token",service="s"' });
        res.end();
      }),
    );
    const error = await fetchManifest(client(server.host), parseReference(`${server.host}/a/b:c`)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthError);
    expect((error as Error).message).toMatch(/refusing the plain-http token realm http:\/\/auth.example.invalid/);
  });

  it('lets a request go on when another request sharing its ping, or its token request, aborts', async () => {
    let pings = 0;
    let tokens = 0;
    const server = await track(
      serve((req, res, url) => {
        if (url.pathname === '/v2/') {
          pings++;
          // Slow enough that both requests wait on this one ping.
          setTimeout(() => {
            res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${server.host}/token",service="s"` });
            res.end();
          }, 300);
          return;
        }
        if (url.pathname === '/token') {
          tokens++;
          setTimeout(() => res.end(JSON.stringify({ token: 'tok' })), 300);
          return;
        }
        if (req.headers.authorization !== 'Bearer tok') {
          res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${server.host}/token",service="s"` });
          res.end();
          return;
        }
        res.writeHead(200, { 'content-type': MediaType.ociManifest });
        res.end(manifestBytes);
      }),
    );
    const ref = parseReference(`${server.host}/a/b:c`);
    for (const abortAfterMs of [100, 450]) {
      // A fresh client per round: first the ping is shared, then the token request.
      const c = client(server.host);
      const impatient = new AbortController();
      const first = fetchManifest(c, ref, { signal: impatient.signal }).catch((e: unknown) => e);
      const second = fetchManifest(c, ref);
      setTimeout(() => impatient.abort(), abortAfterMs);
      expect(((await first) as Error).name).toBe('AbortError');
      expect((await second).digest).toBe(sha256(manifestBytes));
    }
    expect(pings).toBe(2);
    expect(tokens).toBe(2);
  });

  it('stops a stalled blob body promptly when the signal aborts', async () => {
    const server = await track(
      serve((_req, res, url) => {
        if (url.pathname === '/v2/') return res.end();
        res.writeHead(200, { 'content-length': '1000000' });
        res.write(Buffer.alloc(1000)); // then stall
      }),
    );
    const controller = new AbortController();
    const body = await openBlob(client(server.host), parseReference(`${server.host}/a/b:c`), { digest: sha256(Buffer.alloc(0)) }, { signal: controller.signal });
    const started = Date.now();
    setTimeout(() => controller.abort(), 50);
    const error = await readAll(body).catch((e: unknown) => e);
    expect((error as Error).name).toBe('AbortError');
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('checks the bytes of a manifest pulled by digest', async () => {
    const tampered = Buffer.from(manifestBytes.toString().replace('"layers":[]', '"layers": []'));
    const server = await track(
      serve((_req, res, url) => {
        if (url.pathname === '/v2/') {
          res.end('{}');
          return;
        }
        res.writeHead(200, { 'content-type': MediaType.ociManifest });
        res.end(tampered);
      }),
    );
    const digest = sha256(manifestBytes);
    const error = await fetchManifest(client(server.host), parseReference(`${server.host}/x/y@${digest}`)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DigestMismatchError);
    expect(error).toMatchObject({ expected: digest, actual: sha256(tampered), bytes: tampered.length });
  });

  it('never sends Authorization to the other origin a blob redirects to', async () => {
    const blob = Buffer.from('layer bytes from the CDN');
    const seenByRegistry: Array<string | undefined> = [];
    const seenByCdn: Array<string | undefined> = [];
    const cdn = await track(
      serve((req, res, url) => {
        seenByCdn.push(req.headers.authorization);
        if (url.searchParams.get('sig') !== 'abc') res.writeHead(403);
        res.end(blob);
      }),
    );
    const front = await track(
      serve((req, res, url) => {
        if (url.pathname === '/v2/') {
          res.writeHead(401, { 'www-authenticate': 'Basic realm="front"' });
          res.end();
          return;
        }
        seenByRegistry.push(req.headers.authorization);
        res.writeHead(307, { location: `http://${cdn.host}/blobs/x?sig=abc` });
        res.end();
      }),
    );
    const body = await openBlob(
      client(front.host, { username: 'u', password: 'p' }),
      parseReference(`${front.host}/a/b:c`),
      { digest: sha256(blob), size: blob.length },
    );
    const verifier = new DigestVerifier({ digest: sha256(blob), size: blob.length });
    const chunks: Buffer[] = [];
    await pipeline(body, verifier, async (source: AsyncIterable<Buffer>) => {
      for await (const chunk of source) chunks.push(chunk);
    });
    expect(Buffer.concat(chunks).equals(blob)).toBe(true);
    expect(seenByRegistry).toEqual([`Basic ${Buffer.from('u:p').toString('base64')}`]);
    expect(seenByCdn).toEqual([undefined]);
  });

  it('maps 429 to RateLimitError with Retry-After and the rate-limit headers, and 5xx to a retryable RegistryError', async () => {
    const server = await track(
      serve((_req, res, url) => {
        if (url.pathname === '/v2/') {
          res.end();
        } else if (url.pathname.includes('limited')) {
          res.writeHead(429, { 'retry-after': '7', 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '0;w=21600' });
          res.end(JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down' }] }));
        } else {
          res.writeHead(503);
          res.end(JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: 'maintenance', detail: { until: 'later' } }] }));
        }
      }),
    );
    const c = client(server.host);
    const limited = await fetchManifest(c, parseReference(`${server.host}/limited/x:y`)).catch((e: unknown) => e);
    expect(limited).toBeInstanceOf(RateLimitError);
    expect(limited).toMatchObject({ status: 429, retryAfterSeconds: 7, limit: '100;w=21600', remaining: '0;w=21600', retryable: true });
    expect((limited as Error).message).toMatch(/TOOMANYREQUESTS: slow down/);
    const down = await fetchManifest(c, parseReference(`${server.host}/down/x:y`)).catch((e: unknown) => e);
    expect(down).toBeInstanceOf(RegistryError);
    expect(down).toMatchObject({ status: 503, retryable: true, errors: [{ code: 'UNAVAILABLE', message: 'maintenance', detail: { until: 'later' } }] });
  });

  it('refuses a manifest larger than 4 MiB, schema 1, foreign layers, and a generic content type falls back on the JSON', async () => {
    const foreign = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.dockerManifest,
        config: { mediaType: MediaType.dockerConfig, digest: sha256(Buffer.from('{}')), size: 2 },
        layers: [{ mediaType: MediaType.dockerLayerForeign, digest: sha256(Buffer.from('l')), size: 1, urls: ['https://example.com/layer'] }],
      }),
    );
    const server = await track(
      serve((_req, res, url) => {
        if (url.pathname === '/v2/') return res.end();
        if (url.pathname.startsWith('/v2/big/')) {
          res.writeHead(200, { 'content-type': MediaType.ociManifest });
          return res.end(Buffer.alloc(5 * 1024 * 1024, 0x20));
        }
        if (url.pathname.startsWith('/v2/old/')) {
          res.writeHead(200, { 'content-type': `${MediaType.dockerManifestSchema1Signed}; charset=utf-8` });
          return res.end(JSON.stringify({ schemaVersion: 1, name: 'old', tag: 'x', fsLayers: [] }));
        }
        if (url.pathname.startsWith('/v2/foreign/x/manifests/')) {
          res.writeHead(200, { 'content-type': 'application/json' });
          return res.end(foreign);
        }
        if (url.pathname.startsWith('/v2/foreign/x/blobs/')) return res.end('{}');
        res.writeHead(404);
        res.end();
      }),
    );
    const c = client(server.host);
    const big = await fetchManifest(c, parseReference(`${server.host}/big/x:y`)).catch((e: unknown) => e);
    expect(big).toBeInstanceOf(ManifestError);
    expect((big as Error).message).toMatch(/larger than 4194304 bytes/);
    const old = await resolveImage(c, parseReference(`${server.host}/old/x:y`)).catch((e: unknown) => e);
    expect(old).toBeInstanceOf(ManifestError);
    expect((old as Error).message).toMatch(/"fsLayers" is not a non-empty list/);
    const manifest = await fetchManifest(c, parseReference(`${server.host}/foreign/x:y`));
    expect(manifest.mediaType).toBe(MediaType.dockerManifest);
    const error = await resolveImage(c, parseReference(`${server.host}/foreign/x:y`)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ManifestError);
    expect((error as Error).message).toMatch(/layer 0 \(sha256:.*\) is a foreign layer served from https:\/\/example.com\/layer/);
  });
});
