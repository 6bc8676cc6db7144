/**
 * The pull policies of issue 9 against the real registry (DESIGN.md §3, §6), in process
 * through the API, and once each through the CLI where the CLI wiring is what is tested:
 * a path a layer holds twice (one entry per path in a file, both on a stream, with a
 * warning), and a layer damaged in transit (fetched again for a file, an integrity error
 * rather than "malformed" otherwise).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { lastValueFrom, tap } from 'rxjs';
import { afterAll, afterEach, describe, expect, inject, it } from 'vitest';
import { DigestMismatchError, MalformedArchiveError } from '../../src/errors.js';
import type { PullEvent } from '../../src/pull/events.js';
import { pullRootfs, pullRootfs$ } from '../../src/pull/pull-rootfs.js';
import { createAtomicFile } from '../../src/streams/output-file.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { listTar, sha256Hex } from '../helpers/listing.js';
import { pushImage, type PushedImage } from '../helpers/push.js';
import { buildTar, type FixtureEntry } from '../helpers/tar-fixture.js';

const registry = inject('registry');
const CLI = join(resolve(dirname(fileURLToPath(import.meta.url)), '../..'), 'dist/cli/main.js');
const configDir = await mkdtemp(join(tmpdir(), 'oci-rootfs-policies-noconfig-'));
const scratch: string[] = [configDir];
const proxies: FaultProxy[] = [];
/** Retries without the waiting. */
const FAST = { retryBaseDelayMs: 1, retryMaxDelayMs: 5 } as const;

afterEach(async () => {
  await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
});
afterAll(async () => {
  await Promise.all(scratch.map((dir) => rm(dir, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'oci-rootfs-policies-'));
  scratch.push(dir);
  return dir;
}

async function proxy(): Promise<FaultProxy> {
  const started = await startFaultProxy({ upstream: registry });
  proxies.push(started);
  return started;
}

const file = (name: string, content: string | Buffer, more: Partial<FixtureEntry> = {}): FixtureEntry => ({ name, type: 'file', content, ...more });
const uniqueRepo = (what: string): string => `e2e-policies/${what}-${randomBytes(4).toString('hex')}`;

async function push(what: string, layers: Array<{ entries: FixtureEntry[]; compression: 'gzip' | 'none' }>): Promise<{ repo: string; image: PushedImage }> {
  const repo = uniqueRepo(what);
  const image = await pushImage(registry, repo, 'v1', { layers: layers.map((l) => ({ tar: buildTar(l.entries), compression: l.compression })) });
  return { repo, image };
}

const apiOptions = { dockerConfigDir: configDir, plainHttp: true, ...FAST } as const;

/** `pullRootfs$` into a restartable file; the events and the file's bytes. */
async function pullToFile(reference: string): Promise<{ events: PullEvent[]; bytes: Buffer; dir: string }> {
  const dir = await tempDir();
  const path = join(dir, 'out.tar');
  const events: PullEvent[] = [];
  const output = createAtomicFile(path);
  try {
    await lastValueFrom(pullRootfs$(reference, { ...apiOptions, output }).pipe(tap((event) => events.push(event))));
    await output.commit();
  } finally {
    await output.discard();
  }
  return { events, bytes: await readFile(path), dir };
}

async function pullToStream(reference: string): Promise<{ events: PullEvent[]; bytes: Buffer }> {
  const events: PullEvent[] = [];
  const chunks: Buffer[] = [];
  for await (const chunk of pullRootfs(reference, { ...apiOptions, onEvent: (event) => events.push(event) })) chunks.push(chunk as Buffer);
  return { events, bytes: Buffer.concat(chunks) };
}

const counts = (paths: string[]): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const path of paths) out[path] = (out[path] ?? 0) + 1;
  return out;
};

// ---------------------------------------------------------------------------------------------

describe('a path that a layer holds twice', () => {
  const layers = [
    { entries: [file('base', 'base\n')], compression: 'gzip' as const },
    { entries: [file('etc/motd', 'first\n'), file('keep', 'k\n'), file('etc/motd', 'second\n', { mode: 0o600 })], compression: 'gzip' as const },
  ];

  it('is written once to a file, the later copy, after one restart announced as a retry of the output', async () => {
    const { repo } = await push('dup-file', layers);
    const { events, bytes, dir } = await pullToFile(`${registry}/${repo}:v1`);
    const listing = await listTar(bytes);
    expect(counts(listing.map((e) => e.path))).toEqual({ '.': 1, base: 1, etc: 1, 'etc/motd': 1, keep: 1 });
    expect(listing.find((e) => e.path === 'etc/motd')).toMatchObject({ sha256: sha256Hex(Buffer.from('second\n')), mode: '0600' });
    const retries = events.filter((e) => e.type === 'retry');
    expect(retries).toHaveLength(1);
    expect(retries[0]).toMatchObject({ what: 'output', attempt: 1 });
    expect(retries[0]?.type === 'retry' && retries[0].reason).toMatch(/holds a path twice \("etc\/motd"\).*starting over to write each path once/);
    const warning = events.find((e) => e.type === 'warning' && e.code === 'DUPLICATE_PATH');
    expect(warning).toBeDefined();
    expect(events.filter((e) => e.type === 'done')).toHaveLength(1);
    expect(await readdir(dir)).toEqual(['out.tar']);
  });

  it('gives each warning once, although the restarted attempt reads the layers again', async () => {
    const { repo } = await push('dup-pinned', [
      { entries: [file('../pinned', 'p\n')], compression: 'gzip' },
      { entries: [file('a', '1'), file('a', '2')], compression: 'gzip' },
    ]);
    const { events } = await pullToFile(`${registry}/${repo}:v1`);
    expect(events.filter((e) => e.type === 'retry')).toHaveLength(1);
    expect(events.filter((e) => e.type === 'warning').map((e) => e.type === 'warning' && e.code).sort()).toEqual(['DUPLICATE_PATH', 'NAME_PINNED_AT_ROOT']);
  });

  it('is written twice to a stream, the later last, with a DUPLICATE_PATH warning naming it', async () => {
    const { repo } = await push('dup-stream', layers);
    const { events, bytes } = await pullToStream(`${registry}/${repo}:v1`);
    const motd = (await listTar(bytes)).filter((e) => e.path === 'etc/motd');
    expect(motd.map((e) => e.sha256)).toEqual([sha256Hex(Buffer.from('first\n')), sha256Hex(Buffer.from('second\n'))]);
    const warnings = events.filter((e) => e.type === 'warning' && e.code === 'DUPLICATE_PATH');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.type === 'warning' && warnings[0].message).toMatch(/^layer 1 \(sha256:[0-9a-f]{64}\): a path appears more than once in the layer \("etc\/motd"\)/);
    expect(events.some((e) => e.type === 'retry')).toBe(false);
  });

  it('through the CLI: -o FILE.tar.gz holds each path once and the gzip is whole (a new compressor per attempt); --progress json shows the retry', async () => {
    const { repo } = await push('dup-cli', layers);
    const dir = await tempDir();
    const out = join(dir, 'out.tar.gz');
    const run = await cli(['pull', '--plain-http', `${registry}/${repo}:v1`, '-o', out, '--progress', 'json']);
    expect(run.code, run.stderr).toBe(0);
    const events = run.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as PullEvent);
    expect(events.filter((e) => e.type === 'retry').map((e) => e.type === 'retry' && e.what)).toEqual(['output']);
    expect(events.filter((e) => e.type === 'warning').map((e) => e.type === 'warning' && e.code)).toEqual(['DUPLICATE_PATH']);
    const listing = await listTar(gunzipSync(await readFile(out)));
    expect(counts(listing.map((e) => e.path))['etc/motd']).toBe(1);
    expect(await readdir(dir)).toEqual(['out.tar.gz']);
  });
});

describe('a layer damaged in transit', () => {
  // An uncompressed layer, so that a flipped byte in the second header is what the tar
  // reader meets first: "bad checksum", long before the digest is known.
  const entries = [file('a', Buffer.alloc(1000, 0x61)), file('b', 'bee\n'), file('c', Buffer.alloc(100_000, 0x63))];
  const SECOND_HEADER = 3 * 512 + 20;

  it('is an integrity error on a stream, not malformed content: the digest is checked once the tar fails to parse', async () => {
    const { repo, image } = await push('damaged-stream', [{ entries, compression: 'none' }]);
    const p = await proxy();
    p.add({ path: new RegExp(`/blobs/${image.layers[0]?.digest}$`), fault: { type: 'corrupt', offset: SECOND_HEADER }, times: Infinity });
    const error = await pullToStream(`${p.host}/${repo}:v1`).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DigestMismatchError);
    expect((error as Error).message).toMatch(
      new RegExp(`^layer 0 \\(${image.layers[0]?.digest}\\) does not match its digest: corrupted in transit or in the registry's storage`),
    );
    expect((error as Error).cause).toBeInstanceOf(MalformedArchiveError);
    expect(((error as Error).cause as Error).message).toMatch(/checksum/);
  });

  it('is fetched again once for a file, which starts over and comes out whole, with a retry event saying why', async () => {
    const { repo, image } = await push('damaged-file', [
      { entries: [file('base', 'base\n')], compression: 'gzip' },
      { entries, compression: 'none' },
    ]);
    const expected = await listTar((await pullToStream(`${registry}/${repo}:v1`)).bytes);
    const p = await proxy();
    const blob = new RegExp(`/blobs/${image.layers[1]?.digest}$`);
    p.add({ path: blob, fault: { type: 'corrupt', offset: SECOND_HEADER }, times: 1 });
    const { events, bytes } = await pullToFile(`${p.host}/${repo}:v1`);
    expect(await listTar(bytes)).toEqual(expected);
    expect(p.faultsInjected).toBe(1);
    expect(p.requests(blob).filter((r) => r.method === 'GET')).toHaveLength(2);
    const retries = events.filter((e) => e.type === 'retry');
    expect(retries).toHaveLength(1);
    expect(retries[0]).toMatchObject({ what: `layer 1 (${image.layers[1]?.digest})`, attempt: 1 });
    expect(retries[0]?.type === 'retry' && retries[0].reason).toMatch(/does not match its digest.*fetching it again and starting over/);
  });

  it('fails a file pull when the layer is damaged again: exit 7 through the CLI, no file left', async () => {
    const { repo, image } = await push('damaged-twice', [{ entries, compression: 'none' }]);
    const p = await proxy();
    p.add({ path: new RegExp(`/blobs/${image.layers[0]?.digest}$`), fault: { type: 'corrupt', offset: SECOND_HEADER }, times: Infinity });
    const dir = await tempDir();
    const run = await cli(['pull', '--plain-http', `${p.host}/${repo}:v1`, '-o', join(dir, 'out.tar'), '--retries', '1']);
    expect(run.code, run.stderr).toBe(7);
    expect(run.stderr).toMatch(/^oci-rootfs: layer 0 \(sha256:[0-9a-f]{64}\) does not match its digest: corrupted in transit or in the registry's storage/);
    expect(p.faultsInjected).toBe(2);
    expect(await readdir(dir)).toEqual([]);
  });
});

async function cli(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, DOCKER_CONFIG: configDir },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const watchdog = setTimeout(() => child.kill('SIGKILL'), 45_000);
  const code = await new Promise<number | null>((done) => child.once('exit', (status) => done(status)));
  clearTimeout(watchdog);
  return { code, stderr };
}
