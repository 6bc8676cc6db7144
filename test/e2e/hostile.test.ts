/**
 * Hostile or broken input as a pull meets it (issue #4; DESIGN.md §3, §4, §6): every test
 * crafts an image (raw tar bytes, raw gzip, raw JSON) and serves it from the real registry,
 * through the fault proxy or from a small in-process server. Most pull in process through the
 * API and check the error (its class's exit code of §6 and its message); ONE test per exit
 * code runs the built CLI in dist/ with `-o out.tar` (or `out.tar.gz`) and checks what the
 * command line adds: the exit status, exactly one line `oci-rootfs: …` naming the cause, and
 * nothing left in the output directory (no file, no `.partial`). What only the tar reader
 * refuses is tested without a registry in test/unit/tar-reader-hostile.test.ts.
 * Names that climb above the root are pinned at it; the symlink cases must succeed, keep every
 * entry inside the root, and extract with GNU tar without touching anything outside.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, afterEach, describe, expect, inject, it } from 'vitest';
import { OciRootfsError } from '../../src/errors.js';
import type { PullEvent } from '../../src/pull/events.js';
import { pullRootfs } from '../../src/pull/pull-rootfs.js';
import { MANIFESTS, startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { listTar, listTree, sha256Hex } from '../helpers/listing.js';
import { pushBlob, pushManifest, sha256 } from '../helpers/push.js';
import { buildTar, encodeEntry, type FixtureEntry } from '../helpers/tar-fixture.js';

const execFileAsync = promisify(execFile);
const registry = inject('registry');
const CLI = join(resolve(dirname(fileURLToPath(import.meta.url)), '../..'), 'dist/cli/main.js');
const configDir = await mkdtemp(join(tmpdir(), 'oci-rootfs-hostile-noconfig-'));
const scratch: string[] = [];
const closers: Array<() => Promise<void>> = [];

afterEach(async () => {
  await Promise.all(closers.splice(0).map((close) => close()));
});

afterAll(async () => {
  await Promise.all([configDir, ...scratch].map((dir) => rm(dir, { recursive: true, force: true })));
});

async function tempDir(what: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `oci-rootfs-hostile-${what}-`));
  scratch.push(dir);
  return dir;
}

// ---------------------------------------------------------------------------------------------
// Crafting and pushing images byte by byte

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
const OCI_TAR = 'application/vnd.oci.image.layer.v1.tar';
const OCI_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';

/** One layer as it is pushed: exactly these blob bytes, and what the descriptor and config claim. */
interface RawLayer {
  blob: Buffer;
  /** The diffID the config lists (sha256 of the uncompressed tar the builder meant). */
  diffId: string;
  mediaType: string;
  /** The descriptor's size, when it should lie. */
  size?: number;
}

/** A gzip layer of `tar`; the diffID is the sha256 of `tar`, the blob its gzip. */
const gzLayer = (tar: Buffer): RawLayer => ({ blob: gzipSync(tar), diffId: sha256(tar), mediaType: OCI_GZIP });
/** An uncompressed layer of `tar`. */
const tarLayer = (tar: Buffer): RawLayer => ({ blob: tar, diffId: sha256(tar), mediaType: OCI_TAR });

interface Pushed {
  repo: string;
  /** `HOST/repo:v1` on the real registry. */
  reference: string;
  manifestDigest: string;
  manifestBytes: Buffer;
  layerDigests: string[];
}

const uniqueRepo = (what: string): string => `e2e-hostile/${what}-${randomBytes(4).toString('hex')}`;

/**
 * Pushes `layers` (base first) with a config listing their diffIDs (or `configBytes` as the
 * config, verbatim) and a manifest carrying `annotations`; every byte is the caller's.
 */
async function pushRaw(
  what: string,
  layers: readonly RawLayer[],
  options: { configBytes?: Buffer; annotations?: Record<string, string> } = {},
): Promise<Pushed> {
  const repo = uniqueRepo(what);
  const layerDigests: string[] = [];
  const descriptors = [];
  for (const layer of layers) {
    const digest = await pushBlob(registry, repo, layer.blob);
    layerDigests.push(digest);
    descriptors.push({ mediaType: layer.mediaType, digest, size: layer.size ?? layer.blob.length });
  }
  const configBytes =
    options.configBytes ??
    Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: { Cmd: ['/bin/sh'] },
        rootfs: { type: 'layers', diff_ids: layers.map((layer) => layer.diffId) },
      }),
    );
  const configDigest = await pushBlob(registry, repo, configBytes);
  const manifestBytes = Buffer.from(
    JSON.stringify(
      {
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: OCI_CONFIG, digest: configDigest, size: configBytes.length },
        layers: descriptors,
        ...(options.annotations === undefined ? {} : { annotations: options.annotations }),
      },
      null,
      2,
    ),
  );
  const manifestDigest = await pushManifest(registry, repo, 'v1', OCI_MANIFEST, manifestBytes);
  return { repo, reference: `${registry}/${repo}:v1`, manifestDigest, manifestBytes, layerDigests };
}

const file = (name: string | Buffer, content: string | Buffer = 'content\n', more: Partial<FixtureEntry> = {}): FixtureEntry => ({
  name,
  type: 'file',
  content,
  ...more,
});
const dir = (name: string): FixtureEntry => ({ name, type: 'dir' });
const symlink = (name: string, target: string): FixtureEntry => ({ name, type: 'symlink', linkname: target, mode: 0o777 });
const hardlink = (name: string, target: string): FixtureEntry => ({ name, type: 'link', linkname: target });

const BLOCK = 512;

// ---------------------------------------------------------------------------------------------
// Running the CLI

interface Run {
  code: number | null;
  stderr: string;
  /** The output directory, fresh for this run. */
  dir: string;
  /** The output file's path. */
  out: string;
}

/** `oci-rootfs pull --plain-http REFERENCE -o DIR/OUTPUT`, in a fresh directory. */
async function pullCli(reference: string, output = 'out.tar', args: string[] = []): Promise<Run> {
  const outDir = await tempDir('out');
  const out = join(outDir, output);
  const child = spawn(process.execPath, [CLI, 'pull', '--plain-http', reference, '-o', out, ...args], {
    env: { ...process.env, DOCKER_CONFIG: configDir },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const watchdog = setTimeout(() => child.kill('SIGKILL'), 45_000);
  const code = await new Promise<number | null>((done) => child.once('exit', (status) => done(status)));
  clearTimeout(watchdog);
  return { code, stderr, dir: outDir, out };
}

const lines = (text: string): string[] => text.split('\n').filter((line) => line !== '');

/**
 * The pull was refused the way §6 says: `code`, one stderr line `oci-rootfs: …` matching
 * `cause`, and an empty output directory (no file, no temporary).
 */
async function expectCliRefused(run: Run, code: number, cause: RegExp): Promise<void> {
  expect(run.code, `exit status (stderr: ${run.stderr})`).toBe(code);
  expect(lines(run.stderr), 'stderr is one line').toHaveLength(1);
  expect(run.stderr).toMatch(/^oci-rootfs: [^\n]+\n$/);
  expect(run.stderr).not.toMatch(/^oci-rootfs: warning:/);
  expect(run.stderr.trimEnd()).toMatch(cause);
  expect(await readdir(run.dir), 'no output and no temporary file left').toEqual([]);
}

type Listed = Array<{ path: string; type: string; linkname: string; content?: string }>;

async function listed(bytes: Buffer): Promise<Listed> {
  return (await listTar(bytes)).map((entry) => ({
    path: entry.path,
    type: entry.type,
    linkname: entry.linkname,
    ...(entry.type === 'file' ? { content: entry.sha256 } : {}),
  }));
}

// ---------------------------------------------------------------------------------------------
// Pulling in process

interface ApiRun {
  /** The error the stream failed with, if it did. */
  error: OciRootfsError | undefined;
  bytes: Buffer;
  events: PullEvent[];
}

/** `pullRootfs(REFERENCE)` over plain HTTP, read to its end or its error. */
async function pull(reference: string): Promise<ApiRun> {
  const events: PullEvent[] = [];
  const chunks: Buffer[] = [];
  let error: OciRootfsError | undefined;
  try {
    for await (const chunk of pullRootfs(reference, { plainHttp: true, dockerConfigDir: configDir, retryBaseDelayMs: 1, retryMaxDelayMs: 5, onEvent: (event) => events.push(event) })) {
      chunks.push(chunk as Buffer);
    }
  } catch (caught) {
    expect(caught).toBeInstanceOf(OciRootfsError);
    error = caught as OciRootfsError;
  }
  return { error, bytes: Buffer.concat(chunks), events };
}

/** The pull failed with an error of exit code `code` whose message matches `cause`. */
function expectRefused(run: ApiRun, code: number, cause: RegExp): void {
  expect(run.error, 'the pull failed').toBeDefined();
  expect(run.error?.exitCode, `exit code of ${run.error?.name}: ${run.error?.message}`).toBe(code);
  expect(run.error?.message).toMatch(cause);
}

/** The pull succeeded without a warning; returns the listing of its output (root entry aside). */
async function expectPulled(run: ApiRun): Promise<Listed> {
  expect(run.error).toBeUndefined();
  expect(run.events.filter((event) => event.type === 'warning')).toEqual([]);
  const listing = await listed(run.bytes);
  expect(listing.filter((entry) => entry.path === '.').map((entry) => entry.type), 'the root entry').toEqual(['dir']);
  return listing.filter((entry) => entry.path !== '.');
}

// ---------------------------------------------------------------------------------------------
// In-process servers for what the real registry refuses to store

type Handler = (req: IncomingMessage, res: ServerResponse, host: string) => void;

/** An HTTP server on 127.0.0.1 answering with `handler`; closed after the test. */
async function serve(handler: Handler): Promise<string> {
  let host = '';
  const server = createServer((req, res) => handler(req, res, host));
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  closers.push(
    () =>
      new Promise<void>((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  );
  return host;
}

/** A registry of one manifest, `/v2/evil/manifests/v1`, with `body` as its bytes. */
async function serveManifest(body: Buffer, options: { chunked?: boolean; contentType?: string } = {}): Promise<string> {
  return serve((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/v2/' || path === '/v2') {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '2' }).end('{}');
      return;
    }
    if (path === '/v2/evil/manifests/v1') {
      const headers: Record<string, string> = { 'content-type': options.contentType ?? OCI_MANIFEST, 'docker-content-digest': sha256(body) };
      if (options.chunked !== true) headers['content-length'] = String(body.length);
      res.writeHead(200, headers);
      if (req.method === 'HEAD') {
        res.end();
        return;
      }
      // In pieces, so a chunked answer really is chunked.
      for (let offset = 0; offset < body.length; offset += 256 * 1024) res.write(body.subarray(offset, offset + 256 * 1024));
      res.end();
      return;
    }
    const envelope = JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'unknown' }] });
    res.writeHead(404, { 'content-type': 'application/json', 'content-length': String(envelope.length) }).end(envelope);
  });
}

/** A valid-looking OCI manifest padded past `bytes` with an annotation. */
function hugeManifest(bytes: number): Buffer {
  const manifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, digest: `sha256:${'0'.repeat(64)}`, size: 2 },
    layers: [],
    annotations: { padding: 'x'.repeat(bytes) },
  };
  return Buffer.from(JSON.stringify(manifest));
}

// ---------------------------------------------------------------------------------------------
// Extraction sandbox

/** Every path under `root` except the subtree `skip`, with type and size, sorted. */
async function snapshot(root: string, skip: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (path: string): Promise<void> => {
    for (const name of await readdir(path)) {
      const full = join(path, name);
      if (full === skip) continue;
      const info = await stat(full).catch(() => undefined);
      out.push(`${full.slice(root.length)} ${info?.isDirectory() === true ? 'dir' : `${info?.size ?? 'dangling'}`}`);
      if (info?.isDirectory() === true) await walk(full);
    }
  };
  await walk(root);
  return out.sort();
}

/**
 * Extracts `tarPath` with GNU tar into `SANDBOX/l1/l2/l3/root`, where the sandbox is seeded
 * with sentinels (`etc/`, `l1/keep`, `l1/l2/keep`) that a link followed out of the root would
 * land beside; asserts the sandbox outside `root` and the host's `/etc/passwd` are untouched,
 * and returns the extracted tree as `path type linkname`.
 */
async function extractInSandbox(tarPath: string): Promise<string[]> {
  const sandbox = await tempDir('sandbox');
  const root = join(sandbox, 'l1/l2/l3/root');
  await mkdir(root, { recursive: true });
  await mkdir(join(sandbox, 'etc'));
  await writeFile(join(sandbox, 'l1/keep'), 'sentinel');
  await writeFile(join(sandbox, 'l1/l2/keep'), 'sentinel');
  const before = await snapshot(sandbox, root);
  const passwdBefore = sha256Hex(await readFile('/etc/passwd'));
  await execFileAsync('tar', ['--numeric-owner', '-xpf', tarPath, '-C', root]);
  expect(await snapshot(sandbox, root), 'nothing outside the extraction dir changed').toEqual(before);
  expect(sha256Hex(await readFile('/etc/passwd')), 'the host /etc/passwd is untouched').toBe(passwdBefore);
  return (await listTree(root)).map((entry) => `${entry.path} ${entry.type}${entry.linkname === '' ? '' : ` -> ${entry.linkname}`}`);
}

const hashOf = (text: string): string => sha256Hex(Buffer.from(text));

/** The output of an in-process pull, saved as `out.tar` in a fresh directory. */
async function saved(run: ApiRun): Promise<string> {
  const out = join(await tempDir('out'), 'out.tar');
  await writeFile(out, run.bytes);
  return out;
}

// =============================================================================================

describe('entries that climb above the root', () => {
  it('pins ../x, /../x, a/../../x and a hardlink target ../../etc/passwd at the root, exit 0 through the CLI with one warning for the layer, and extracts inside the root', async () => {
    const image = await pushRaw('escape', [
      gzLayer(buildTar([dir('etc'), file('etc/passwd', 'root:x:0:0::/root:/bin/sh\n')])),
      gzLayer(buildTar([dir('a'), file('../x', 'x\n'), file('/../y', 'y\n'), file('a/../../z', 'z\n'), hardlink('innocent', '../../etc/passwd')])),
    ]);
    const run = await pullCli(image.reference, 'out.tar', ['--progress', 'json']);
    expect(run.code, run.stderr).toBe(0);
    const events = lines(run.stderr).map((line) => JSON.parse(line) as PullEvent);
    const warnings = events.filter((event) => event.type === 'warning');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ code: 'NAME_PINNED_AT_ROOT' });
    expect(warnings[0]?.type === 'warning' && warnings[0].message).toMatch(
      new RegExp(`^layer 1 \\(${image.layerDigests[1]}\\): 4 entry names climb above the root and were pinned at it.*"\\.\\./x" is written as "x"`),
    );
    const listing = (await listed(await readFile(run.out))).filter((entry) => entry.path !== '.');
    expect([...listing].sort((a, b) => (a.path < b.path ? -1 : 1))).toEqual([
      { path: 'a', type: 'dir', linkname: '' },
      { path: 'etc', type: 'dir', linkname: '' },
      { path: 'etc/passwd', type: 'file', linkname: '', content: hashOf('root:x:0:0::/root:/bin/sh\n') },
      { path: 'innocent', type: 'hardlink', linkname: 'etc/passwd' },
      { path: 'x', type: 'file', linkname: '', content: hashOf('x\n') },
      { path: 'y', type: 'file', linkname: '', content: hashOf('y\n') },
      { path: 'z', type: 'file', linkname: '', content: hashOf('z\n') },
    ]);
    expect(await extractInSandbox(run.out)).toEqual(['a dir', 'etc dir', 'etc/passwd file', 'innocent file', 'x file', 'y file', 'z file']);
  });

  it('says nothing when a .. stays inside the root', async () => {
    const image = await pushRaw('dotdot-inside', [gzLayer(buildTar([dir('a'), file('a/../b', 'b\n')]))]);
    expect((await expectPulled(await pull(image.reference))).map((entry) => entry.path)).toEqual(['a', 'b']);
  });
});

describe('a tar without its end-of-archive marker', () => {
  // Go's archive/tar and libarchive take a stream that ends cleanly at a header boundary as
  // complete; the digest vouches for every byte (DESIGN.md §3). A warning says so.
  it('is accepted, with a TAR_NO_END_MARKER warning naming the layer', async () => {
    const image = await pushRaw('no-end-marker', [gzLayer(buildTar([file('a', 'x'), file('b', 'y')], { endMarker: false }))]);
    const run = await pull(image.reference);
    expect(run.error).toBeUndefined();
    expect((await listed(run.bytes)).map((entry) => entry.path).filter((path) => path !== '.')).toEqual(['a', 'b']);
    const warnings = run.events.filter((event) => event.type === 'warning');
    expect(warnings.map((event) => event.type === 'warning' && event.code)).toEqual(['TAR_NO_END_MARKER']);
    expect(warnings[0]?.type === 'warning' && warnings[0].message).toMatch(new RegExp(`^layer 0 \\(${image.layerDigests[0]}\\): `));
  });
});

describe('broken gzip streams', () => {
  const tar = buildTar([dir('etc'), file('etc/hostname', 'box\n')]);

  it('refuses non-zero garbage after the last gzip member as malformed content with exit 8, in a .tar.gz output too', async () => {
    const blob = Buffer.concat([gzipSync(tar), Buffer.from('GARBAGE!')]);
    const image = await pushRaw('gzip-garbage', [{ blob, diffId: sha256(tar), mediaType: OCI_GZIP }]);
    await expectCliRefused(await pullCli(image.reference), 8, /gzip/);
    await expectCliRefused(await pullCli(image.reference, 'out.tar.gz'), 8, /gzip/);
  });

  it('refuses non-zero garbage after zero padding after the last gzip member with exit 8, saying so', async () => {
    const blob = Buffer.concat([gzipSync(tar), Buffer.alloc(64), Buffer.from('GARBAGE!')]);
    const image = await pushRaw('gzip-pad-garbage', [{ blob, diffId: sha256(tar), mediaType: OCI_GZIP }]);
    expectRefused(await pull(image.reference), 8, /gzip stream: unexpected data after the last member/);
  });

  it('tolerates zeros after the last gzip member (the garbage test above is not refusing every tail)', async () => {
    const blob = Buffer.concat([gzipSync(tar), Buffer.alloc(1024)]);
    const image = await pushRaw('gzip-zeros', [{ blob, diffId: sha256(tar), mediaType: OCI_GZIP }]);
    const listing = await expectPulled(await pull(image.reference));
    expect(listing.map((entry) => entry.path)).toEqual(['etc', 'etc/hostname']);
  });

  // The blob bytes match the digest they were pushed under, so nothing was tampered with in
  // transit: the stream itself is malformed content (8), not an integrity failure (7).
  it('refuses a gzip layer that lacks its 8-byte trailer, pushed under the digest of those bytes, as malformed with exit 8', async () => {
    const gz = gzipSync(tar);
    expect(gunzipSync(gz).equals(tar)).toBe(true);
    const image = await pushRaw('gzip-no-trailer', [{ blob: gz.subarray(0, gz.length - 8), diffId: sha256(tar), mediaType: OCI_GZIP }]);
    expectRefused(await pull(image.reference), 8, /truncated gzip stream/);
  });

  it('refuses a gzip layer cut in the middle of its deflate data, pushed under the digest of those bytes, with exit 8', async () => {
    const big = buildTar([file('words', Buffer.from('lorem ipsum dolor sit amet '.repeat(4000)))]);
    const gz = gzipSync(big);
    const image = await pushRaw('gzip-cut', [{ blob: gz.subarray(0, Math.floor(gz.length / 2)), diffId: sha256(big), mediaType: OCI_GZIP }]);
    expectRefused(await pull(image.reference), 8, /truncated gzip stream/);
  });
});

describe('bytes that do not match their descriptor', () => {
  async function viaProxy(): Promise<FaultProxy> {
    const proxy = await startFaultProxy({ upstream: registry });
    closers.push(() => proxy.close());
    return proxy;
  }
  const blobOf = (digest: string | undefined): RegExp => new RegExp(`/blobs/${digest ?? 'missing'}$`);

  it('refuses an uncompressed layer with one tampered byte in a file body with exit 7, naming the digest', async () => {
    const tar = buildTar([file('data', Buffer.alloc(4000, 0x61))]);
    const image = await pushRaw('tamper-tar', [tarLayer(tar)]);
    const proxy = await viaProxy();
    proxy.add({ path: blobOf(image.layerDigests[0]), fault: { type: 'corrupt', offset: BLOCK + 2000 }, times: Infinity });
    const run = await pullCli(`${proxy.host}/${image.repo}:v1`);
    await expectCliRefused(run, 7, new RegExp(`layer 0 \\(${image.layerDigests[0]}\\): digest mismatch: expected ${image.layerDigests[0]}`));
    expect(proxy.faultsInjected).toBeGreaterThan(0);
  });

  it('refuses a gzip layer with one tampered byte inside its deflate data with exit 7 (integrity), not as malformed gzip', async () => {
    const tar = buildTar([file('words', Buffer.from('lorem ipsum dolor sit amet, consectetur adipiscing elit. '.repeat(2000)))]);
    const image = await pushRaw('tamper-gz', [gzLayer(tar)]);
    const size = gzipSync(tar).length;
    const proxy = await viaProxy();
    proxy.add({ path: blobOf(image.layerDigests[0]), fault: { type: 'corrupt', offset: Math.floor(size / 2) }, times: Infinity });
    const run = await pull(`${proxy.host}/${image.repo}:v1`);
    expectRefused(run, 7, new RegExp(`layer 0 \\(${image.layerDigests[0]}\\)(: digest mismatch| does not match its digest)`));
    expect(proxy.faultsInjected).toBeGreaterThan(0);
  });

  it.each([
    ['one byte more', 1],
    ['one byte less', -1],
  ])('refuses a layer whose descriptor size is %s than the blob with exit 7', async (_what, delta) => {
    const tar = buildTar([file('data', 'payload\n')]);
    const layer = gzLayer(tar);
    const image = await pushRaw('size-lie', [{ ...layer, size: layer.blob.length + delta }]);
    expectRefused(await pull(image.reference), 7, new RegExp(`${image.layerDigests[0]}.*size mismatch: expected ${layer.blob.length + delta} bytes, got ${layer.blob.length}`));
  });

  it('refuses a manifest pulled by digest whose body was tampered inside a string (still valid JSON) with exit 7', async () => {
    const image = await pushRaw('tamper-manifest-string', [gzLayer(buildTar([file('a', 'x')]))], { annotations: { 'org.example.note': 'hello' } });
    const offset = image.manifestBytes.indexOf('hello');
    const proxy = await viaProxy();
    proxy.add({ path: MANIFESTS, fault: { type: 'corrupt', offset }, times: Infinity });
    const run = await pull(`${proxy.host}/${image.repo}@${image.manifestDigest}`);
    expectRefused(run, 7, new RegExp(`manifest.*digest mismatch.*${image.manifestDigest}`));
    expect(proxy.faultsInjected).toBeGreaterThan(0);
  });

  it('refuses a manifest pulled by digest whose tampered body is no longer JSON with exit 7: the digest is checked before the body is trusted', async () => {
    const image = await pushRaw('tamper-manifest-syntax', [gzLayer(buildTar([file('a', 'x')]))]);
    const proxy = await viaProxy();
    proxy.add({ path: MANIFESTS, fault: { type: 'corrupt', offset: 0 }, times: Infinity });
    const run = await pull(`${proxy.host}/${image.repo}@${image.manifestDigest}`);
    expectRefused(run, 7, new RegExp(`manifest .*digest mismatch: expected ${image.manifestDigest}`));
    expect(proxy.faultsInjected).toBeGreaterThan(0);
  });
});

describe('oversized and malformed metadata', () => {
  const FOUR_MIB = 4 * 1024 * 1024;

  it.each([
    ['with a Content-Length', false],
    ['chunked, without a Content-Length', true],
  ])('refuses a manifest larger than 4 MiB %s with exit 8, saying it is too large', async (_what, chunked) => {
    const host = await serveManifest(hugeManifest(FOUR_MIB + 1024), { chunked });
    expectRefused(await pull(`${host}/evil:v1`), 8, /manifest .*larger than 4194304 bytes/);
  });

  it('refuses a token response larger than 1 MiB with exit 4 (auth: no token could be had), saying it is too large', async () => {
    const host = await serve((req, res, self) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/token') {
        const body = JSON.stringify({ token: 't'.repeat(1024 * 1024 + 10), expires_in: 300 });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(body.length) }).end(body);
        return;
      }
      const envelope = JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] });
      res
        .writeHead(401, {
          'content-type': 'application/json',
          'content-length': String(envelope.length),
          'www-authenticate': `Bearer realm="http://${self}/token",service="hostile",scope="repository:evil:pull"`,
        })
        .end(envelope);
    });
    await expectCliRefused(await pullCli(`${host}/evil:v1`), 4, /token response larger than 1048576 bytes/);
  });

  it.each([
    ['not JSON at all', Buffer.from('{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": ['), /manifest .*not valid JSON/],
    ['JSON whose layers are not a list', Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: OCI_CONFIG, digest: `sha256:${'0'.repeat(64)}`, size: 2 }, layers: 'nope' })), /manifest .*"layers" is not a list/],
    ['a JSON array', Buffer.from('[]'), /manifest .*not a JSON object/],
  ])('refuses a manifest that is %s with exit 8, naming the manifest', async (_what, body, cause) => {
    const host = await serveManifest(body);
    expectRefused(await pull(`${host}/evil:v1`), 8, cause);
  });

  it('refuses a config that is not JSON with exit 8, naming the config', async () => {
    const image = await pushRaw('bad-config', [gzLayer(buildTar([file('a', 'x')]))], { configBytes: Buffer.from('{"rootfs": {"type": "layers", ') });
    expectRefused(await pull(image.reference), 8, /config sha256:[0-9a-f]{64}: not valid JSON/);
  });

  it('refuses a config whose diff_ids are missing with exit 8', async () => {
    const image = await pushRaw('config-no-diffids', [gzLayer(buildTar([file('a', 'x')]))], {
      configBytes: Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers' } })),
    });
    expectRefused(await pull(image.reference), 8, /config sha256:[0-9a-f]{64}: rootfs\.diff_ids is not a list/);
  });

  it('refuses a layer of an unknown media type with exit 8, naming the media type', async () => {
    const tar = buildTar([file('a', 'x')]);
    const image = await pushRaw('unknown-media', [{ ...gzLayer(tar), mediaType: 'application/vnd.example.layer.v1.squashfs' }]);
    expectRefused(await pull(image.reference), 8, /application\/vnd\.example\.layer\.v1\.squashfs/);
  });
});

describe('symlinks used to smuggle an entry out of the root', () => {
  const byPath = (list: Listed): Listed => [...list].sort((a, b) => (a.path < b.path ? -1 : 1));
  const PASSWD = 'hacker::0:0::/:/bin/sh\n';

  it('writes evil/passwd of an upper layer through a base-layer symlink evil -> /etc as etc/passwd, keeps evil a symlink, and extracts inside the root', async () => {
    const image = await pushRaw('smuggle-abs', [
      gzLayer(buildTar([symlink('evil', '/etc')])),
      gzLayer(buildTar([file('evil/passwd', PASSWD)])),
    ]);
    const run = await pull(image.reference);
    const out = await saved(run);
    expect(byPath(await expectPulled(run))).toEqual([
      { path: 'etc', type: 'dir', linkname: '' },
      { path: 'etc/passwd', type: 'file', linkname: '', content: hashOf(PASSWD) },
      { path: 'evil', type: 'symlink', linkname: '/etc' },
    ]);
    expect(await extractInSandbox(out)).toEqual(['etc dir', 'etc/passwd file', 'evil symlink -> /etc']);
  });

  it('writes up/x of an upper layer through a base-layer symlink up -> ../../.. as x at the root, and extracts inside the root', async () => {
    const image = await pushRaw('smuggle-up', [
      gzLayer(buildTar([symlink('up', '../../..')])),
      gzLayer(buildTar([file('up/x', 'escaped?\n')])),
    ]);
    const run = await pull(image.reference);
    const out = await saved(run);
    expect(byPath(await expectPulled(run))).toEqual([
      { path: 'up', type: 'symlink', linkname: '../../..' },
      { path: 'x', type: 'file', linkname: '', content: hashOf('escaped?\n') },
    ]);
    expect(await extractInSandbox(out)).toEqual(['up symlink -> ../../..', 'x file']);
  });

  it('writes evil/passwd through a symlink evil -> /etc made earlier in the same layer as etc/passwd, and extracts inside the root', async () => {
    const image = await pushRaw('smuggle-same', [gzLayer(buildTar([symlink('evil', '/etc'), file('evil/passwd', PASSWD)]))]);
    const run = await pull(image.reference);
    const out = await saved(run);
    expect(byPath(await expectPulled(run))).toEqual([
      { path: 'etc', type: 'dir', linkname: '' },
      { path: 'etc/passwd', type: 'file', linkname: '', content: hashOf(PASSWD) },
      { path: 'evil', type: 'symlink', linkname: '/etc' },
    ]);
    expect(await extractInSandbox(out)).toEqual(['etc dir', 'etc/passwd file', 'evil symlink -> /etc']);
  });

  it('writes up/x through a symlink up -> ../../.. made earlier in the same layer as x at the root', async () => {
    const image = await pushRaw('smuggle-up-same', [gzLayer(buildTar([symlink('up', '../../..'), file('up/x', 'escaped?\n')]))]);
    const run = await pull(image.reference);
    const out = await saved(run);
    expect(byPath(await expectPulled(run))).toEqual([
      { path: 'up', type: 'symlink', linkname: '../../..' },
      { path: 'x', type: 'file', linkname: '', content: hashOf('escaped?\n') },
    ]);
    expect(await extractInSandbox(out)).toEqual(['up symlink -> ../../..', 'x file']);
  });
});
