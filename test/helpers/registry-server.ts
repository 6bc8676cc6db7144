/**
 * Starts the CNCF distribution registry (`docker-registry` on Debian) on a free loopback
 * port with a temporary storage directory, for tests that need a real registry.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface RegistryServer {
  /** `127.0.0.1:PORT`, usable as the registry part of a reference. */
  host: string;
  /** `http://127.0.0.1:PORT`. */
  url: string;
  stop(): Promise<void>;
}

export interface StartRegistryOptions {
  /** Protect the registry with htpasswd (bcrypt) Basic auth. */
  htpasswd?: { user: string; password: string };
  /** Extra top-level YAML appended to config.yml as is. */
  extraConfig?: string;
}

const CANDIDATES = ['/usr/bin/docker-registry', '/usr/bin/registry', '/usr/local/bin/registry'];

/** The registry binary, or undefined when none is installed. */
export function findRegistryBinary(): string | undefined {
  const fromEnv = process.env['OCI_ROOTFS_REGISTRY_BIN'];
  if (fromEnv !== undefined && existsSync(fromEnv)) return fromEnv;
  return CANDIDATES.find((path) => existsSync(path));
}

export async function startRegistry(options: StartRegistryOptions = {}): Promise<RegistryServer> {
  const binary = findRegistryBinary();
  if (binary === undefined) {
    // We never skip silently: without a registry the e2e suite proves nothing.
    const required =
      process.env['CI'] !== undefined || process.env['OCI_ROOTFS_REQUIRE_REGISTRY'] !== undefined;
    throw new Error(
      `the distribution registry binary is not installed (looked for ${CANDIDATES.join(', ')})` +
        (required
          ? '; it is required here (CI / OCI_ROOTFS_REQUIRE_REGISTRY)'
          : '; install it with `apt-get install docker-registry` or run .ci/run'),
    );
  }

  const dir = await mkdtemp(join(tmpdir(), 'oci-rootfs-registry-'));
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  let auth = '';
  if (options.htpasswd !== undefined) {
    const line = htpasswdLine(options.htpasswd.user, options.htpasswd.password);
    await writeFile(join(dir, 'htpasswd'), `${line}\n`);
    auth = `auth:\n  htpasswd:\n    realm: oci-rootfs-test\n    path: ${join(dir, 'htpasswd')}\n`;
  }
  const config = [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(dir, 'data')}`,
    '  delete:',
    '    enabled: true',
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: ${host}`,
    `  secret: oci-rootfs-test-secret`,
    auth,
    options.extraConfig ?? '',
  ].join('\n');
  const configPath = join(dir, 'config.yml');
  await writeFile(configPath, config);

  const { child, stop, stderr } = spawnRegistry(binary, configPath, dir);

  try {
    await waitUntilUp(`http://${host}/v2/`, child, stderr);
  } catch (error) {
    await stop();
    throw error;
  }
  return { host, url: `http://${host}`, stop };
}

/** A running registry process; `stop()` ends it and removes `dir`. */
export interface SpawnedRegistry {
  child: ChildProcess;
  stop(): Promise<void>;
  /** The last few KiB it wrote to stderr, for error messages. */
  stderr(): string;
}

/** Starts `binary serve configPath`; `dir` is the registry's scratch folder, removed on stop. */
export function spawnRegistry(binary: string, configPath: string, dir: string): SpawnedRegistry {
  const child = spawn(binary, ['serve', configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (text: string) => {
    stderr = (stderr + text).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  return { child, stop, stderr: () => stderr };
}

/** The HTTP status of a GET of `url`, body discarded. */
export type StatusProbe = (url: string) => Promise<number>;

const fetchStatus: StatusProbe = async (url) => {
  const response = await fetch(url);
  await response.arrayBuffer();
  return response.status;
};

/** Waits until the registry answers `/v2/` (200, or 401 when it challenges), or fails. */
export async function waitUntilUp(
  url: string,
  child: ChildProcess,
  stderr: () => string,
  probe: StatusProbe = fetchStatus,
): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`registry exited (${child.exitCode ?? child.signalCode}): ${stderr()}`);
    }
    try {
      const status = await probe(url);
      // 401 is "up" too: an htpasswd registry challenges /v2/.
      if (status === 200 || status === 401) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`registry did not come up at ${url}: ${stderr()}`);
    await sleep(50);
  }
}

/** A port that was free a moment ago (the registry binds it right after). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * A bcrypt htpasswd line: the registry accepts bcrypt only. Uses `htpasswd -nbB` when
 * apache2-utils is installed, else Perl's crypt(3), which on glibc/libxcrypt does `$2b$`.
 */
export function htpasswdLine(user: string, password: string): string {
  if (existsSync('/usr/bin/htpasswd')) {
    const result = spawnSync('/usr/bin/htpasswd', ['-nbB', user, password], { encoding: 'utf8' });
    if (result.status === 0) return result.stdout.trim();
  }
  // 22 characters of bcrypt's base64; the last one carries 2 bits, so "." keeps it canonical.
  const alphabet = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const random = [...randomBytes(21)].map((byte) => alphabet[byte % 64] ?? '.').join('');
  const salt = `$2b$05$${random}.`;
  const result = spawnSync('perl', ['-e', 'print crypt($ARGV[0], $ARGV[1])', password, salt], {
    encoding: 'utf8',
  });
  const hash = result.stdout ?? '';
  if (result.status !== 0 || !hash.startsWith('$2b$')) {
    throw new Error('cannot make a bcrypt hash: install apache2-utils (htpasswd) or perl with libxcrypt');
  }
  return `${user}:${hash}`;
}
