/**
 * Hostile or broken input as the command line meets it (issue #4; DESIGN.md §3, §4, §6): every
 * test crafts an image (raw tar bytes, raw gzip, raw JSON), serves it from the real registry,
 * through the fault proxy or from a small in-process server, and runs the built CLI in dist/
 * with `-o out.tar` (a few `out.tar.gz`). A refused pull must exit with the code of §6
 * (8 unsafe or malformed, 7 integrity, 4 auth), print exactly one line `oci-rootfs: …` that
 * names the cause, and leave nothing in the output directory: no file, no `.partial`.
 * The symlink cases must succeed, keep every entry inside the root, and extract with GNU tar
 * without touching anything outside the extraction directory.
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

/** `header` (one 512-byte ustar block) with its checksum recomputed. */
function resum(header: Buffer): Buffer {
  const block = Buffer.from(header);
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return block;
}

/** The 12-byte size field in GNU base-256: 0x80, then the value big-endian. */
function base256Size(value: bigint): Buffer {
  const field = Buffer.alloc(12);
  field[0] = 0x80;
  let rest = value;
  for (let i = 11; i >= 1; i--) {
    field[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  return field;
}

const TIB = 2n ** 40n;

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
async function pull(reference: string, output = 'out.tar', args: string[] = []): Promise<Run> {
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
async function expectRefused(run: Run, code: number, cause: RegExp): Promise<void> {
  expect(run.code, `exit status (stderr: ${run.stderr})`).toBe(code);
  expect(lines(run.stderr), 'stderr is one line').toHaveLength(1);
  expect(run.stderr).toMatch(/^oci-rootfs: [^\n]+\n$/);
  expect(run.stderr).not.toMatch(/^oci-rootfs: warning:/);
  expect(run.stderr.trimEnd()).toMatch(cause);
  expect(await readdir(run.dir), 'no output and no temporary file left').toEqual([]);
}

/** The pull succeeded quietly; returns the listing of the uncompressed output. */
async function expectPulled(run: Run): Promise<Array<{ path: string; type: string; linkname: string; content?: string }>> {
  expect(run.stderr).toBe('');
  expect(run.code).toBe(0);
  expect(await readdir(run.dir), 'only the output').toEqual(['out.tar']);
  const bytes = await readFile(run.out);
  const listing = await listTar(bytes);
  return listing.map((entry) => ({
    path: entry.path,
    type: entry.type,
    linkname: entry.linkname,
    ...(entry.type === 'file' ? { content: entry.sha256 } : {}),
  }));
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

// =============================================================================================

describe('entries that would land outside the root', () => {
  it.each(['../x', '/../x', 'a/../../x'])('refuses an entry named %s with exit 8, naming it, and writes no file', async (name) => {
    const image = await pushRaw('escape', [gzLayer(buildTar([dir('a'), file(name, 'owned\n')]))]);
    const run = await pull(image.reference);
    await expectRefused(run, 8, new RegExp(`${name.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}.*outside the root`));
  });

  it('refuses a ../ escape in a .tar.gz output too, leaving neither the file nor its temporary', async () => {
    const image = await pushRaw('escape-gz', [gzLayer(buildTar([file('ok', 'fine\n'), file('../x', 'owned\n')]))]);
    const run = await pull(image.reference, 'out.tar.gz');
    await expectRefused(run, 8, /\.\.\/x.*outside the root/);
  });

  it('refuses an escape in an upper layer after a lower layer was fine', async () => {
    const image = await pushRaw('escape-upper', [
      gzLayer(buildTar([dir('etc'), file('etc/passwd', 'root:x:0:0::/root:/bin/sh\n')])),
      gzLayer(buildTar([file('a/../../x', 'owned\n')])),
    ]);
    const run = await pull(image.reference);
    await expectRefused(run, 8, /a\/\.\.\/\.\.\/x.*outside the root/);
  });

  it('refuses a hardlink whose target ../../etc/passwd is outside the root with exit 8, even though etc/passwd exists inside', async () => {
    const image = await pushRaw('hardlink-escape', [
      gzLayer(buildTar([dir('etc'), file('etc/passwd', 'root:x:0:0::/root:/bin/sh\n'), hardlink('innocent', '../../etc/passwd')])),
    ]);
    const run = await pull(image.reference);
    await expectRefused(run, 8, /hardlink target "\.\.\/\.\.\/etc\/passwd".*outside the root/);
  });

  it('refuses a bare .wh. whiteout with exit 8, naming it', async () => {
    const image = await pushRaw('bare-whiteout', [gzLayer(buildTar([dir('a'), file('a/b', 'x')])), gzLayer(buildTar([file('a/.wh.', '')]))]);
    const run = await pull(image.reference);
    await expectRefused(run, 8, /invalid whiteout entry "\.wh\."/);
  });
});

describe('absurd sizes', () => {
  it('refuses an entry whose PAX size claims 1 TiB over a short body (a truncated tar) with exit 8', async () => {
    const tar = buildTar([file('big', 'short body', { pax: { size: String(TIB) } })]);
    const image = await pushRaw('pax-tib', [gzLayer(tar)]);
    const run = await pull(image.reference);
    await expectRefused(run, 8, /truncated inside the body of entry 0 \("big"\)/);
  });

  it('refuses an entry whose base-256 size field claims 1 TiB over a short body with exit 8, without waiting for a terabyte', async () => {
    const entry = encodeEntry(file('big', 'short body'));
    const header = Buffer.from(entry.subarray(0, BLOCK));
    base256Size(TIB).copy(header, 124);
    const tar = Buffer.concat([resum(header), entry.subarray(BLOCK), Buffer.alloc(2 * BLOCK)]);
    const image = await pushRaw('b256-tib', [tarLayer(tar)]);
    const started = performance.now();
    const run = await pull(image.reference);
    await expectRefused(run, 8, /truncated inside the body of entry 0 \("big"\)/);
    expect(performance.now() - started).toBeLessThan(30_000);
  });

  it.each([
    ['a length field of 20 digits', '99999999999999999999 path=x\n'],
    ['a length field longer than the header body', '500 path=x\n'],
    ['a length field of zero', '0 path=x\n'],
  ])('refuses a PAX header with %s with exit 8', async (_what, record) => {
    const pax: FixtureEntry = { name: 'PaxHeaders/x', type: 'file', content: record, rawTypeflag: 'x' };
    const tar = buildTar([pax, file('x', 'payload\n')]);
    const image = await pushRaw('pax-length', [gzLayer(tar)]);
    const run = await pull(image.reference);
    await expectRefused(run, 8, /PAX header before entry 0 is malformed/);
  });

  it('refuses a PAX extension header whose own size claims 1 TiB with exit 8', async () => {
    const entry = encodeEntry({ name: 'PaxHeaders/x', type: 'file', content: '11 path=x\n', rawTypeflag: 'x' });
    const header = Buffer.from(entry.subarray(0, BLOCK));
    base256Size(TIB).copy(header, 124);
    const tar = Buffer.concat([resum(header), entry.subarray(BLOCK), encodeEntry(file('x', 'payload\n')), Buffer.alloc(2 * BLOCK)]);
    const image = await pushRaw('pax-size', [tarLayer(tar)]);
    const run = await pull(image.reference);
    await expectRefused(run, 8, /extension header of 1099511627776 bytes is too large/);
  });
});

describe('truncated tars', () => {
  // a: header at 0, 1000 bytes of body in blocks 1-2; b: header at 1536.
  const full = buildTar([file('a', Buffer.alloc(1000, 0x61)), file('b', 'bee\n')]);

  it('refuses a tar cut in the middle of a header with exit 8 (gzip layer)', async () => {
    const image = await pushRaw('cut-header', [gzLayer(full.subarray(0, 3 * BLOCK + 200))]);
    await expectRefused(await pull(image.reference), 8, /tar archive truncated inside the header of entry 1/);
  });

  it('refuses a tar cut in the middle of a file body with exit 8 (uncompressed layer)', async () => {
    const image = await pushRaw('cut-data', [tarLayer(full.subarray(0, BLOCK + 300))]);
    await expectRefused(await pull(image.reference), 8, /tar archive truncated inside the body of entry 0 \("a"\)/);
  });

  it('refuses a tar that ends on a block boundary without its end-of-archive marker with exit 8', async () => {
    const image = await pushRaw('no-end-marker', [gzLayer(buildTar([file('a', 'x'), file('b', 'y')], { endMarker: false }))]);
    await expectRefused(await pull(image.reference), 8, /tar archive truncated before the end-of-archive marker/);
  });
});

describe('broken gzip streams', () => {
  const tar = buildTar([dir('etc'), file('etc/hostname', 'box\n')]);

  it('refuses non-zero garbage after the last gzip member as malformed content with exit 8, in a .tar.gz output too', async () => {
    const blob = Buffer.concat([gzipSync(tar), Buffer.from('GARBAGE!')]);
    const image = await pushRaw('gzip-garbage', [{ blob, diffId: sha256(tar), mediaType: OCI_GZIP }]);
    await expectRefused(await pull(image.reference), 8, /gzip/);
    await expectRefused(await pull(image.reference, 'out.tar.gz'), 8, /gzip/);
  });

  it('refuses non-zero garbage after zero padding after the last gzip member with exit 8, saying so', async () => {
    const blob = Buffer.concat([gzipSync(tar), Buffer.alloc(64), Buffer.from('GARBAGE!')]);
    const image = await pushRaw('gzip-pad-garbage', [{ blob, diffId: sha256(tar), mediaType: OCI_GZIP }]);
    await expectRefused(await pull(image.reference), 8, /gzip stream: unexpected data after the last member/);
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
    await expectRefused(await pull(image.reference), 8, /truncated gzip stream/);
  });

  it('refuses a gzip layer cut in the middle of its deflate data, pushed under the digest of those bytes, with exit 8', async () => {
    const big = buildTar([file('words', Buffer.from('lorem ipsum dolor sit amet '.repeat(4000)))]);
    const gz = gzipSync(big);
    const image = await pushRaw('gzip-cut', [{ blob: gz.subarray(0, Math.floor(gz.length / 2)), diffId: sha256(big), mediaType: OCI_GZIP }]);
    await expectRefused(await pull(image.reference), 8, /truncated gzip stream/);
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
    const run = await pull(`${proxy.host}/${image.repo}:v1`);
    await expectRefused(run, 7, new RegExp(`layer 0 \\(${image.layerDigests[0]}\\): digest mismatch: expected ${image.layerDigests[0]}`));
    expect(proxy.faultsInjected).toBeGreaterThan(0);
  });

  it('refuses a gzip layer with one tampered byte inside its deflate data with exit 7 (integrity), not as malformed gzip', async () => {
    const tar = buildTar([file('words', Buffer.from('lorem ipsum dolor sit amet, consectetur adipiscing elit. '.repeat(2000)))]);
    const image = await pushRaw('tamper-gz', [gzLayer(tar)]);
    const size = gzipSync(tar).length;
    const proxy = await viaProxy();
    proxy.add({ path: blobOf(image.layerDigests[0]), fault: { type: 'corrupt', offset: Math.floor(size / 2) }, times: Infinity });
    const run = await pull(`${proxy.host}/${image.repo}:v1`);
    await expectRefused(run, 7, new RegExp(`layer 0 \\(${image.layerDigests[0]}\\): digest mismatch`));
    expect(proxy.faultsInjected).toBeGreaterThan(0);
  });

  it.each([
    ['one byte more', 1],
    ['one byte less', -1],
  ])('refuses a layer whose descriptor size is %s than the blob with exit 7', async (_what, delta) => {
    const tar = buildTar([file('data', 'payload\n')]);
    const layer = gzLayer(tar);
    const image = await pushRaw('size-lie', [{ ...layer, size: layer.blob.length + delta }]);
    await expectRefused(await pull(image.reference), 7, new RegExp(`${image.layerDigests[0]}.*size mismatch: expected ${layer.blob.length + delta} bytes, got ${layer.blob.length}`));
  });

  it('refuses a manifest pulled by digest whose body was tampered inside a string (still valid JSON) with exit 7', async () => {
    const image = await pushRaw('tamper-manifest-string', [gzLayer(buildTar([file('a', 'x')]))], { annotations: { 'org.example.note': 'hello' } });
    const offset = image.manifestBytes.indexOf('hello');
    const proxy = await viaProxy();
    proxy.add({ path: MANIFESTS, fault: { type: 'corrupt', offset }, times: Infinity });
    const run = await pull(`${proxy.host}/${image.repo}@${image.manifestDigest}`);
    await expectRefused(run, 7, new RegExp(`manifest.*digest mismatch.*${image.manifestDigest}`));
    expect(proxy.faultsInjected).toBeGreaterThan(0);
  });

  it('refuses a manifest pulled by digest whose tampered body is no longer JSON with exit 7: the digest is checked before the body is trusted', async () => {
    const image = await pushRaw('tamper-manifest-syntax', [gzLayer(buildTar([file('a', 'x')]))]);
    const proxy = await viaProxy();
    proxy.add({ path: MANIFESTS, fault: { type: 'corrupt', offset: 0 }, times: Infinity });
    const run = await pull(`${proxy.host}/${image.repo}@${image.manifestDigest}`);
    await expectRefused(run, 7, new RegExp(`manifest .*digest mismatch: expected ${image.manifestDigest}`));
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
    await expectRefused(await pull(`${host}/evil:v1`), 8, /manifest .*larger than 4194304 bytes/);
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
    await expectRefused(await pull(`${host}/evil:v1`), 4, /token response larger than 1048576 bytes/);
  });

  it.each([
    ['not JSON at all', Buffer.from('{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": ['), /manifest .*not valid JSON/],
    ['JSON whose layers are not a list', Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: OCI_CONFIG, digest: `sha256:${'0'.repeat(64)}`, size: 2 }, layers: 'nope' })), /manifest .*"layers" is not a list/],
    ['a JSON array', Buffer.from('[]'), /manifest .*not a JSON object/],
  ])('refuses a manifest that is %s with exit 8, naming the manifest', async (_what, body, cause) => {
    const host = await serveManifest(body);
    await expectRefused(await pull(`${host}/evil:v1`), 8, cause);
  });

  it('refuses a config that is not JSON with exit 8, naming the config', async () => {
    const image = await pushRaw('bad-config', [gzLayer(buildTar([file('a', 'x')]))], { configBytes: Buffer.from('{"rootfs": {"type": "layers", ') });
    await expectRefused(await pull(image.reference), 8, /config sha256:[0-9a-f]{64}: not valid JSON/);
  });

  it('refuses a config whose diff_ids are missing with exit 8', async () => {
    const image = await pushRaw('config-no-diffids', [gzLayer(buildTar([file('a', 'x')]))], {
      configBytes: Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers' } })),
    });
    await expectRefused(await pull(image.reference), 8, /config sha256:[0-9a-f]{64}: rootfs\.diff_ids is not a list/);
  });

  it('refuses a layer of an unknown media type with exit 8, naming the media type', async () => {
    const tar = buildTar([file('a', 'x')]);
    const image = await pushRaw('unknown-media', [{ ...gzLayer(tar), mediaType: 'application/vnd.example.layer.v1.squashfs' }]);
    await expectRefused(await pull(image.reference), 8, /application\/vnd\.example\.layer\.v1\.squashfs/);
  });
});

describe('symlinks used to smuggle an entry out of the root', () => {
  type Listed = Awaited<ReturnType<typeof expectPulled>>;
  const byPath = (list: Listed): Listed => [...list].sort((a, b) => (a.path < b.path ? -1 : 1));
  const PASSWD = 'hacker::0:0::/:/bin/sh\n';

  it('writes evil/passwd of an upper layer through a base-layer symlink evil -> /etc as etc/passwd, keeps evil a symlink, and extracts inside the root', async () => {
    const image = await pushRaw('smuggle-abs', [
      gzLayer(buildTar([symlink('evil', '/etc')])),
      gzLayer(buildTar([file('evil/passwd', PASSWD)])),
    ]);
    const run = await pull(image.reference);
    expect(byPath(await expectPulled(run))).toEqual([
      { path: 'etc', type: 'dir', linkname: '' },
      { path: 'etc/passwd', type: 'file', linkname: '', content: hashOf(PASSWD) },
      { path: 'evil', type: 'symlink', linkname: '/etc' },
    ]);
    expect(await extractInSandbox(run.out)).toEqual(['etc dir', 'etc/passwd file', 'evil symlink -> /etc']);
  });

  it('writes up/x of an upper layer through a base-layer symlink up -> ../../.. as x at the root, and extracts inside the root', async () => {
    const image = await pushRaw('smuggle-up', [
      gzLayer(buildTar([symlink('up', '../../..')])),
      gzLayer(buildTar([file('up/x', 'escaped?\n')])),
    ]);
    const run = await pull(image.reference);
    expect(byPath(await expectPulled(run))).toEqual([
      { path: 'up', type: 'symlink', linkname: '../../..' },
      { path: 'x', type: 'file', linkname: '', content: hashOf('escaped?\n') },
    ]);
    expect(await extractInSandbox(run.out)).toEqual(['up symlink -> ../../..', 'x file']);
  });

  it('writes evil/passwd through a symlink evil -> /etc made earlier in the same layer as etc/passwd, and extracts inside the root', async () => {
    const image = await pushRaw('smuggle-same', [gzLayer(buildTar([symlink('evil', '/etc'), file('evil/passwd', PASSWD)]))]);
    const run = await pull(image.reference);
    expect(byPath(await expectPulled(run))).toEqual([
      { path: 'etc', type: 'dir', linkname: '' },
      { path: 'etc/passwd', type: 'file', linkname: '', content: hashOf(PASSWD) },
      { path: 'evil', type: 'symlink', linkname: '/etc' },
    ]);
    expect(await extractInSandbox(run.out)).toEqual(['etc dir', 'etc/passwd file', 'evil symlink -> /etc']);
  });

  it('writes up/x through a symlink up -> ../../.. made earlier in the same layer as x at the root', async () => {
    const image = await pushRaw('smuggle-up-same', [gzLayer(buildTar([symlink('up', '../../..'), file('up/x', 'escaped?\n')]))]);
    const run = await pull(image.reference);
    expect(byPath(await expectPulled(run))).toEqual([
      { path: 'up', type: 'symlink', linkname: '../../..' },
      { path: 'x', type: 'file', linkname: '', content: hashOf('escaped?\n') },
    ]);
    expect(await extractInSandbox(run.out)).toEqual(['up symlink -> ../../..', 'x file']);
  });
});
