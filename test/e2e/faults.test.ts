/**
 * Faults between us and the registry (issue #4): never lose a byte, never hang, never leak.
 * Every case pulls a real image from the real registry through the fault-injecting proxy
 * and compares the output with an undisturbed pull of the same image, byte for byte; the
 * proxy's log says what the client really sent (ranges, how many tries, how far apart).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  AbortError,
  AuthError,
  DigestMismatchError,
  ExitCode,
  NetworkError,
  NotFoundError,
  OciRootfsError,
  RateLimitError,
} from '../../src/errors.js';
import type { PullEvent } from '../../src/pull/events.js';
import { pullRootfs } from '../../src/pull/pull-rootfs.js';
import { BLOBS, MANIFESTS, TOKEN, startFaultProxy, type FaultProxy, type FaultRule } from '../helpers/fault-proxy.js';
import { pushImage, type PushedImage } from '../helpers/push.js';
import { buildTar } from '../helpers/tar-fixture.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const registry = inject('registry');
const emptyConfigDir = await mkdtemp(join(tmpdir(), 'oci-rootfs-faults-noconfig-'));
const repo = `e2e-faults/image-${randomBytes(4).toString('hex')}`;

/** Retries without the waiting, so a test of six tries takes milliseconds. */
const FAST = { retryBaseDelayMs: 1, retryMaxDelayMs: 5 } as const;

let image: PushedImage;
let expected: Buffer;
const proxies: FaultProxy[] = [];

beforeAll(async () => {
  // Random contents do not compress: each layer blob is about as large as its files, so a
  // cut "after 50 000 bytes" lands in the middle of a body.
  const layer = (name: string, size: number): Buffer =>
    buildTar([
      { name: `${name}/`, type: 'dir' },
      { name: `${name}/data.bin`, type: 'file', content: randomBytes(size) },
      { name: `${name}/note.txt`, type: 'file', content: `layer ${name}\n` },
    ]);
  image = await pushImage(registry, repo, 'v1', {
    layers: [
      { tar: layer('base', 300_000), compression: 'gzip' },
      { tar: layer('middle', 150_000), compression: 'gzip' },
      { tar: layer('top', 2_000), compression: 'none' },
    ],
  });
  expected = (await pull(registry)).bytes;
});

afterEach(async () => {
  await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
});

afterAll(async () => {
  await rm(emptyConfigDir, { recursive: true, force: true });
});

async function proxy(...rules: FaultRule[]): Promise<FaultProxy> {
  const started = await startFaultProxy({ upstream: registry });
  started.add(...rules);
  proxies.push(started);
  return started;
}

async function bearerProxy(...rules: FaultRule[]): Promise<FaultProxy> {
  const started = await startFaultProxy({ upstream: registry, bearer: {} });
  started.add(...rules);
  proxies.push(started);
  return started;
}

type PullApiOptions = NonNullable<Parameters<typeof pullRootfs>[1]>;

interface PullResult {
  bytes: Buffer;
  events: PullEvent[];
}

async function pull(host: string, options: PullApiOptions = {}): Promise<PullResult> {
  const events: PullEvent[] = [];
  const chunks: Buffer[] = [];
  const stream = pullRootfs(`${host}/${repo}:v1`, {
    dockerConfigDir: emptyConfigDir,
    plainHttp: true,
    ...options,
    onEvent: (event) => {
      events.push(event);
      options.onEvent?.(event);
    },
  });
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return { bytes: Buffer.concat(chunks), events };
}

/** The error a pull fails with, and its events. */
async function pullFailure(host: string, options: PullApiOptions = {}): Promise<{ error: unknown; events: PullEvent[] }> {
  const events: PullEvent[] = [];
  const error = await pull(host, { ...options, onEvent: (event) => events.push(event) }).then(
    () => new Error('the pull succeeded'),
    (caught: unknown) => caught,
  );
  return { error, events };
}

const ofType = <T extends PullEvent['type']>(events: PullEvent[], type: T): Array<Extract<PullEvent, { type: T }>> =>
  events.filter((event): event is Extract<PullEvent, { type: T }> => event.type === type);

function layerPath(index: number): RegExp {
  const digest = image.layers[index]?.digest ?? 'missing';
  return new RegExp(`/blobs/${digest}$`);
}

describe('a layer body that breaks off', () => {
  it('resumes with Range from the byte it stopped at and writes exactly the undisturbed output', async () => {
    const p = await proxy({ path: layerPath(0), fault: { type: 'cut', afterBytes: 50_000 } });
    const { bytes, events } = await pull(p.host, FAST);
    expect(bytes.equals(expected)).toBe(true);
    const requests = p.requests(layerPath(0));
    expect(requests.map((r) => r.range)).toEqual([undefined, 'bytes=50000-']);
    expect(requests[1]?.status).toBe(206);
    expect(ofType(events, 'resume')).toEqual([{ type: 'resume', index: 0, offset: 50_000 }]);
    // Nothing was downloaded twice.
    expect(p.bytesServed(layerPath(0))).toBe(image.layers[0]?.size);
    await p.waitForNoSockets();
  });

  it('resumes a body broken again and again, each time from where the last one stopped', async () => {
    const p = await proxy({ path: layerPath(0), fault: { type: 'cut', afterBytes: 20_000 }, times: 4 });
    const { bytes, events } = await pull(p.host, { ...FAST, retries: 2 });
    expect(bytes.equals(expected)).toBe(true);
    // Progress between breaks starts the count over: four breaks pass with two retries.
    expect(ofType(events, 'resume').map((e) => e.offset)).toEqual([20_000, 40_000, 60_000, 80_000]);
    expect(p.requests(layerPath(0)).map((r) => r.range)).toEqual([
      undefined,
      'bytes=20000-',
      'bytes=40000-',
      'bytes=60000-',
      'bytes=80000-',
    ]);
  });

  it('resumes after a connection reset in the middle of a body', async () => {
    const p = await proxy({ path: layerPath(1), fault: { type: 'reset', afterBytes: 30_000 } });
    const { bytes, events } = await pull(p.host, FAST);
    expect(bytes.equals(expected)).toBe(true);
    // How much of the body got through before the RST is up to the kernels; whatever did
    // is asked for no more.
    const resume = ofType(events, 'resume')[0];
    const requests = p.requests(layerPath(1));
    expect(requests).toHaveLength(2);
    expect(requests[1]?.range).toBe(resume === undefined ? undefined : `bytes=${resume.offset}-`);
    expect(resume?.index ?? 1).toBe(1);
  });

  it('reads a server that answers the Range with 200 from byte 0, checking and dropping what it had', async () => {
    const p = await proxy(
      { path: layerPath(0), fault: { type: 'cut', afterBytes: 50_000 } },
      { path: layerPath(0), fault: { type: 'ignore-range' } },
    );
    const { bytes, events } = await pull(p.host, FAST);
    expect(bytes.equals(expected)).toBe(true);
    const requests = p.requests(layerPath(0));
    expect(requests[1]).toMatchObject({ range: 'bytes=50000-', status: 200 });
    expect(ofType(events, 'resume')).toEqual([{ type: 'resume', index: 0, offset: 50_000 }]);
    // The repeated 50 000 bytes are all that came twice.
    expect(p.bytesServed(layerPath(0))).toBe((image.layers[0]?.size ?? 0) + 50_000);
  });

  it('fails with ERR_DIGEST_MISMATCH when the restarted body differs in bytes it had already passed on', async () => {
    // The first answer has a byte of file content flipped and breaks after it; the second
    // ignores the Range and sends the blob as it is, so its first bytes do not match. (The
    // uncompressed top layer: in a gzip layer the inflater would notice the flip first.)
    const p = await proxy(
      { path: layerPath(2), fault: [{ type: 'corrupt', offset: 1500 }, { type: 'cut', afterBytes: 2500 }] },
      { path: layerPath(2), fault: { type: 'ignore-range' } },
    );
    const { error } = await pullFailure(p.host, FAST);
    expect(error).toBeInstanceOf(DigestMismatchError);
    expect((error as Error).message).toMatch(/restarted the body from byte 0 with different bytes/);
    expect((error as OciRootfsError).exitCode).toBe(ExitCode.integrity);
    // Integrity failures are never retried.
    expect(p.requests(layerPath(2))).toHaveLength(2);
  });

  it('resumes a body that stalls, once the idle timeout fires', async () => {
    const p = await proxy({ path: layerPath(0), fault: { type: 'stall', afterBytes: 40_000 } });
    const started = performance.now();
    const { bytes, events } = await pull(p.host, { ...FAST, timeoutMs: 300 });
    expect(bytes.equals(expected)).toBe(true);
    expect(performance.now() - started).toBeLessThan(10_000);
    expect(ofType(events, 'retry')[0]?.reason).toMatch(/layer 0 .*stalled/);
    expect(ofType(events, 'resume')).toEqual([{ type: 'resume', index: 0, offset: 40_000 }]);
  });

  it('gives up with NetworkError naming the layer and the attempts when every try breaks without progress', async () => {
    const p = await proxy({ path: layerPath(1), fault: { type: 'reset' }, times: Infinity });
    const { error, events } = await pullFailure(p.host, { ...FAST, retries: 3 });
    expect(error).toBeInstanceOf(NetworkError);
    expect((error as OciRootfsError).exitCode).toBe(ExitCode.network);
    expect((error as Error).message).toContain(`blob ${image.layers[1]?.digest} of 127.0.0.1:`);
    expect((error as Error).message).toMatch(/ECONNRESET.*\(gave up after 4 attempts\)$/);
    expect(p.requests(layerPath(1))).toHaveLength(4);
    expect(ofType(events, 'retry').map((e) => e.attempt)).toEqual([1, 2, 3]);
  });
});

describe('transient failures of requests', () => {
  it.each([
    ['the token', TOKEN],
    ['the manifest', MANIFESTS],
    ['a blob', BLOBS],
  ] as const)('retries %s after 500, 502, 503, 504 and a reset, and the output is unchanged', async (_what, path) => {
    const p = await bearerProxy(
      { path, fault: { type: 'status', status: 500 } },
      { path, fault: { type: 'status', status: 502 } },
      { path, fault: { type: 'status', status: 503 } },
      { path, fault: { type: 'status', status: 504 } },
      { path, fault: { type: 'reset' } },
    );
    const { bytes, events } = await pull(p.host, FAST);
    expect(bytes.equals(expected)).toBe(true);
    const retries = ofType(events, 'retry');
    expect(retries.map((e) => e.attempt)).toEqual([1, 2, 3, 4, 5]);
    expect(retries.map((e) => e.reason).join('\n')).toMatch(/HTTP 500[^]*HTTP 502[^]*HTTP 503[^]*HTTP 504/);
    expect(p.faultsInjected).toBe(5);
  });

  it('gives up after the retries with NetworkError naming what failed and how many attempts', async () => {
    const p = await proxy({ path: MANIFESTS, fault: { type: 'status', status: 503 }, times: Infinity });
    const { error, events } = await pullFailure(p.host, { ...FAST, retries: 2 });
    expect(error).toBeInstanceOf(NetworkError);
    expect((error as OciRootfsError).exitCode).toBe(ExitCode.network);
    expect((error as Error).message).toMatch(/^manifest 127\.0\.0\.1:\d+\/e2e-faults\/.*: HTTP 503 .*\(gave up after 3 attempts\)$/);
    expect(p.requests(MANIFESTS)).toHaveLength(3);
    expect(ofType(events, 'retry')).toHaveLength(2);
  });

  it('retries a manifest whose body breaks off', async () => {
    const p = await proxy({ path: MANIFESTS, fault: { type: 'cut', afterBytes: 40 } });
    const { bytes } = await pull(p.host, FAST);
    expect(bytes.equals(expected)).toBe(true);
    expect(p.requests(MANIFESTS)).toHaveLength(2);
  });

  it('retries a request that gets no response headers within the timeout', async () => {
    const p = await proxy({ path: MANIFESTS, fault: { type: 'stall' } });
    const { bytes, events } = await pull(p.host, { ...FAST, timeoutMs: 300 });
    expect(bytes.equals(expected)).toBe(true);
    expect(ofType(events, 'retry')[0]?.reason).toMatch(/timed out waiting for the response headers/);
  });

  it('does not retry what cannot get better: an unknown tag fails at once', async () => {
    const p = await proxy();
    const events: PullEvent[] = [];
    const error = await (async () => {
      for await (const _chunk of pullRootfs(`${p.host}/${repo}:nope`, {
        dockerConfigDir: emptyConfigDir,
        plainHttp: true,
        onEvent: (event) => events.push(event),
      }));
    })().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(NotFoundError);
    expect(p.requests(MANIFESTS)).toHaveLength(1);
    expect(ofType(events, 'retry')).toEqual([]);
  });
});

describe('rate limits (429)', () => {
  it('waits what Retry-After asks, says so in rate-limit events, and never comes back sooner', async () => {
    const p = await proxy({
      path: MANIFESTS,
      fault: { type: 'rate-limit', retryAfter: '1', limit: '100;w=21600', remaining: '0;w=21600' },
      times: 2,
    });
    const { bytes, events } = await pull(p.host, FAST);
    expect(bytes.equals(expected)).toBe(true);
    expect(ofType(events, 'rate-limit')).toEqual([
      { type: 'rate-limit', limit: '100;w=21600', remaining: '0;w=21600', retryAfterSeconds: 1 },
      { type: 'rate-limit', limit: '100;w=21600', remaining: '0;w=21600', retryAfterSeconds: 1 },
    ]);
    const arrivals = p.requests(MANIFESTS).map((r) => r.at);
    expect(arrivals).toHaveLength(3);
    for (let i = 1; i < arrivals.length; i++) expect((arrivals[i] ?? 0) - (arrivals[i - 1] ?? 0)).toBeGreaterThanOrEqual(995);
  });

  it('honours Retry-After given as an HTTP date', async () => {
    const p = await proxy({
      path: layerPath(2),
      fault: { type: 'rate-limit', retryAfter: new Date(Date.now() + 2000).toUTCString() },
    });
    const { bytes, events } = await pull(p.host, FAST);
    expect(bytes.equals(expected)).toBe(true);
    const seconds = ofType(events, 'rate-limit')[0]?.retryAfterSeconds ?? 0;
    expect(seconds).toBeGreaterThanOrEqual(1);
    expect(seconds).toBeLessThanOrEqual(2);
    const [first, second] = p.requests(layerPath(2));
    expect((second?.at ?? 0) - (first?.at ?? 0)).toBeGreaterThanOrEqual(seconds * 1000 - 5);
  });

  it('fails at once with RateLimitError saying when to retry and the quota when Retry-After is past maxWait', async () => {
    const p = await proxy({
      path: MANIFESTS,
      fault: { type: 'rate-limit', retryAfter: '120', limit: '100;w=21600', remaining: '0;w=21600' },
      times: Infinity,
    });
    const started = performance.now();
    const { error } = await pullFailure(p.host, { ...FAST, maxWaitMs: 60_000 });
    expect(performance.now() - started).toBeLessThan(2000);
    expect(error).toBeInstanceOf(RateLimitError);
    expect((error as OciRootfsError).exitCode).toBe(ExitCode.rateLimited);
    const message = (error as Error).message;
    expect(message).toMatch(/retry after 120 s \(at \d{4}-\d\d-\d\dT/);
    expect(message).toMatch(/ratelimit-remaining 0;w=21600, ratelimit-limit 100;w=21600/);
    expect(message).toMatch(/longer than the 60 s allowed/);
    // Never hammer: one request, no retries.
    expect(p.requests(MANIFESTS)).toHaveLength(1);
  });

  it('stops after the retries when the registry keeps answering 429, with at most retries + 1 requests', async () => {
    const p = await proxy({ path: layerPath(2), fault: { type: 'rate-limit', retryAfter: '0' }, times: Infinity });
    const { error, events } = await pullFailure(p.host, { retries: 2, retryBaseDelayMs: 100, retryMaxDelayMs: 100 });
    expect(error).toBeInstanceOf(RateLimitError);
    expect((error as Error).message).toMatch(/still rate limited after 3 attempts/);
    const arrivals = p.requests(layerPath(2)).map((r) => r.at);
    expect(arrivals).toHaveLength(3);
    // Retry-After: 0 is no licence to hammer: the backoff still spaces the tries.
    for (let i = 1; i < arrivals.length; i++) expect((arrivals[i] ?? 0) - (arrivals[i - 1] ?? 0)).toBeGreaterThanOrEqual(45);
    expect(ofType(events, 'rate-limit')).toHaveLength(2);
  });
});

describe('tokens that expire during a pull', () => {
  it('fetches a new token when the registry starts answering 401, and goes on from where the blob stopped', async () => {
    const p = await bearerProxy(
      { path: layerPath(0), fault: { type: 'cut', afterBytes: 60_000 } },
      { path: layerPath(0), fault: { type: 'unauthorized' } },
    );
    const { bytes, events } = await pull(p.host, FAST);
    expect(bytes.equals(expected)).toBe(true);
    expect(p.tokensIssued).toBe(2);
    const requests = p.requests(layerPath(0));
    expect(requests.map((r) => [r.range, r.status])).toEqual([
      [undefined, 200],
      ['bytes=60000-', 401],
      ['bytes=60000-', 206],
    ]);
    expect(requests[1]?.authorization).toBe('Bearer t1');
    expect(requests[2]?.authorization).toBe('Bearer t2');
    expect(ofType(events, 'resume')).toEqual([{ type: 'resume', index: 0, offset: 60_000 }]);
  });

  it('fails with AuthError when a fresh token is refused too', async () => {
    const p = await bearerProxy({ path: layerPath(1), fault: { type: 'unauthorized' }, times: Infinity });
    const { error } = await pullFailure(p.host, FAST);
    expect(error).toBeInstanceOf(AuthError);
    expect(p.requests(layerPath(1))).toHaveLength(2);
  });
});

describe('aborting', () => {
  it('stops a pull stalled in a body at once and leaves no socket open', async () => {
    const p = await proxy({ path: layerPath(0), fault: { type: 'stall', afterBytes: 10_000 } });
    const controller = new AbortController();
    const pulling = pull(p.host, { ...FAST, signal: controller.signal }).catch((caught: unknown) => caught);
    await until(() => p.requests(layerPath(0)).length > 0 && p.bytesServed(layerPath(0)) >= 10_000);
    const started = performance.now();
    controller.abort();
    const error = await pulling;
    expect(performance.now() - started).toBeLessThan(5000);
    expect(error).toBeInstanceOf(AbortError);
    await p.waitForNoSockets(2000);
  });

  it('stops a pull waiting to retry at once', async () => {
    const p = await proxy({ path: MANIFESTS, fault: { type: 'status', status: 503 }, times: Infinity });
    const controller = new AbortController();
    const pulling = pull(p.host, { retryBaseDelayMs: 30_000, retryMaxDelayMs: 30_000, signal: controller.signal }).catch(
      (caught: unknown) => caught,
    );
    await until(() => p.requests(MANIFESTS).length > 0);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const started = performance.now();
    controller.abort();
    expect(await pulling).toBeInstanceOf(AbortError);
    expect(performance.now() - started).toBeLessThan(5000);
    await p.waitForNoSockets(2000);
  });

  it('leaves no socket open after a pull that succeeded despite faults', async () => {
    const p = await proxy(
      { path: layerPath(0), fault: { type: 'cut', afterBytes: 10_000 } },
      { path: layerPath(1), fault: { type: 'status', status: 502 } },
    );
    const { bytes } = await pull(p.host, FAST);
    expect(bytes.equals(expected)).toBe(true);
    await p.waitForNoSockets(2000);
    expect(process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length).toBeLessThan(5);
  });
});

async function until(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
