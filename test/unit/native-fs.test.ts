/**
 * The fs addon (native/oci_fs.c). CI builds it (`npm ci` with a C compiler), so these tests
 * require it: a missing addon fails here rather than passing quietly. The python3 fallback
 * is tested by running the unpack tests again with OCI_ROOTFS_NATIVE=0 (.ci/run).
 */
import { spawnSync } from 'node:child_process';
import { constants, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadNativeFs, type NativeFsBinding } from '../../src/unpack/native-fs.js';
import { SpecialFileError, SpecialFiles } from '../../src/unpack/special-files.js';

function addon(): NativeFsBinding {
  const loaded = loadNativeFs({});
  if (loaded === undefined) throw new Error('the fs addon is not built: npm ci (or node native/install.mjs) on Linux with a C compiler');
  return loaded;
}

const isRoot = process.getuid?.() === 0;
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'oci-fs-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function bytes(path: string): Buffer {
  return Buffer.from(path);
}

/** getfattr's view of one attribute, its value hex-encoded. */
function getfattr(path: string, name: string): string {
  const result = spawnSync('getfattr', ['-h', '--absolute-names', '-e', 'hex', '-n', name, path], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`getfattr failed: ${result.stderr}`);
  return result.stdout.split('\n').find((line) => line.startsWith(`${name}=`)) ?? '';
}

function thrown(call: () => unknown): NodeJS.ErrnoException {
  try {
    call();
  } catch (error) {
    return error as NodeJS.ErrnoException;
  }
  throw new Error('the call did not throw');
}

describe('the fs addon', () => {
  it('sets a binary xattr that getfattr reads back, lists it and removes it', () => {
    const fs = addon();
    const path = join(dir, 'f');
    writeFileSync(path, '');
    const value = Buffer.from([0, 1, 2, 0xff, 0xfe, 0]);
    fs.lsetxattr(bytes(path), Buffer.from('user.binary'), value);
    expect(getfattr(path, 'user.binary')).toBe('user.binary=0x000102fffe00');
    fs.lsetxattr(bytes(path), Buffer.from('user.empty'), Buffer.alloc(0));
    expect(fs.llistxattr(bytes(path)).map((name) => name.toString()).sort()).toEqual(['user.binary', 'user.empty']);
    fs.lremovexattr(bytes(path), Buffer.from('user.binary'));
    expect(fs.llistxattr(bytes(path)).map((name) => name.toString())).toEqual(['user.empty']);
  });

  it('sets a trusted xattr on a symlink itself, never on its target', () => {
    if (!isRoot) throw new Error('this test needs root (trusted.* xattrs on a symlink)');
    const fs = addon();
    const target = join(dir, 'target');
    writeFileSync(target, '');
    symlinkSync('target', join(dir, 'link'));
    fs.lsetxattr(bytes(join(dir, 'link')), Buffer.from('trusted.mark'), Buffer.from('on the link'));
    expect(getfattr(join(dir, 'link'), 'trusted.mark')).toBe(`trusted.mark=0x${Buffer.from('on the link').toString('hex')}`);
    expect(fs.llistxattr(bytes(target))).toEqual([]);
  });

  it('creates a fifo and the char device 1:3 that lstat reports as such', () => {
    const fs = addon();
    fs.mkfifo(bytes(join(dir, 'fifo')), 0o640);
    const fifo = lstatSync(join(dir, 'fifo'));
    expect(fifo.isFIFO()).toBe(true);
    expect(fifo.mode & 0o7777).toBe(0o640 & ~process.umask());
    if (!isRoot) throw new Error('this test needs root (mknod of a character device)');
    fs.mknod(bytes(join(dir, 'null')), 0o20000 | 0o666, 1, 3);
    const device = lstatSync(join(dir, 'null'));
    expect(device.isCharacterDevice()).toBe(true);
    expect(device.rdev).toBe(0x103);
    fs.mknod(bytes(join(dir, 'sda')), 0o60000 | 0o660, 8, 0);
    expect(lstatSync(join(dir, 'sda')).isBlockDevice()).toBe(true);
    expect(lstatSync(join(dir, 'sda')).rdev).toBe(0x800);
  });

  it('takes names that are not UTF-8 byte for byte', () => {
    const fs = addon();
    const name = Buffer.concat([Buffer.from(`${dir}/`), Buffer.from([0x66, 0xff, 0xfe, 0x80])]);
    fs.mkfifo(name, 0o600);
    const listed = spawnSync('ls', ['-1', '--quoting-style=escape', dir], { encoding: 'utf8' }).stdout.trim();
    expect(listed).toBe('f\\377\\376\\200');
    const xattrName = Buffer.concat([Buffer.from('user.'), Buffer.from([0xe9, 0xff])]);
    const file = Buffer.concat([Buffer.from(`${dir}/`), Buffer.from([0xc3, 0x28])]);
    writeFileSync(file, '');
    fs.lsetxattr(file, xattrName, Buffer.from('v'));
    expect(fs.llistxattr(file)).toEqual([xattrName]);
  });

  it('throws errors with the errno name as code, like node:fs', () => {
    const fs = addon();
    const path = join(dir, 'fifo');
    fs.mkfifo(bytes(path), 0o600);
    const exists = thrown(() => fs.mkfifo(bytes(path), 0o600));
    expect(exists).toBeInstanceOf(Error);
    expect(exists.code).toBe('EEXIST');
    expect(exists.errno).toBe(-17);
    expect(exists.syscall).toBe('mkfifo');
    expect(exists.message).toBe(`EEXIST: file exists, mkfifo '${path}'`);
    expect(thrown(() => fs.lsetxattr(bytes(join(dir, 'missing')), Buffer.from('user.a'), Buffer.from('v'))).code).toBe('ENOENT');
    // The kernel allows user.* xattrs only on regular files and directories.
    expect(thrown(() => fs.lsetxattr(bytes(path), Buffer.from('user.a'), Buffer.from('v'))).code).toBe('EPERM');
    const file = join(dir, 'f');
    writeFileSync(file, '');
    expect(thrown(() => fs.lremovexattr(bytes(file), Buffer.from('user.none'))).code).toBe('ENODATA');
    // No namespace the kernel knows: not supported.
    expect(thrown(() => fs.lsetxattr(bytes(file), Buffer.from('bogus.name'), Buffer.from('v'))).code).toBe('ENOTSUP');
    expect(thrown(() => fs.mknod(bytes(join(dir, 'no/dir/node')), 0o20000 | 0o600, 1, 3)).code).toBe('ENOENT');
  });

  it('refuses arguments of the wrong type or with NUL bytes before any syscall', () => {
    const fs = addon();
    const notBuffer = fs.mkfifo as unknown as (path: unknown, mode: unknown) => void;
    expect(thrown(() => notBuffer(join(dir, 'string-path'), 0o600)).code).toBe('ERR_INVALID_ARG_TYPE');
    expect(thrown(() => fs.mkfifo(Buffer.from(`${dir}/a\0b`), 0o600)).code).toBe('ERR_INVALID_ARG_VALUE');
    expect(thrown(() => fs.mkfifo(bytes(join(dir, 'x')), -1)).code).toBe('ERR_OUT_OF_RANGE');
    expect(thrown(() => fs.mknod(bytes(join(dir, 'x')), 0o20000, 1.5, 3)).code).toBe('ERR_OUT_OF_RANGE');
    expect(() => lstatSync(join(dir, 'x'))).toThrow(/ENOENT/);
  });
});

describe('writeBatch of the fs addon', () => {
  const CREATE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  interface Entry {
    path: string;
    kind: 'file' | 'directory';
    body?: string;
    uid?: number;
    gid?: number;
    mode?: number;
    mtime?: number;
  }
  /** Packs the entries as file-jobs.ts does and runs one batch; resolves with [errno, syscall number] per entry. */
  const batch = (fs: NativeFsBinding, entries: Entry[]) => {
    const meta = new Float64Array(entries.length * 9);
    const paths: Buffer[] = [];
    const bodies: Buffer[] = [];
    let pathAt = 0;
    let bodyAt = 0;
    entries.forEach((entry, i) => {
      const path = Buffer.from(`${entry.path}\0`);
      const body = Buffer.from(entry.body ?? '');
      meta.set([CREATE, entry.uid ?? -1, entry.gid ?? 0, entry.mode ?? 0o644, entry.mtime ?? 0, pathAt, bodyAt, body.length, entry.kind === 'file' ? 0 : 1], i * 9);
      paths.push(path);
      bodies.push(body);
      pathAt += path.length;
      bodyAt += body.length;
    });
    const results = new Int32Array(entries.length * 2).fill(-1);
    return new Promise<Array<[number, number]>>((resolve, reject) =>
      fs.writeBatch(meta, Buffer.concat(paths), Buffer.concat(bodies), results, (error) =>
        error === null ? resolve(entries.map((_, i) => [results[2 * i] as number, results[2 * i + 1] as number])) : reject(error),
      ),
    );
  };

  it('makes directories and files in order, each with its owner, mode (setuid kept) and mtime', async () => {
    const fs = addon();
    const owner = isRoot ? { uid: 1234, gid: 5678 } : {};
    const results = await batch(fs, [
      { path: join(dir, 'a'), kind: 'directory', ...owner },
      { path: join(dir, 'a/b'), kind: 'directory' },
      { path: join(dir, 'a/b/f'), kind: 'file', body: 'hello', ...owner, mode: 0o4755, mtime: 1_600_000_000.5 },
      { path: join(dir, 'a/empty'), kind: 'file', mode: 0o600, mtime: 1_500_000_000 },
    ]);
    expect(results).toEqual([
      [0, 0],
      [0, 0],
      [0, 0],
      [0, 0],
    ]);
    const file = lstatSync(join(dir, 'a/b/f'), { bigint: true });
    expect(Number(file.mode & 0o7777n)).toBe(0o4755);
    expect(file.mtimeNs).toBe(1_600_000_000_500_000_000n);
    expect(file.atimeNs).toBe(1_600_000_000_500_000_000n);
    expect(readFileSync(join(dir, 'a/b/f'), 'utf8')).toBe('hello');
    expect(lstatSync(join(dir, 'a/empty')).size).toBe(0);
    // Directories are made 0700: their mode comes in the unpack's finishing pass.
    expect(lstatSync(join(dir, 'a/b')).mode & 0o7777).toBe(0o700);
    if (isRoot) {
      expect([file.uid, file.gid]).toEqual([1234n, 5678n]);
      expect([lstatSync(join(dir, 'a')).uid, lstatSync(join(dir, 'a')).gid]).toEqual([1234, 5678]);
    }
  });

  it('replaces a file or a symlink at the path without following it, and keeps an existing directory with its children', async () => {
    const fs = addon();
    writeFileSync(join(dir, 'outside'), 'keep');
    symlinkSync(join(dir, 'outside'), join(dir, 'link'));
    symlinkSync(join(dir, 'outside'), join(dir, 'dirlink'));
    writeFileSync(join(dir, 'old'), 'old');
    const results = await batch(fs, [
      { path: join(dir, 'link'), kind: 'file', body: 'new' },
      { path: join(dir, 'dirlink'), kind: 'directory' },
      { path: join(dir, 'old'), kind: 'file', body: 'newer' },
    ]);
    expect(results.map(([errno]) => errno)).toEqual([0, 0, 0]);
    expect(readFileSync(join(dir, 'outside'), 'utf8')).toBe('keep');
    expect(lstatSync(join(dir, 'link')).isFile()).toBe(true);
    expect(readFileSync(join(dir, 'link'), 'utf8')).toBe('new');
    expect(lstatSync(join(dir, 'dirlink')).isDirectory()).toBe(true);
    expect(readFileSync(join(dir, 'old'), 'utf8')).toBe('newer');
    const again = await batch(fs, [
      { path: join(dir, 'dirlink/child'), kind: 'file', body: 'c' },
      { path: join(dir, 'dirlink'), kind: 'directory' },
    ]);
    expect(again).toEqual([
      [0, 0],
      [0, 0],
    ]);
    expect(readFileSync(join(dir, 'dirlink/child'), 'utf8')).toBe('c');
  });

  it('reports the errno and the syscall of each entry that failed and goes on with the next', async () => {
    const fs = addon();
    mkdirSync(join(dir, 'd'));
    const results = await batch(fs, [
      { path: join(dir, 'd'), kind: 'file', body: 'x' },
      { path: join(dir, 'missing/f'), kind: 'file' },
      { path: join(dir, 'missing/d'), kind: 'directory' },
      { path: join(dir, 'ok'), kind: 'file', body: 'ok' },
    ]);
    // 1 open, 9 mkdir (file-jobs.ts names them).
    expect(results).toEqual([
      [17, 1],
      [2, 1],
      [2, 9],
      [0, 0],
    ]);
    expect(lstatSync(join(dir, 'd')).isDirectory()).toBe(true);
    expect(readFileSync(join(dir, 'ok'), 'utf8')).toBe('ok');
  });

  it('refuses a batch whose offsets reach outside its buffers before any syscall', () => {
    const fs = addon();
    const path = Buffer.from(`${join(dir, 'f')}\0`);
    const meta = new Float64Array([CREATE, -1, 0, 0o644, 0, 0, 0, 10, 0]);
    const call = (m: Float64Array, paths: Buffer) => thrown(() => fs.writeBatch(m, paths, Buffer.alloc(4), new Int32Array(2), () => undefined));
    expect(call(meta, path).code).toBe('ERR_OUT_OF_RANGE');
    expect(call(new Float64Array([CREATE, -1, 0, 0o644, 0, path.length, 0, 0, 0]), path).code).toBe('ERR_OUT_OF_RANGE');
    expect(call(new Float64Array([CREATE, -1, 0, 0o644, 0, 0, 0, 0, 0]), Buffer.from(join(dir, 'f'))).code).toBe('ERR_OUT_OF_RANGE');
    expect(call(new Float64Array([CREATE, -1, 0, 0o644, 0, 0, 0, 0, 7]), path).code).toBe('ERR_OUT_OF_RANGE');
    expect(call(new Float64Array(8), path).code).toBe('ERR_OUT_OF_RANGE');
    expect(() => lstatSync(join(dir, 'f'))).toThrow(/ENOENT/);
  });
});

describe('SpecialFiles on the addon', () => {
  it('uses the addon when it loads, and python3 when told not to', () => {
    expect(new SpecialFiles().engine).toBe(process.env['OCI_ROOTFS_NATIVE'] === '0' ? 'python3' : 'native');
    expect(new SpecialFiles({ native: addon() }).engine).toBe('native');
    expect(new SpecialFiles({ native: null }).engine).toBe('python3');
  });

  it('reports addon failures as the helper does: a SpecialFileError with the errno name', async () => {
    for (const special of [new SpecialFiles({ native: addon() }), new SpecialFiles({ native: null })]) {
      const path = bytes(join(dir, `fifo-${special.engine}`));
      try {
        await special.mkfifo(path, 0o600);
        const error = await special.mkfifo(path, 0o600).catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(SpecialFileError);
        expect(error).toMatchObject({ code: 'EEXIST', errno: 17, message: 'mkfifo: EEXIST' });
        await special.setXattr(path, Buffer.from('trusted.t'), Buffer.from([0xff]));
        expect(getfattr(join(dir, `fifo-${special.engine}`), 'trusted.t')).toBe('trusted.t=0xff');
        await special.removeXattr(path, Buffer.from('trusted.t'));
        await expect(special.removeXattr(path, Buffer.from('trusted.t'))).rejects.toMatchObject({ code: 'ENODATA' });
      } finally {
        special.close();
      }
    }
  });
});
