/**
 * The small-file queue of `unpack` on its own: with the fs addon, files and directories go
 * to the thread pool in batches, several at once; without it, each file is node:fs calls.
 * Whatever the batching, a directory exists before anything is made in it, every file gets
 * its bytes and metadata, and a failure names its entry.
 */
import { constants, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OciRootfsError } from '../../src/errors.js';
import { BatchedFileJobs, PooledFileJobs, type FileJobs } from '../../src/unpack/file-jobs.js';
import { loadNativeFs, type NativeFsBinding } from '../../src/unpack/native-fs.js';

const CREATE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

function addon(): NativeFsBinding {
  const loaded = loadNativeFs({});
  if (loaded === undefined) throw new Error('the fs addon is not built: npm ci (or node native/install.mjs) on Linux with a C compiler');
  return loaded;
}

/** The addon, each batch held back a little, with a log of when batches start and end. */
function slowAddon(log: string[]): NativeFsBinding {
  const real = addon();
  let next = 0;
  return {
    ...real,
    writeBatch(meta, paths, bodies, results, callback) {
      const id = next++;
      log.push(`start ${id}`);
      setTimeout(
        () =>
          real.writeBatch(meta, paths, bodies, results, (error) => {
            log.push(`end ${id}`);
            callback(error);
          }),
        15,
      );
    },
  };
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'oci-file-jobs-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const file = (rel: string, body: string, mode = 0o644, mtime = 1_600_000_000) => ({
  path: Buffer.from(join(dir, rel)),
  flags: CREATE,
  body: body === '' ? [] : [Buffer.from(body.slice(0, 1)), Buffer.from(body.slice(1))],
  mode,
  mtime,
});

describe('the batched file queue (fs addon)', () => {
  it('makes nested directories one batch after another: a batch never starts before the one making its parent ended', async () => {
    const log: string[] = [];
    const jobs = new BatchedFileJobs(slowAddon(log), 1, 1024 * 1024, 2);
    let key = '';
    for (let depth = 0; depth < 6; depth++) {
      key = key === '' ? `d${depth}` : `${key}/d${depth}`;
      await jobs.addDirectory(key, { path: Buffer.from(join(dir, key)) });
      await jobs.add(`${key}/f`, file(`${key}/f`, `file at depth ${depth}`));
    }
    await jobs.drain();
    // Batch 2i makes d_i, 2i+1 the file in it; d_i+1 is made in d_i too. Each of them
    // starts only after the batch that made its parent ended.
    for (let batch = 1; batch < 12; batch++) {
      const parent = batch % 2 === 1 ? batch - 1 : batch - 2;
      expect(log.indexOf(`end ${parent}`), `batch ${batch} in ${log.join(', ')}`).toBeLessThan(log.indexOf(`start ${batch}`));
    }
    expect(log).toHaveLength(24);
    expect(readFileSync(join(dir, key, 'f'), 'utf8')).toBe('file at depth 5');
    expect(lstatSync(join(dir, 'd0/d1/d2')).isDirectory()).toBe(true);
  });

  it('runs batches of unrelated files side by side, up to its limit', async () => {
    const log: string[] = [];
    const jobs = new BatchedFileJobs(slowAddon(log), 1, 1024 * 1024, 2);
    for (let i = 0; i < 6; i++) await jobs.add(`f${i}`, file(`f${i}`, `body ${i}`, 0o640, 1_500_000_000 + i));
    await jobs.drain();
    expect(log.slice(0, 2)).toEqual(['start 0', 'start 1']);
    expect(log.filter((line) => line.startsWith('end'))).toHaveLength(6);
    for (let i = 0; i < 6; i++) {
      expect(readFileSync(join(dir, `f${i}`), 'utf8')).toBe(`body ${i}`);
      expect(lstatSync(join(dir, `f${i}`)).mode & 0o7777).toBe(0o640);
      expect(lstatSync(join(dir, `f${i}`)).mtimeMs).toBe((1_500_000_000 + i) * 1000);
    }
  });

  it('gathers files into one batch while the event loop is busy, and a settle sends the batch at once', async () => {
    const log: string[] = [];
    const jobs = new BatchedFileJobs(slowAddon(log), 256, 1024 * 1024, 2);
    for (let i = 0; i < 50; i++) await jobs.add(`f${i}`, file(`f${i}`, `body ${i}`));
    expect(jobs.size).toBe(50);
    await jobs.settle('f49');
    expect(log).toEqual(['start 0', 'end 0']);
    expect(jobs.size).toBe(0);
    expect(readFileSync(join(dir, 'f0'), 'utf8')).toBe('body 0');
  });
});

describe.each([
  ['the batched file queue (fs addon)', () => new BatchedFileJobs(addon(), 4)],
  ['the node:fs file queue', () => new PooledFileJobs(4)],
])('%s', (_name, make: () => FileJobs) => {
  it('replaces an earlier file at the same path once it is settled', async () => {
    const jobs = make();
    await jobs.add('f', file('f', 'first'));
    await jobs.settle('f');
    await jobs.add('f', file('f', 'second, longer', 0o600));
    await jobs.drain();
    expect(readFileSync(join(dir, 'f'), 'utf8')).toBe('second, longer');
    expect(lstatSync(join(dir, 'f')).mode & 0o7777).toBe(0o600);
  });

  it('fails with an error naming the entry when a file cannot be made, and refuses more work after it', async () => {
    const jobs = make();
    mkdirSync(join(dir, 'taken'));
    for (let i = 0; i < 3; i++) await jobs.add(`ok${i}`, file(`ok${i}`, 'fine'));
    await jobs.add('taken', file('taken', 'x'));
    const error = await jobs.drain().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OciRootfsError);
    expect((error as Error).message).toMatch(/^cannot unpack "taken": EEXIST: file already exists, open '.*taken'$/);
    expect(((error as Error).cause as NodeJS.ErrnoException).code).toBe('EEXIST');
    await expect(jobs.add('later', file('later', 'x'))).rejects.toBe(error);
    expect(readFileSync(join(dir, 'ok2'), 'utf8')).toBe('fine');
  });
});
