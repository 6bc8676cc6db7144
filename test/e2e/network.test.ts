/**
 * How the client reaches registries: over TLS with a CA the test made (`--ca-file`,
 * `NODE_EXTRA_CA_CERTS`, `--insecure`), through a forward proxy from the environment
 * (CONNECT for https, absolute-URI forwarding for http, `NO_PROXY`), and through a Docker
 * Hub mirror with fallback to the origin. Every server listens on loopback.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PassThrough, Readable, Writable } from 'node:stream';
import { Agent, type Dispatcher } from 'undici';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { withRegistryOptions } from '../../src/cli/registry-options.js';
import { NetworkError, UsageError } from '../../src/errors.js';
import { inspectImage, pullRootfs } from '../../src/index.js';
import { RegistryClient, type RegistryClientOptions } from '../../src/registry/client.js';
import type { MirrorWarning } from '../../src/registry/mirror.js';
import { makeTar, pushImage, type PushedImage } from '../helpers/push.js';
import { freePort } from '../helpers/registry-server.js';
import { makeCa, startConfiguredRegistry, type ConfiguredRegistry, type TestCa } from '../helpers/tls.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const registry = inject('registry');
const work = await mkdtemp(join(tmpdir(), 'oci-rootfs-network-'));
const noConfig = join(work, 'no-config');
const suffix = randomBytes(3).toString('hex');
const repository = `net/app-${suffix}`;
let ca: TestCa;
let plain: ConfiguredRegistry;
let tls: ConfiguredRegistry;
let image: PushedImage;
const clients: RegistryClient[] = [];

beforeAll(async () => {
  ca = makeCa(work);
  const storage = join(work, 'storage');
  plain = await startConfiguredRegistry({ storage });
  tls = await startConfiguredRegistry({ storage, tls: ca });
  image = await pushImage(plain.host, repository, 'v1', {
    layers: [{ tar: await makeTar([{ name: 'etc/motd', content: 'tls\n' }]), compression: 'gzip' }],
  });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.destroy()));
  await tls?.stop();
  await plain?.stop();
  await rm(work, { recursive: true, force: true });
});

function client(host: string, options: RegistryClientOptions = {}): RegistryClient {
  const made = new RegistryClient(host, { dockerConfigDir: noConfig, env: {}, ...options });
  clients.push(made);
  return made;
}

async function manifestDigest(registryClient: RegistryClient, repo = repository, tag = 'v1'): Promise<string> {
  const response = await registryClient.request({
    path: `/v2/${repo}/manifests/${tag}`,
    repository: repo,
    what: `manifest ${repo}:${tag}`,
    headers: { accept: image.manifestMediaType },
  });
  response.body.resume();
  return String(response.headers['docker-content-digest']);
}

describe('TLS', () => {
  it('fails at once on an untrusted certificate, naming the problem and the way out (no retries, no plain HTTP)', async () => {
    const retries: string[] = [];
    const error = await manifestDigest(client(tls.host, { retry: { retries: 3, baseDelayMs: 1 }, onRetry: (n) => retries.push(n.reason) })).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(NetworkError);
    expect((error as NetworkError).exitCode).toBe(6);
    expect((error as Error).message).toMatch(/TLS certificate problem: the certificate is not signed by a trusted CA/);
    expect((error as Error).message).toMatch(/caFiles/);
    expect((error as Error).message).toContain(`https://${tls.host}/v2/`);
    expect(retries).toEqual([]);
  });

  it('trusts a registry whose CA is given with caFiles (--ca-file)', async () => {
    expect(await manifestDigest(client(tls.host, { caFiles: [ca.caFile] }))).toBe(image.manifestDigest);
  });

  it('skips verification with insecure (--insecure)', async () => {
    expect(await manifestDigest(client(tls.host, { insecure: true }))).toBe(image.manifestDigest);
  });

  it('refuses a --ca-file that is missing or holds no certificate, as a usage error', async () => {
    expect(() => client(tls.host, { caFiles: [join(work, 'missing.pem')] })).toThrow(UsageError);
    await writeFile(join(work, 'empty.pem'), 'nothing here\n');
    expect(() => client(tls.host, { caFiles: [join(work, 'empty.pem')] })).toThrow(/no PEM certificate/);
  });

  it('trusts NODE_EXTRA_CA_CERTS, which node reads at startup (so: a child process), also next to a --ca-file', async () => {
    const other = makeCa(await mkdtemp(join(work, 'other-ca-')));
    const script = `
      import { RegistryClient } from ${JSON.stringify(join(ROOT, 'dist/registry/client.js'))};
      const caFiles = process.argv[2] === 'with-ca-file' ? [${JSON.stringify(other.caFile)}] : undefined;
      const c = new RegistryClient(${JSON.stringify(tls.host)}, { dockerConfigDir: ${JSON.stringify(noConfig)}, ...(caFiles ? { caFiles } : {}) });
      const r = await c.request({ path: '/v2/${repository}/manifests/v1', repository: '${repository}', what: 'm', headers: { accept: '${image.manifestMediaType}' } });
      r.body.resume();
      console.log(r.headers['docker-content-digest']);
      await c.destroy();
    `;
    if (!existsSync(join(ROOT, 'dist/registry/client.js'))) throw new Error('dist/ is missing: run `npm run build` first (`npm test` does)');
    const scriptFile = join(work, 'extra-ca.mjs');
    await writeFile(scriptFile, script);
    const run = (args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> =>
      new Promise((done) => {
        execFile(process.execPath, [scriptFile, ...args], { env, cwd: ROOT }, (error, stdout, stderr) =>
          done({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr }),
        );
      });
    const env = { ...process.env, NODE_EXTRA_CA_CERTS: ca.caFile };
    const plainRun = await run([], env);
    expect(plainRun.stderr).toBe('');
    expect(plainRun.stdout.trim()).toBe(image.manifestDigest);
    const withCaFile = await run(['with-ca-file'], env);
    expect(withCaFile.stdout.trim()).toBe(image.manifestDigest);
    const without = await run([], { ...process.env, NODE_EXTRA_CA_CERTS: '' });
    expect(without.code).not.toBe(0);
  });

  it('warns on stderr, on one line, when --insecure is used', async () => {
    let said = '';
    const stderr = new Writable({ write: (chunk: Buffer, _e, cb) => ((said += chunk.toString()), cb()) });
    const io = { stdin: Readable.from([]), stdout: new PassThrough(), stderr };
    const { signal: _signal, ...options } = await withRegistryOptions({ insecure: true, caFile: [] }, io, async (given) => given);
    expect(options).toEqual({ insecure: true });
    expect(said).toMatch(/^oci-rootfs: warning: --insecure: TLS certificates are not verified[^\n]*\n$/);
  });
});

interface ForwardProxy {
  url: string;
  /** `CONNECT host:port` tunnels and absolute-URI requests seen. */
  connects: string[];
  forwards: string[];
  close(): Promise<void>;
}

/** A forward proxy: CONNECT tunnels for https, absolute-URI forwarding for http. */
async function startForwardProxy(): Promise<ForwardProxy> {
  const connects: string[] = [];
  const forwards: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    forwards.push(`${req.method} ${req.url}`);
    const target = new URL(req.url ?? '');
    const upstream = httpRequest(
      { host: target.hostname, port: target.port, path: `${target.pathname}${target.search}`, method: req.method, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.on('connect', (req, client: Socket, head: Buffer) => {
    connects.push(req.url ?? '');
    const [host = '', port = '443'] = (req.url ?? '').split(':');
    const upstream = connect(Number(port), host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connects,
    forwards,
    close: () =>
      new Promise((done) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => done());
      }),
  };
}

describe('proxies from the environment', () => {
  let proxy: ForwardProxy;
  let deadProxy: string;
  beforeAll(async () => {
    proxy = await startForwardProxy();
    deadProxy = `http://127.0.0.1:${await freePort()}`;
  });
  afterAll(async () => {
    await proxy?.close();
  });

  it('forwards plain-http requests through HTTP_PROXY', async () => {
    proxy.forwards.length = 0;
    expect(await manifestDigest(client(plain.host, { plainHttp: true, env: { HTTP_PROXY: proxy.url } }))).toBe(image.manifestDigest);
    expect(proxy.forwards).toContain(`GET http://${plain.host}/v2/`);
    expect(proxy.forwards).toContain(`GET http://${plain.host}/v2/${repository}/manifests/v1`);
  });

  it('tunnels https through HTTPS_PROXY with CONNECT, verifying the registry against --ca-file', async () => {
    proxy.connects.length = 0;
    expect(await manifestDigest(client(tls.host, { caFiles: [ca.caFile], env: { HTTPS_PROXY: proxy.url } }))).toBe(image.manifestDigest);
    expect(proxy.connects.length).toBeGreaterThan(0);
    expect(new Set(proxy.connects)).toEqual(new Set([tls.host]));
    // Without the CA the tunnelled TLS fails the same way as a direct one.
    const error = await manifestDigest(client(tls.host, { env: { HTTPS_PROXY: proxy.url } })).catch((e: unknown) => e);
    expect((error as Error).message).toMatch(/TLS certificate problem/);
    expect(await manifestDigest(client(tls.host, { insecure: true, env: { https_proxy: proxy.url } }))).toBe(image.manifestDigest);
  });

  it('goes direct for hosts in NO_PROXY', async () => {
    proxy.forwards.length = 0;
    proxy.connects.length = 0;
    const env = { HTTP_PROXY: deadProxy, HTTPS_PROXY: deadProxy, NO_PROXY: 'example.com,127.0.0.1' };
    expect(await manifestDigest(client(plain.host, { plainHttp: true, env }))).toBe(image.manifestDigest);
    expect(await manifestDigest(client(tls.host, { caFiles: [ca.caFile], env }))).toBe(image.manifestDigest);
  });

  it('lets lowercase variables win over uppercase ones, as undici and curl do', async () => {
    proxy.forwards.length = 0;
    const env = { http_proxy: proxy.url, HTTP_PROXY: deadProxy, no_proxy: '', NO_PROXY: '127.0.0.1' };
    expect(await manifestDigest(client(plain.host, { plainHttp: true, env }))).toBe(image.manifestDigest);
    expect(proxy.forwards.length).toBeGreaterThan(0);
  });

  it('reports a dead proxy as a network error', async () => {
    const error = await manifestDigest(client(plain.host, { plainHttp: true, env: { HTTP_PROXY: deadProxy } })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NetworkError);
  });
});

describe('a Docker Hub mirror', () => {
  let mirror: ConfiguredRegistry;
  let onMirror: PushedImage;
  let onOrigin: PushedImage;
  const origins: string[] = [];
  /** Docker Hub is the test registry here: requests for registry-1.docker.io go to it. */
  let hub: Dispatcher;
  const repoOnMirror = `library/mirrored-${suffix}`;
  const repoOnlyOrigin = `library/origin-only-${suffix}`;

  beforeAll(async () => {
    mirror = await startConfiguredRegistry({ storage: join(work, 'mirror-storage') });
    const tar = await makeTar([{ name: 'where', content: 'mirror\n' }]);
    onMirror = await pushImage(mirror.host, repoOnMirror, 'latest', { layers: [{ tar, compression: 'gzip' }] });
    const originTar = await makeTar([{ name: 'where', content: 'origin\n' }]);
    await pushImage(registry, repoOnMirror, 'latest', { layers: [{ tar: originTar, compression: 'gzip' }] });
    onOrigin = await pushImage(registry, repoOnlyOrigin, 'latest', { layers: [{ tar: originTar, compression: 'gzip' }] });
    hub = new Agent().compose((dispatch) => (opts, handler) => {
      if (opts.origin?.toString() === 'https://registry-1.docker.io') {
        origins.push(`${opts.method} ${opts.path}`);
        return dispatch({ ...opts, origin: `http://${registry}` }, handler);
      }
      return dispatch(opts, handler);
    });
  });
  afterAll(async () => {
    await mirror?.stop();
    await hub?.close();
  });

  function hubClient(mirrorUrl: string, warnings: MirrorWarning[]): RegistryClient {
    return client('docker.io', { registryMirror: mirrorUrl, dispatcher: hub, onWarning: (w) => warnings.push(w) });
  }

  it("sends a query's and a pull's requests through an API user's own undici dispatcher", async () => {
    origins.length = 0;
    const reference = `docker.io/${repoOnlyOrigin}:latest`;
    const inspected = await inspectImage(reference, { dispatcher: hub, dockerConfigDir: noConfig });
    expect(inspected.manifest.digest).toBe(onOrigin.manifestDigest);
    expect(origins.some((request) => request.startsWith(`GET /v2/${repoOnlyOrigin}/manifests/latest`))).toBe(true);
    origins.length = 0;
    const chunks: Buffer[] = [];
    for await (const chunk of pullRootfs(reference, { dispatcher: hub, dockerConfigDir: noConfig })) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).includes(Buffer.from('origin\n'))).toBe(true);
    expect(origins.some((request) => request.startsWith(`GET /v2/${repoOnlyOrigin}/blobs/${onOrigin.layers[0]?.digest ?? ''}`))).toBe(true);
  });

  it('serves docker.io images from the mirror when it has them, without asking Docker Hub', async () => {
    origins.length = 0;
    const warnings: MirrorWarning[] = [];
    const hubClientWithMirror = hubClient(`http://${mirror.host}`, warnings);
    expect(await manifestDigest(hubClientWithMirror, repoOnMirror, 'latest')).toBe(onMirror.manifestDigest);
    const layer = onMirror.layers[0]?.digest ?? '';
    const blob = await hubClientWithMirror.request({ path: `/v2/${repoOnMirror}/blobs/${layer}`, repository: repoOnMirror, what: 'layer' });
    blob.body.resume();
    expect(origins).toEqual([]);
    expect(warnings).toEqual([]);
  });

  it('falls back to Docker Hub when the mirror lacks the image, and says so', async () => {
    origins.length = 0;
    const warnings: MirrorWarning[] = [];
    const c = hubClient(`http://${mirror.host}`, warnings);
    expect(await manifestDigest(c, repoOnlyOrigin, 'latest')).toBe(onOrigin.manifestDigest);
    // The blobs of an image the mirror lacked go straight to the origin.
    const layer = onOrigin.layers[0]?.digest ?? '';
    (await c.request({ path: `/v2/${repoOnlyOrigin}/blobs/${layer}`, repository: repoOnlyOrigin, what: 'layer' })).body.resume();
    expect(origins).toContain(`GET /v2/${repoOnlyOrigin}/manifests/latest`);
    expect(origins).toContain(`GET /v2/${repoOnlyOrigin}/blobs/${layer}`);
    expect(warnings).toEqual([{ code: 'MIRROR_FALLBACK', message: expect.stringMatching(/does not have manifest/) }]);
  });

  it('falls back to Docker Hub when the mirror is unreachable, and stops asking it', async () => {
    origins.length = 0;
    const warnings: MirrorWarning[] = [];
    const c = hubClient(`http://127.0.0.1:${await freePort()}`, warnings);
    expect(await manifestDigest(c, repoOnlyOrigin, 'latest')).toBe(onOrigin.manifestDigest);
    expect(await manifestDigest(c, repoOnMirror, 'latest')).not.toBe(onMirror.manifestDigest);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.message).toMatch(/unreachable/);
  });

  it('leaves references to other registries alone', async () => {
    const warnings: MirrorWarning[] = [];
    const c = client(registry, { plainHttp: true, registryMirror: 'http://127.0.0.1:1', onWarning: (w) => warnings.push(w) });
    expect(await manifestDigest(c, repoOnlyOrigin, 'latest')).toBe(onOrigin.manifestDigest);
    expect(warnings).toEqual([]);
  });

  it('refuses a mirror URL with a path', () => {
    expect(() => client('docker.io', { registryMirror: 'https://mirror.example/v2/' })).toThrow(UsageError);
    expect(() => client('docker.io', { registryMirror: 'mirror.example' })).toThrow(UsageError);
  });
});
