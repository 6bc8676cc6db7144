/**
 * The runnable examples of the README (examples/*.mjs), run with `node` against the test
 * registry exactly as a user would run them, importing the built dist/index.js.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { listTar } from '../helpers/listing.js';
import { makeTar, pushImage } from '../helpers/push.js';

const registry = inject('registry');
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const EXAMPLES = join(ROOT, 'examples');
const work = await mkdtemp(join(tmpdir(), 'oci-rootfs-examples-'));
const emptyConfigDir = await mkdtemp(join(tmpdir(), 'oci-rootfs-examples-noconfig-'));
const suffix = randomBytes(4).toString('hex');
const images: string[] = [];

beforeAll(async () => {
  if (!existsSync(join(ROOT, 'dist/index.js'))) throw new Error('dist/index.js is missing: run `npm run build` first');
  // A base with docs, and a top layer that adds more docs and a file: three images of it.
  const base = await makeTar([
    { name: 'etc/', type: 'directory' },
    { name: 'etc/os-release', content: 'ID=example\n' },
    { name: 'usr/', type: 'directory' },
    { name: 'usr/share/', type: 'directory' },
    { name: 'usr/share/doc/', type: 'directory' },
    // Parents listed as image builders list them (the flattener invents undeclared ones).
    { name: 'usr/share/doc/base/', type: 'directory' },
    { name: 'usr/share/doc/base/README', content: 'base docs\n' },
    { name: 'usr/share/zoneinfo', content: 'UTC\n' },
  ]);
  for (let i = 0; i < 3; i++) {
    const top = await makeTar([
      { name: 'usr/share/doc/app/', type: 'directory' },
      { name: 'usr/share/doc/app/README', content: `app ${i} docs\n` },
      { name: 'usr/bin/', type: 'directory' },
      { name: `usr/bin/app${i}`, content: '#!/bin/sh\n', mode: 0o755 },
    ]);
    const repo = `e2e-examples/image${i}-${suffix}`;
    await pushImage(registry, repo, 'v1', { layers: [{ tar: base, compression: 'gzip' }, { tar: top, compression: 'gzip' }] });
    images.push(`${registry}/${repo}:v1`);
  }
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
  await rm(emptyConfigDir, { recursive: true, force: true });
});

function example(name: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    execFile(
      process.execPath,
      [join(EXAMPLES, name), ...args],
      { cwd: work, env: { ...process.env, DOCKER_CONFIG: emptyConfigDir, ...env }, timeout: 60_000 },
      (error, stdout, stderr) => {
        resolvePromise({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : null, stdout, stderr });
      },
    );
  });
}

const pathsOf = async (file: string, gzip = false): Promise<string[]> => {
  const bytes = await readFile(join(work, file));
  return (await listTar(gzip ? gunzipSync(bytes) : bytes)).map((entry) => entry.path);
};

describe('the README examples', () => {
  it('pull-to-file.mjs pipes the rootfs through gzip into a file', async () => {
    const result = await example('pull-to-file.mjs', [images[0] ?? '', 'one.tar.gz']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`^wrote one\\.tar\\.gz \\(\\d+ bytes\\) from ${images[0]?.replace(/[.]/g, '\\.')}\\n$`));
    const paths = await pathsOf('one.tar.gz', true);
    expect(paths).toContain('usr/bin/app0');
    expect(paths).toContain('usr/share/doc/base/README');
  });

  it('pull-to-file.mjs takes the image from OCI_ROOTFS_IMAGE', async () => {
    const result = await example('pull-to-file.mjs', [], { OCI_ROOTFS_IMAGE: images[1] ?? '' });
    expect(result.code, result.stderr).toBe(0);
    expect(await pathsOf('rootfs.tar.gz', true)).toContain('usr/bin/app1');
  });

  it('progress-rxjs.mjs prints percentages, a line per layer and the done totals', async () => {
    const result = await example('progress-rxjs.mjs', [images[0] ?? '', 'progress.tar']);
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines).toContain('100%');
    expect(lines.filter((line) => /^layer [12] done: \d+ entries$/.test(line))).toHaveLength(2);
    expect(lines.some((line) => /^done: \d+ bytes in, \d+ bytes of tar, \d+ entries$/.test(line))).toBe(true);
    expect(lines.at(-1)).toBe('wrote progress.tar');
    expect(await pathsOf('progress.tar')).toContain('usr/bin/app0');
  });

  it('concurrent-pulls.mjs pulls three images, never more than two at a time', async () => {
    const result = await example('concurrent-pulls.mjs', images);
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout.trimEnd().split('\n');
    const running = lines.flatMap((line) => /\(running: (\d+)\)$/.exec(line)?.[1] ?? []).map(Number);
    expect(running).toHaveLength(3);
    expect(Math.max(...running)).toBeLessThanOrEqual(2);
    expect(lines.filter((line) => line.startsWith('done '))).toHaveLength(3);
    expect(lines.at(-1)).toBe('all 3 images pulled, at most 2 at a time');
    for (let i = 0; i < 3; i++) {
      const file = `image${i}-${suffix}-v1.tar`;
      expect(await pathsOf(file)).toContain(`usr/bin/app${i}`);
    }
  });

  it('custom-pipeline.mjs leaves out usr/share/doc from every layer and keeps the rest', async () => {
    const result = await example('custom-pipeline.mjs', [images[2] ?? '', 'nodoc.tar.gz']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/wrote nodoc\.tar\.gz, [1-9]\d* entries under \/usr\/share\/doc left out\n$/);
    const paths = await pathsOf('nodoc.tar.gz', true);
    expect(paths.filter((path) => path.startsWith('usr/share/doc'))).toEqual([]);
    expect(paths).toEqual(expect.arrayContaining(['usr/bin/app2', 'usr/share/zoneinfo', 'etc/os-release']));
  });
});
