/**
 * `pull -o rootfs.tar.gz` with each gzip engine (native = libdeflate, zlib, pako), run as
 * the built CLI against the real test registry: the gzip bytes are the engine's own, the
 * tar inside is the same byte for byte, and the engine is named where the bytes are
 * described (the `done` event, the --if-changed record). .ci/run runs this file a second
 * time with OCI_ROOTFS_NATIVE=0, where the default is zlib and `native` is refused.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { CompressorEngine } from '../../src/streams/compress.js';
import { nativeDisabled } from '../../src/native-addon.js';
import { makeTar, pushImage } from '../helpers/push.js';

const registry = inject('registry');
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = join(ROOT, 'dist/cli/main.js');
const work = await mkdtemp(join(tmpdir(), 'oci-rootfs-gzip-engines-'));
const emptyConfigDir = await mkdtemp(join(tmpdir(), 'oci-rootfs-gzip-engines-noconfig-'));
const reference = `${registry}/e2e-gzip-engines/image-${randomBytes(4).toString('hex')}:v1`;

/** The engines this run can use, and the one a pull takes when none is asked for. */
const ENGINES: CompressorEngine[] = nativeDisabled() ? ['zlib', 'pako'] : ['native', 'zlib', 'pako'];
const DEFAULT_ENGINE: CompressorEngine = nativeDisabled() ? 'zlib' : 'native';

interface Run {
  code: number | null;
  stderr: string;
}

function cli(args: string[], cwd: string): Promise<Run> {
  return new Promise((resolvePromise) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { cwd, env: { ...process.env, DOCKER_CONFIG: emptyConfigDir }, timeout: 120_000 },
      (error, _stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
        resolvePromise({ code, stderr });
      },
    );
  });
}

/** The `done` event of a `--progress json` run. */
function doneEvent(run: Run): Record<string, unknown> {
  const events = run.stderr
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  const done = events.find((event) => event['type'] === 'done');
  if (done === undefined) throw new Error(`no done event in: ${run.stderr}`);
  return done;
}

let tar: Buffer;

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (\`npm test\` does)`);
  // Over 2 MiB of rootfs, so the parallel engines write several members.
  const text = Buffer.from(Array.from({ length: 60_000 }, (_, i) => `usr/share/doc/line ${i} ${i % 97}\n`).join(''));
  const layers = [
    await makeTar([{ name: 'etc/', type: 'directory' }, { name: 'etc/os-release', content: 'ID=engines\n' }, { name: 'usr/share/doc/a.txt', content: text }]),
    await makeTar([{ name: 'usr/lib/blob.bin', content: randomBytes(900_000) }, { name: 'usr/share/doc/b.txt', content: text.subarray(0, 700_000) }]),
  ];
  await pushImage(registry, reference.slice(registry.length + 1, reference.lastIndexOf(':')), 'v1', {
    layers: layers.map((layer) => ({ tar: layer, compression: 'gzip' as const })),
  });
  const dir = await mkdtemp(join(work, 'tar-'));
  const plain = await cli(['pull', reference, '-o', 'rootfs.tar'], dir);
  expect(plain.code, plain.stderr).toBe(0);
  tar = await readFile(join(dir, 'rootfs.tar'));
  expect(tar.length).toBeGreaterThan(2 * 1024 * 1024);
}, 120_000);

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
  await rm(emptyConfigDir, { recursive: true, force: true });
});

describe('pull -o rootfs.tar.gz with each gzip engine', () => {
  it('writes the same tar inside, byte for byte, and names the engine in the done event', async () => {
    const outputs = new Map<CompressorEngine, Buffer>();
    for (const engine of ENGINES) {
      const dir = await mkdtemp(join(work, `${engine}-`));
      const run = await cli(['pull', reference, '-o', 'rootfs.tar.gz', '--gzip-engine', engine, '--progress', 'json'], dir);
      expect(run.code, run.stderr).toBe(0);
      expect(doneEvent(run)['gzipEngine']).toBe(engine);
      const gz = await readFile(join(dir, 'rootfs.tar.gz'));
      expect(gunzipSync(gz).equals(tar), `${engine}: gunzip gives the .tar output`).toBe(true);
      // GNU gzip agrees (one member for pako, several for the parallel engines).
      expect(execFileSync('gzip', ['-dc'], { input: gz, maxBuffer: 64 * 1024 * 1024 }).equals(tar)).toBe(true);
      outputs.set(engine, gz);
    }
    if (outputs.has('native')) expect(outputs.get('native')?.equals(outputs.get('zlib') as Buffer)).toBe(false);
  });

  it('gives the same bytes twice with the same engine, and uses the default engine when none is asked for', async () => {
    const dir = await mkdtemp(join(work, 'default-'));
    const first = await cli(['pull', reference, '-o', 'a.tar.gz', '--progress', 'json'], dir);
    expect(first.code, first.stderr).toBe(0);
    expect(doneEvent(first)['gzipEngine']).toBe(DEFAULT_ENGINE);
    const second = await cli(['pull', reference, '-o', 'b.tar.gz', '--gzip-engine', DEFAULT_ENGINE], dir);
    expect(second.code, second.stderr).toBe(0);
    expect((await readFile(join(dir, 'a.tar.gz'))).equals(await readFile(join(dir, 'b.tar.gz')))).toBe(true);
  });

  it('leaves the engine out of the done event of a tar output', async () => {
    const dir = await mkdtemp(join(work, 'tar-event-'));
    const run = await cli(['pull', reference, '-o', 'rootfs.tar', '--progress', 'json'], dir);
    expect(run.code, run.stderr).toBe(0);
    expect(doneEvent(run)).not.toHaveProperty('gzipEngine');
  });

  it('records the engine for --if-changed: up to date with the same engine, pulled again with another', async () => {
    const dir = await mkdtemp(join(work, 'if-changed-'));
    const [engine, other] = ENGINES as [CompressorEngine, CompressorEngine];
    const first = await cli(['pull', '--if-changed', reference, '-o', 'rootfs.tar.gz', '--gzip-engine', engine], dir);
    expect(first.code, first.stderr).toBe(0);
    const record = JSON.parse(await readFile(join(dir, 'rootfs.tar.gz.oci-rootfs.json'), 'utf8')) as { options: Record<string, unknown> };
    expect(record.options).toEqual({ platform: null, format: 'gzip', expandSparse: false, level: 6, gzipEngine: engine, passthrough: true });

    const same = await cli(['pull', '--if-changed', reference, '-o', 'rootfs.tar.gz', '--gzip-engine', engine], dir);
    expect(same.code, same.stderr).toBe(0);
    expect(same.stderr).toContain('is up to date');

    const before = await stat(join(dir, 'rootfs.tar.gz'));
    const switched = await cli(['pull', '--if-changed', '--progress', 'plain', reference, '-o', 'rootfs.tar.gz', '--gzip-engine', other], dir);
    expect(switched.code, switched.stderr).toBe(0);
    expect(switched.stderr).not.toContain('is up to date');
    expect((await stat(join(dir, 'rootfs.tar.gz'))).mtimeMs).not.toBe(before.mtimeMs);
    const rewritten = JSON.parse(await readFile(join(dir, 'rootfs.tar.gz.oci-rootfs.json'), 'utf8')) as { options: Record<string, unknown> };
    expect(rewritten.options['gzipEngine']).toBe(other);
    expect(gunzipSync(await readFile(join(dir, 'rootfs.tar.gz'))).equals(tar)).toBe(true);
  });
});
