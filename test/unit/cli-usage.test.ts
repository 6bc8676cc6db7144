/**
 * The CLI as a user meets it: the program `dist/cli/main.js` runs, driven in this process
 * through `runCli` with streams of our own; the built binary is spawned only where a
 * process matters (its exit status, a signal). Nothing here reaches a registry; every case
 * fails or finishes before the first request.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import * as zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { writeToStdout } from '../../src/streams/output-file.js';
import { runInProcess } from '../helpers/cli.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const main = join(root, 'dist/cli/main.js');
const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

async function run(args: string[]): Promise<Run> {
  const result = await runInProcess(args, { cwd: root });
  return { code: result.code, stdout: result.stdout.toString('utf8'), stderr: result.stderr };
}

/** The built binary as a shell runs it (`npm test` builds it first). */
function spawned(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Run> {
  if (!existsSync(main)) throw new Error(`${main} is missing: run \`npm run build\` first (\`npm test\` does)`);
  return new Promise((resolve) => {
    execFile(process.execPath, [main, ...args], { cwd: root, env, timeout: 30_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
      resolve({ code, stdout, stderr });
    });
  });
}

/** A usage error: status 2, nothing on stdout, exactly one `oci-rootfs: ` line on stderr. */
function expectUsageError(result: Run, message: string | RegExp): void {
  expect(result.code).toBe(2);
  expect(result.stdout).toBe('');
  const lines = result.stderr.split('\n').filter((line) => line !== '');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^oci-rootfs: /);
  expect(lines[0]).toMatch(message);
}

describe('oci-rootfs CLI usage', () => {
  it('lists the pull command and examples in --help', async () => {
    const result = await run(['--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^\s+pull \[options\] <image>/m);
    expect(result.stdout).toContain('Examples:');
    expect(result.stdout).toContain('130 interrupted');
  });

  it('lists every pull option in pull --help', async () => {
    const result = await run(['pull', '--help']);
    expect(result.code).toBe(0);
    for (const option of [
      '-o, --output <file>',
      '--format <format>',
      '--platform <os/arch[/variant]>',
      '--username <name>',
      '--password <password>',
      '--password-stdin',
      '--plain-http',
      '--level <n>',
      '--gzip-engine <engine>',
      '--debug',
    ]) {
      expect(result.stdout).toContain(option);
    }
    expect(result.stdout).toContain('oci-rootfs pull alpine:3.20 -o alpine.tar.gz');
  });

  it('prints the package version and the compression engines in use with --version', async () => {
    const result = await run(['--version']);
    expect(result.code).toBe(0);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(version);
    expect(lines[1]).toMatch(process.env['OCI_ROOTFS_NATIVE'] === '0' ? /^gzip: node:zlib / : /^gzip: libdeflate 1\.\d+$/);
    // Node >= 22.15 has zstd in node:zlib; before, the optional zstd-napi binding (installed in CI).
    expect(lines[2]).toBe(`zstd: ${typeof (zlib as { createZstdCompress?: unknown }).createZstdCompress === 'function' ? 'node:zlib' : 'zstd-napi'}`);
    expect(lines[3]).toBe(process.env['OCI_ROOTFS_NATIVE'] === '0' ? 'fs: python3' : 'fs: native');
    expect(lines[4]).toBe(`node: ${process.version}`);
    expect(lines).toHaveLength(5);
  });

  it('says gzip falls back to node:zlib when OCI_ROOTFS_NATIVE=0 turns the addon off', async () => {
    const result = await spawned(['-V'], { ...process.env, OCI_ROOTFS_NATIVE: '0' });
    expect(result.code).toBe(0);
    expect(result.stdout.split('\n')[1]).toBe('gzip: node:zlib (OCI_ROOTFS_NATIVE=0)');
    expect(result.stdout.split('\n')[3]).toBe('fs: python3');
  });

  it('checks --gzip-engine before any network traffic', async () => {
    expectUsageError(await run(['pull', 'alpine', '-o', 'x.tgz', '--gzip-engine', 'igzip']), /--gzip-engine.*'igzip' is invalid/);
    expectUsageError(await run(['pull', 'alpine', '-o', 'x.tar', '--gzip-engine', 'zlib']), /--gzip-engine applies only to gzip output, not tar/);
    expectUsageError(await run(['pull', 'alpine', '--format', 'zstd', '--gzip-engine', 'pako']), /only to gzip output, not zstd/);
  });

  it('refuses a pinned native engine that is turned off, with ERR_ENGINE_UNAVAILABLE, before any request', async () => {
    // Port 9 (discard) on loopback: were a request made, the error would be a network one.
    const result = await spawned(['pull', '--plain-http', '127.0.0.1:9/x', '-o', 'x.tgz', '--gzip-engine', 'native'], {
      ...process.env,
      OCI_ROOTFS_NATIVE: '0',
    });
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/^oci-rootfs: gzip engine native is not available: OCI_ROOTFS_NATIVE=0 turns it off; use --gzip-engine zlib/);
  });

  it('rejects an unknown --format with status 2 and one line', async () => {
    expectUsageError(await run(['pull', 'alpine', '--format', 'zip']), /--format.*'zip' is invalid/);
  });

  it('checks --level against the output format before any network traffic', async () => {
    expectUsageError(await run(['pull', 'alpine', '--format', 'zstd', '--level', '0']), /out of range for zstd/);
    expectUsageError(await run(['pull', 'alpine', '-o', 'rootfs.tar.gz', '--level', '12']), /out of range for gzip/);
    expectUsageError(await run(['pull', 'alpine', '-o', 'rootfs.tar', '--level', '3']), /only to gzip or zstd/);
    expectUsageError(await run(['pull', 'alpine', '--format', 'zip']), /Expected tar, gzip or zstd/);
  });

  it('rejects unknown options, a missing image and unknown commands with status 2', async () => {
    expectUsageError(await run(['pull', 'alpine', '--bogus']), /unknown option '--bogus'/);
    expectUsageError(await run(['pull']), /missing required argument 'image'/);
    expectUsageError(await run(['frobnicate']), /unknown command 'frobnicate'/);
  });

  it('rejects bad option values with status 2', async () => {
    expectUsageError(await run(['pull', 'alpine', '--platform', 'linux']), /os\/arch\[\/variant\]/);
    expectUsageError(await run(['pull', 'alpine', '-o', 'x.tgz', '--level', '12']), /0 to 9/);
    expectUsageError(await run(['pull', 'alpine', '-o', 'x.tar', '--level', '5']), /--level applies only to gzip/);
  });

  it('rejects inconsistent credential options with status 2', async () => {
    expectUsageError(await run(['pull', 'alpine', '--password', 'secret']), /--password needs --username/);
    expectUsageError(await run(['pull', 'alpine', '--username', 'me']), /--username needs --password/);
    expectUsageError(
      await run(['pull', 'alpine', '--username', 'me', '--password', 'x', '--password-stdin']),
      /cannot be used together/,
    );
  });

  it('exits with status 2 after printing help when no command is given', async () => {
    const result = await run([]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('Usage: oci-rootfs');
  });

  it('gives the shell the same statuses from the built binary: 0 for --version, 2 for a usage error', async () => {
    const ok = await spawned(['--version']);
    expect(ok).toMatchObject({ code: 0, stderr: '' });
    expect(ok.stdout.split('\n')[0]).toBe(version);
    expectUsageError(await spawned(['pull', 'alpine', '--bogus']), /unknown option '--bogus'/);
  });
});

describe('stdout as a terminal', () => {
  it('is refused with a usage error naming the way out', async () => {
    const terminal = Object.assign(new PassThrough(), { isTTY: true });
    const attempt = writeToStdout(Readable.from([Buffer.from('tar')]), { stdout: terminal });
    await expect(attempt).rejects.toBeInstanceOf(UsageError);
    await expect(attempt).rejects.toThrow(
      'refusing to write a tar archive to a terminal; write to a file or redirect stdout',
    );
    expect(terminal.readableLength).toBe(0);
  });
});

describe('interrupting a pull', () => {
  let server: Server;
  let port: number;
  const sockets = new Set<Socket>();
  let dir: string;

  beforeAll(async () => {
    // A "registry" that accepts connections and never answers: the pull hangs until Ctrl-C.
    server = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
    dir = await mkdtemp(join(tmpdir(), 'oci-rootfs-cli-'));
  });

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  it('exits 130 on SIGINT and leaves no partial file', async () => {
    if (!existsSync(main)) throw new Error(`${main} is missing: run \`npm run build\` first (\`npm test\` does)`);
    const child = spawn(
      process.execPath,
      [main, 'pull', '--plain-http', `127.0.0.1:${port}/stalled/image:1`, '-o', join(dir, 'rootfs.tar')],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    // Wait until the pull is stuck on the silent server (or has already failed).
    const stuck = await Promise.race([
      new Promise<boolean>((resolve) => {
        const poll = setInterval(() => {
          if (sockets.size > 0) {
            clearInterval(poll);
            resolve(true);
          }
        }, 20);
        void exited.then(() => {
          clearInterval(poll);
          resolve(false);
        });
      }),
    ]);
    expect(stuck, `the pull ended before it reached the server: ${stderr.trim()}`).toBe(true);
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(await readdir(dir)).toEqual([]);
  });
});
