import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, pipeline, Readable, Writable } from 'node:stream';
import { setTimeout } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OciRootfsError, UsageError } from '../../src/errors.js';
import { createCompressor } from '../../src/streams/compress.js';
import { createAtomicFile, writeAtomically, writeToStdout } from '../../src/streams/output-file.js';
import { pipeline as pipelineAsync } from 'node:stream/promises';

/** Yields `chunks`, then fails with `error` (when given) as a broken pull would. */
function source(chunks: Buffer[], error?: Error): Readable {
  return Readable.from(
    (async function* () {
      for (const chunk of chunks) {
        yield chunk;
        await setTimeout(1);
      }
      if (error !== undefined) throw error;
    })(),
  );
}

/** A source that never ends, for the abort tests. */
function endless(): Readable {
  return new Readable({
    read() {
      globalThis.setTimeout(() => this.push(Buffer.alloc(1024, 1)), 1);
    },
  });
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'oci-rootfs-output-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('writeAtomically', () => {
  it('writes the bytes and renames them into place, leaving no temporary file', async () => {
    const target = join(dir, 'rootfs.tar');
    const result = await writeAtomically(source([Buffer.from('abc'), Buffer.from('def')]), target);
    expect(result).toEqual({ bytes: 6 });
    expect(await readFile(target, 'utf8')).toBe('abcdef');
    expect(await readdir(dir)).toEqual(['rootfs.tar']);
  });

  it('leaves neither the target nor a temporary file when the source fails', async () => {
    const target = join(dir, 'rootfs.tar');
    const failure = new OciRootfsError('layer 2: digest mismatch');
    await expect(writeAtomically(source([Buffer.alloc(4096)], failure), target)).rejects.toBe(failure);
    expect(await readdir(dir)).toEqual([]);
  });

  it('writes to a hidden .partial name beside the target while the copy runs', async () => {
    const target = join(dir, 'rootfs.tar');
    const input = new PassThrough();
    const done = writeAtomically(input, target);
    input.write('partial bytes');
    await setTimeout(20);
    const names = await readdir(dir);
    expect(names).toHaveLength(1);
    expect(names[0]).toMatch(/^\.rootfs\.tar\.[0-9a-f]+\.partial$/);
    input.end();
    await done;
    expect(await readdir(dir)).toEqual(['rootfs.tar']);
  });

  it('removes the temporary file and destroys the source when aborted', async () => {
    const target = join(dir, 'rootfs.tar');
    const controller = new AbortController();
    const input = endless();
    const done = writeAtomically(input, target, { signal: controller.signal });
    await setTimeout(30);
    controller.abort();
    await expect(done).rejects.toMatchObject({ name: 'AbortError' });
    expect(input.destroyed).toBe(true);
    expect(await readdir(dir)).toEqual([]);
  });

  it('writes nothing when the signal is already aborted', async () => {
    const target = join(dir, 'rootfs.tar');
    const input = endless();
    await expect(writeAtomically(input, target, { signal: AbortSignal.abort() })).rejects.toMatchObject({
      name: 'AbortError',
    });
    expect(input.destroyed).toBe(true);
    expect(await readdir(dir)).toEqual([]);
  });

  it('replaces an existing target only on success', async () => {
    const target = join(dir, 'rootfs.tar');
    await writeFile(target, 'old');
    await expect(writeAtomically(source([Buffer.from('new')], new Error('boom')), target)).rejects.toThrow('boom');
    expect(await readFile(target, 'utf8')).toBe('old');
    expect(await readdir(dir)).toEqual(['rootfs.tar']);

    await writeAtomically(source([Buffer.from('new')]), target);
    expect(await readFile(target, 'utf8')).toBe('new');
    expect(await readdir(dir)).toEqual(['rootfs.tar']);
  });

  it('names the target, not the temporary file, when the file cannot be written', async () => {
    const missing = join(dir, 'no-such-dir', 'rootfs.tar');
    const input = source([Buffer.from('x')]);
    await expect(writeAtomically(input, missing)).rejects.toThrow(`cannot write ${missing}: no such file or directory`);
    expect(input.destroyed).toBe(true);

    // A directory in the way: the rename fails, and the temporary file is still removed.
    const blocked = join(dir, 'blocked');
    await mkdir(join(blocked, 'child'), { recursive: true });
    await expect(writeAtomically(source([Buffer.from('x')]), blocked)).rejects.toThrow(`cannot write ${blocked}`);
    expect(await readdir(dir)).toEqual(['blocked']);
  });
});

/** A stand-in for process.stdout that records what reaches it. */
function fakeStdout(): PassThrough & { isTTY?: boolean; received: () => Buffer } {
  const chunks: Buffer[] = [];
  const stdout = new PassThrough() as PassThrough & { isTTY?: boolean; received: () => Buffer };
  stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
  stdout.received = () => Buffer.concat(chunks);
  return stdout;
}

describe('writeToStdout', () => {
  it('refuses to write to a terminal, before reading anything', async () => {
    const stdout = fakeStdout();
    stdout.isTTY = true;
    const input = source([Buffer.from('tar bytes')]);
    const attempt = writeToStdout(input, { stdout });
    await expect(attempt).rejects.toBeInstanceOf(UsageError);
    await expect(attempt).rejects.toThrow(
      'refusing to write a tar archive to a terminal; write to a file or redirect stdout',
    );
    expect(input.destroyed).toBe(true);
    expect(stdout.received().length).toBe(0);
  });

  it('copies the source and leaves stdout open', async () => {
    const stdout = fakeStdout();
    const result = await writeToStdout(source([Buffer.from('abc'), Buffer.from('de')]), { stdout });
    expect(result).toEqual({ bytes: 5 });
    expect(stdout.received().toString()).toBe('abcde');
    expect(stdout.writableEnded).toBe(false);
  });

  it('keeps the bytes written before a source error, writes nothing more, and rejects', async () => {
    const stdout = fakeStdout();
    const failure = new OciRootfsError('layer 1: truncated');
    await expect(writeToStdout(source([Buffer.from('first'), Buffer.from('second')], failure), { stdout })).rejects.toBe(
      failure,
    );
    expect(stdout.received().toString()).toBe('firstsecond');
    expect(stdout.destroyed).toBe(false);
  });

  it('leaves a gzip output without its trailer when the tar fails, so gunzip reports it', async () => {
    const stdout = fakeStdout();
    const failure = new OciRootfsError('layer 1: truncated');
    const tar = source([Buffer.alloc(100_000, 7)], failure);
    const output = pipeline(tar, createCompressor('gzip'), () => {});
    await expect(writeToStdout(output, { stdout })).rejects.toBe(failure);
    expect(() => gunzipSync(stdout.received())).toThrow(/unexpected end of file/);
  });

  it('stops the source and says so when the reader closes the pipe (EPIPE)', async () => {
    const stdout = new Writable({
      write(_chunk, _encoding, callback) {
        callback(Object.assign(new Error('write EPIPE'), { code: 'EPIPE', errno: -32, syscall: 'write' }));
      },
    });
    const input = endless();
    const attempt = writeToStdout(input, { stdout });
    await expect(attempt).rejects.toThrow('stdout was closed before the archive was complete');
    expect(input.destroyed).toBe(true);
  });

  it('stops and rejects when aborted', async () => {
    const stdout = fakeStdout();
    const controller = new AbortController();
    const input = endless();
    const attempt = writeToStdout(input, { stdout, signal: controller.signal });
    await setTimeout(20);
    controller.abort();
    await expect(attempt).rejects.toMatchObject({ name: 'AbortError' });
    expect(input.destroyed).toBe(true);
    expect(stdout.destroyed).toBe(false);
  });
});

describe('createAtomicFile', () => {
  it('starts every attempt on an empty file and commits only the last one', async () => {
    const path = join(dir, 'out.tar');
    const file = createAtomicFile(path);
    try {
      const first = await file.open(0);
      const failed = pipelineAsync(source([Buffer.from('first attempt, longer than the second')], new Error('start over')), first);
      await expect(failed).rejects.toThrow('start over');
      expect(await readdir(dir)).toHaveLength(1); // the temporary file only
      await pipelineAsync(source([Buffer.from('second')]), await file.open(1));
      expect(await file.commit()).toEqual({ bytes: 6 });
    } finally {
      await file.discard();
    }
    expect(await readdir(dir)).toEqual(['out.tar']);
    expect(await readFile(path, 'utf8')).toBe('second');
  });

  it('leaves nothing behind when discarded, and refuses to commit an unfinished attempt', async () => {
    const file = createAtomicFile(join(dir, 'out.tar'));
    const stream = await file.open(0);
    stream.write('partial');
    await expect(file.commit()).rejects.toThrow(/not complete/);
    await file.discard();
    expect(await readdir(dir)).toEqual([]);
  });
});
