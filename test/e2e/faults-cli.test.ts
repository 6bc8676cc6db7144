/**
 * Faults as the command line meets them (DESIGN.md §6): the exit code says which failure it
 * was (6 network after retries, 5 rate limited, 130 interrupted), stderr says it on one
 * line, and no output file (nor its temporary) is left behind. Runs the built CLI in dist/.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { pullRootfs } from '../../src/pull/pull-rootfs.js';
import { MANIFESTS, startFaultProxy, type FaultProxy, type FaultRule } from '../helpers/fault-proxy.js';
import { pushImage, type PushedImage } from '../helpers/push.js';
import { buildTar } from '../helpers/tar-fixture.js';

const registry = inject('registry');
const CLI = join(resolve(dirname(fileURLToPath(import.meta.url)), '../..'), 'dist/cli/main.js');
const configDir = await mkdtemp(join(tmpdir(), 'oci-rootfs-faults-cli-noconfig-'));
const repo = `e2e-faults/cli-${randomBytes(4).toString('hex')}`;
let image: PushedImage;
let expected: Buffer;
let workDir: string;
const proxies: FaultProxy[] = [];

beforeAll(async () => {
  image = await pushImage(registry, repo, 'v1', {
    layers: [{ tar: buildTar([{ name: 'data.bin', type: 'file', content: randomBytes(200_000) }]), compression: 'gzip' }],
  });
  const chunks: Buffer[] = [];
  for await (const chunk of pullRootfs(`${registry}/${repo}:v1`, { plainHttp: true, dockerConfigDir: configDir })) {
    chunks.push(chunk as Buffer);
  }
  expected = Buffer.concat(chunks);
});

afterEach(async () => {
  await Promise.all(proxies.splice(0).map((p) => p.close()));
  if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
});

afterAll(async () => {
  await rm(configDir, { recursive: true, force: true });
});

async function proxy(...rules: FaultRule[]): Promise<FaultProxy> {
  const started = await startFaultProxy({ upstream: registry });
  started.add(...rules);
  proxies.push(started);
  return started;
}

const blobPath = (): RegExp => new RegExp(`/blobs/${image.layers[0]?.digest ?? 'missing'}$`);

interface Run {
  code: number | null;
  stderr: string;
  seconds: number;
}

/** Runs `oci-rootfs pull` against `host`, writing `out.tar` in a fresh directory. */
async function runCli(host: string, args: string[], whileRunning?: (child: ReturnType<typeof spawn>) => Promise<void>): Promise<Run> {
  workDir = await mkdtemp(join(tmpdir(), 'oci-rootfs-faults-cli-'));
  const started = performance.now();
  const child = spawn(process.execPath, [CLI, 'pull', '--plain-http', `${host}/${repo}:v1`, '-o', join(workDir, 'out.tar'), ...args], {
    env: { ...process.env, DOCKER_CONFIG: configDir },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  if (whileRunning !== undefined) await whileRunning(child);
  const code = await exited;
  return { code, stderr, seconds: (performance.now() - started) / 1000 };
}

const lines = (text: string): string[] => text.split('\n').filter((line) => line !== '');

describe('oci-rootfs pull through a faulty network', () => {
  it('exits 6 with one line naming the manifest and the attempts when the registry stays down, leaving no file', async () => {
    const p = await proxy({ path: MANIFESTS, fault: { type: 'status', status: 503 }, times: Infinity });
    const run = await runCli(p.host, ['--retries', '1']);
    expect(run.code).toBe(6);
    expect(lines(run.stderr)).toHaveLength(1);
    expect(run.stderr).toMatch(/^oci-rootfs: manifest .*HTTP 503.*\(gave up after 2 attempts\)\n$/);
    expect(p.requests(MANIFESTS)).toHaveLength(2);
    expect(await readdir(workDir)).toEqual([]);
  });

  it('exits 5 at once when the registry asks to come back later than --max-wait allows', async () => {
    const p = await proxy({
      path: MANIFESTS,
      fault: { type: 'rate-limit', retryAfter: '30', limit: '100;w=21600', remaining: '0;w=21600' },
      times: Infinity,
    });
    const run = await runCli(p.host, ['--max-wait', '5']);
    expect(run.code).toBe(5);
    expect(lines(run.stderr)).toHaveLength(1);
    expect(run.stderr).toMatch(/retry after 30 s \(at .*\); ratelimit-remaining 0;w=21600, ratelimit-limit 100;w=21600/);
    expect(p.requests(MANIFESTS)).toHaveLength(1);
    expect(await readdir(workDir)).toEqual([]);
  });

  it('resumes a stalled layer after --timeout and writes the same bytes as an undisturbed pull', async () => {
    const p = await proxy({ path: blobPath(), fault: { type: 'stall', afterBytes: 50_000 } });
    const run = await runCli(p.host, ['--timeout', '0.3']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect((await readFile(join(workDir, 'out.tar'))).equals(expected)).toBe(true);
    expect(p.requests(blobPath()).map((r) => r.range)).toEqual([undefined, 'bytes=50000-']);
  });

  it('exits 130 within 5 s of Ctrl-C in a stalled download, removes the partial file and closes its sockets', async () => {
    const p = await proxy({ path: blobPath(), fault: { type: 'stall', afterBytes: 50_000 } });
    let interrupted = 0;
    const run = await runCli(p.host, [], async (child) => {
      const deadline = performance.now() + 20_000;
      while (p.bytesServed(blobPath()) < 50_000 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      interrupted = performance.now();
      child.kill('SIGINT');
    });
    expect(run.code).toBe(130);
    expect(performance.now() - interrupted).toBeLessThan(5000);
    expect(await readdir(workDir)).toEqual([]);
    await p.waitForNoSockets(2000);
  });
});
