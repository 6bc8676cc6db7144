/**
 * Single gzip layer pass-through (DESIGN.md §8) against the real test registry, through the
 * CLI program in this process: a clean one-layer image pulled to a gzip file is its blob byte
 * for byte; a layer the flattener would change falls back to the normal output on the same
 * file; damaged bytes recover (or fail) as on the normal path; stdout never passes through.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { runInProcess, type CliRun } from '../helpers/cli.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { listTar } from '../helpers/listing.js';
import { pushImage } from '../helpers/push.js';
import { buildTar, type FixtureEntry } from '../helpers/tar-fixture.js';

const registry = inject('registry');
const work = await mkdtemp(join(tmpdir(), 'oci-rootfs-passthrough-'));
const noConfig = await mkdtemp(join(tmpdir(), 'oci-rootfs-passthrough-noconfig-'));
const proxies: FaultProxy[] = [];
afterAll(async () => {
  await Promise.all(proxies.map((proxy) => proxy.close()));
  await rm(work, { recursive: true, force: true });
  await rm(noConfig, { recursive: true, force: true });
});

const CLEAN: FixtureEntry[] = [
  { name: './', type: 'dir' },
  { name: './bin/', type: 'dir' },
  { name: './bin/busybox', type: 'file', mode: 0o755, content: 'busybox\n'.repeat(5000) },
  { name: './bin/sh', type: 'link', linkname: './bin/busybox' },
  { name: './bin/ls', type: 'symlink', linkname: '/bin/busybox' },
  { name: './etc/', type: 'dir' },
  { name: './etc/os-release', type: 'file', content: 'ID=passthrough\n' },
];

interface Pushed {
  reference: string;
  blob: Buffer;
}

async function push(what: string, tar: Buffer, host = registry): Promise<Pushed> {
  const repo = `e2e-passthrough/${what}-${randomBytes(4).toString('hex')}`;
  await pushImage(registry, repo, 'v1', { layers: [{ tar, compression: 'gzip' }] });
  // pushImage gzips with node's defaults: the same bytes again.
  return { reference: `${host}/${repo}:v1`, blob: gzipSync(tar) };
}

interface Pulled extends CliRun {
  events: Array<{ type: string; path?: string; what?: string; reason?: string; gzipEngine?: string }>;
  file: string;
}

let runs = 0;
async function pull(reference: string, extra: string[] = [], output = `out-${runs++}.tar.gz`): Promise<Pulled> {
  const file = join(work, output);
  const run = await runInProcess(['pull', '--plain-http', '--progress', 'json', reference, '-o', file, ...extra], {
    env: { DOCKER_CONFIG: noConfig },
  });
  const events = run.stderr
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Pulled['events'][number]);
  return { ...run, events, file };
}

const done = (run: Pulled): Pulled['events'][number] | undefined => run.events.find((event) => event.type === 'done');

describe('single gzip layer pass-through', () => {
  it('writes a clean one-layer image to a .tar.gz as the blob itself, and says so in the done event', async () => {
    const image = await push('clean', buildTar(CLEAN));
    const run = await pull(image.reference);
    expect(run.code).toBe(0);
    expect((await readFile(run.file)).equals(image.blob)).toBe(true);
    expect(done(run)?.path).toBe('passthrough');
    expect(done(run)?.gzipEngine).toBeUndefined();
    expect(run.events.filter((event) => event.type === 'retry')).toEqual([]);
  });

  it('writes the layer digest to --digest-file when the blob passes through', async () => {
    const image = await push('digest', buildTar(CLEAN));
    const digestFile = join(work, 'digest.sha256');
    const run = await pull(image.reference, ['--digest-file', digestFile]);
    expect(done(run)?.path).toBe('passthrough');
    const layerDigest = `sha256:${createHash('sha256').update(image.blob).digest('hex')}`;
    expect(await readFile(digestFile, 'utf8')).toBe(`${layerDigest}  ${run.file}\n`);
  });

  it('passes a layer without a root entry through as published (no ./ is added)', async () => {
    const image = await push('noroot', buildTar(CLEAN.slice(1)));
    const run = await pull(image.reference);
    expect(run.code).toBe(0);
    expect((await readFile(run.file)).equals(image.blob)).toBe(true);
    expect(done(run)?.path).toBe('passthrough');
  });

  it('flattens with --no-passthrough, giving the flattener tar', async () => {
    const image = await push('off', buildTar(CLEAN));
    const run = await pull(image.reference, ['--no-passthrough']);
    expect(run.code).toBe(0);
    const bytes = await readFile(run.file);
    expect(bytes.equals(image.blob)).toBe(false);
    expect(done(run)?.path).toBe('flatten');
    expect(done(run)?.gzipEngine).toMatch(/^(native|zlib|pako)$/);
    expect((await listTar(gunzipSync(bytes))).map((entry) => entry.path)).toEqual([
      '.',
      'bin',
      'bin/busybox',
      'bin/sh',
      'bin/ls',
      'etc',
      'etc/os-release',
    ]);
  });

  const FALLBACKS: Array<[string, Buffer, RegExp]> = [
    ['a whiteout', buildTar([...CLEAN, { name: './etc/.wh.motd', type: 'file' }]), /whiteout/],
    ['an opaque marker', buildTar([...CLEAN, { name: './etc/.wh..wh..opq', type: 'file' }]), /whiteout/],
    ['aufs metadata', buildTar([...CLEAN, { name: '.wh..wh.plnk/', type: 'dir' }]), /whiteout or aufs/],
    ['a duplicate path', buildTar([...CLEAN, { name: 'etc/os-release', type: 'file', content: 'ID=second\n' }]), /twice/],
    ['a .. name', buildTar([...CLEAN, { name: '../escape', type: 'file', content: 'x' }]), /needs cleaning/],
    ['an absolute name', buildTar([...CLEAN, { name: '/etc/abs', type: 'file', content: 'x' }]), /absolute/],
    ['a global PAX header', buildTar([{ name: 'pax_global_header', type: 'file', rawTypeflag: 'g', content: '17 comment=hello\n' }, ...CLEAN]), /global/],
    ['no end-of-archive marker', buildTar(CLEAN, { endMarker: false }), /TAR_NO_END_MARKER/],
    [
      'a child under a symlinked parent',
      buildTar([...CLEAN, { name: 'usr/', type: 'dir' }, { name: 'lib', type: 'symlink', linkname: 'usr/lib' }, { name: 'usr/lib/', type: 'dir' }, { name: 'lib/x', type: 'file', content: 'x' }]),
      /before its parent directory/,
    ],
    ['an undeclared parent', buildTar([...CLEAN, { name: 'opt/app/run', type: 'file', content: 'x' }]), /before its parent/],
  ];

  it.each(FALLBACKS)('falls back to the flattened output on the same file for a layer with %s', async (_what, tar, reason) => {
    const image = await push('fallback', tar);
    const run = await pull(image.reference);
    const normal = await pull(image.reference, ['--no-passthrough']);
    expect(normal.code).toBe(0);
    expect(run.code).toBe(0);
    expect(done(run)?.path).toBe('flatten');
    const retries = run.events.filter((event) => event.type === 'retry');
    // The first is the pass-through's; the flatten may start over once more (duplicates).
    expect(retries.length).toBeGreaterThanOrEqual(1);
    expect(retries[0]?.reason).toMatch(/^pass-through not possible: /);
    expect(retries[0]?.reason).toMatch(reason);
    const bytes = await readFile(run.file);
    expect(bytes.equals(image.blob)).toBe(false);
    expect(gunzipSync(bytes).equals(gunzipSync(await readFile(normal.file)))).toBe(true);
  });

  it('fetches a blob damaged in transit once more and still writes the blob: the output does not depend on the network', async () => {
    const proxy = await startFaultProxy({ upstream: registry });
    proxies.push(proxy);
    const image = await push('corrupt', buildTar(CLEAN), proxy.host);
    // skip: the config blob comes first; the layer's first download is the pass-through's.
    proxy.add({ path: /\/blobs\/sha256:[0-9a-f]+$/, method: 'GET', fault: { type: 'corrupt', offset: 200 }, skip: 1 });
    const run = await pull(image.reference);
    expect(run.code).toBe(0);
    expect(proxy.faultsInjected).toBe(1);
    expect(done(run)?.path).toBe('passthrough');
    const retries = run.events.filter((event) => event.type === 'retry');
    expect(retries).toHaveLength(1);
    expect(retries[0]?.what).toMatch(/^layer 0 \(sha256:/);
    expect(retries[0]?.reason).toMatch(/digest/);
    expect((await readFile(run.file)).equals(image.blob)).toBe(true);
  });

  it('falls back to the flattened output after a damaged download when the blob has something to change', async () => {
    const proxy = await startFaultProxy({ upstream: registry });
    proxies.push(proxy);
    const image = await push('corrupt-whiteout', buildTar([...CLEAN, { name: 'etc/.wh.motd', type: 'file' }]), proxy.host);
    const normal = await pull(image.reference, ['--no-passthrough']);
    proxy.add({ path: /\/blobs\/sha256:[0-9a-f]+$/, method: 'GET', fault: { type: 'corrupt', offset: 200 }, skip: 1 });
    const run = await pull(image.reference);
    expect(run.code).toBe(0);
    expect(proxy.faultsInjected).toBe(1);
    expect(done(run)?.path).toBe('flatten');
    expect(gunzipSync(await readFile(run.file)).equals(gunzipSync(await readFile(normal.file)))).toBe(true);
  });

  it('fails with exit 7 and leaves no file when every download of the blob is corrupted', async () => {
    const proxy = await startFaultProxy({ upstream: registry });
    proxies.push(proxy);
    const image = await push('corrupt-always', buildTar(CLEAN), proxy.host);
    proxy.add({ path: /\/blobs\/sha256:[0-9a-f]+$/, method: 'GET', fault: { type: 'corrupt', offset: 200 }, skip: 1, times: Infinity });
    const run = await pull(image.reference);
    expect(run.code).toBe(7);
    expect(existsSync(run.file)).toBe(false);
  });

  it('never passes through to stdout', async () => {
    const image = await push('stdout', buildTar(CLEAN));
    const run = await runInProcess(['pull', '--plain-http', '--format', 'gzip', '--progress', 'json', image.reference], {
      env: { DOCKER_CONFIG: noConfig },
    });
    expect(run.code).toBe(0);
    expect(run.stdout.equals(image.blob)).toBe(false);
    expect(run.stderr).toContain('"path":"flatten"');
    expect((await listTar(gunzipSync(run.stdout))).map((entry) => entry.path)[0]).toBe('.');
  });

  it('records in --if-changed whether pass-through was allowed, and pulls again when that changes', async () => {
    const image = await push('record', buildTar(CLEAN));
    const first = await pull(image.reference, ['--if-changed'], 'record.tar.gz');
    expect(first.code).toBe(0);
    const record = JSON.parse(await readFile(`${first.file}.oci-rootfs.json`, 'utf8')) as { options: { passthrough?: boolean } };
    expect(record.options.passthrough).toBe(true);
    const again = await pull(image.reference, ['--if-changed'], 'record.tar.gz');
    expect(done(again)).toBeUndefined();
    const off = await pull(image.reference, ['--if-changed', '--no-passthrough'], 'record.tar.gz');
    expect(done(off)?.path).toBe('flatten');
  });
});
