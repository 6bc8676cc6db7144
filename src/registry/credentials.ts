/**
 * Registry credentials the way the docker CLI finds them: explicit options first, then
 * `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`): a `credHelpers` entry for
 * the host, an `auths` entry (base64 `auth` or `username`/`password`), then the `credsStore`
 * helper. A missing or unreadable file, or a helper that knows nothing, means "no
 * credentials": anonymous pulls must keep working on machines that never ran `docker login`.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { AuthError, throwIfAborted } from '../errors.js';
import { DOCKER_HUB_API_HOST, DOCKER_HUB_REGISTRY } from '../reference/index.js';

export interface Credentials {
  username: string;
  password: string;
}

export interface CredentialOptions {
  /** Explicit credentials; both must be given. */
  username?: string;
  password?: string;
  /** Directory holding config.json; defaults to `$DOCKER_CONFIG`, then `~/.docker`. */
  dockerConfigDir?: string;
  signal?: AbortSignal;
}

/** The key Docker Hub credentials are stored under, a leftover of the v1 API. */
export const DOCKER_HUB_AUTH_KEY = 'https://index.docker.io/v1/';
const DOCKER_HUB_ALIASES = new Set([DOCKER_HUB_REGISTRY, 'index.docker.io', DOCKER_HUB_API_HOST]);
/** A helper that hangs must not hang the pull. */
const HELPER_TIMEOUT_MS = 30_000;

interface DockerConfig {
  auths?: Record<string, { auth?: string; username?: string; password?: string } | undefined>;
  credHelpers?: Record<string, string | undefined>;
  credsStore?: string;
}

/** Finds credentials for `registry` (`host[:port]`, `docker.io` for Docker Hub), if any. */
export async function resolveCredentials(
  registry: string,
  options: CredentialOptions = {},
): Promise<Credentials | undefined> {
  if (options.username !== undefined || options.password !== undefined) {
    if (options.username === undefined || options.password === undefined) {
      throw new AuthError('both a username and a password are needed for registry login');
    }
    return { username: options.username, password: options.password };
  }
  const dir = options.dockerConfigDir ?? process.env['DOCKER_CONFIG'] ?? join(homedir(), '.docker');
  const config = await readDockerConfig(join(dir, 'config.json'));
  if (config === undefined) return undefined;

  const helperKey = registryKeyFor(registry);
  const helper = pickHelper(config.credHelpers, registry);
  if (helper !== undefined) return runCredentialHelper(helper, helperKey, options.signal);

  const entry = pickAuthEntry(config.auths, registry);
  if (entry !== undefined) return entry;

  if (typeof config.credsStore === 'string' && config.credsStore !== '') {
    return runCredentialHelper(config.credsStore, helperKey, options.signal);
  }
  return undefined;
}

/** The server address docker uses as the store key for `registry`. */
export function registryKeyFor(registry: string): string {
  return DOCKER_HUB_ALIASES.has(registry) ? DOCKER_HUB_AUTH_KEY : registry;
}

async function readDockerConfig(path: string): Promise<DockerConfig | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const parsed: unknown = JSON.parse(text);
    return typeof parsed === 'object' && parsed !== null ? (parsed as DockerConfig) : undefined;
  } catch {
    return undefined;
  }
}

/** `https://host/v1/` → `host`, as docker's `ConvertToHostname` does. */
function keyHost(key: string): string {
  const withoutScheme = key.replace(/^https?:\/\//, '');
  const slash = withoutScheme.indexOf('/');
  return slash === -1 ? withoutScheme : withoutScheme.slice(0, slash);
}

function keyMatches(key: string, registry: string): boolean {
  const host = keyHost(key);
  if (host === registry) return true;
  return DOCKER_HUB_ALIASES.has(registry) && DOCKER_HUB_ALIASES.has(host);
}

function pickHelper(helpers: DockerConfig['credHelpers'], registry: string): string | undefined {
  if (typeof helpers !== 'object' || helpers === null) return undefined;
  const exact = helpers[registry];
  if (typeof exact === 'string') return exact;
  for (const [key, helper] of Object.entries(helpers)) {
    if (typeof helper === 'string' && keyMatches(key, registry)) return helper;
  }
  return undefined;
}

function pickAuthEntry(auths: DockerConfig['auths'], registry: string): Credentials | undefined {
  if (typeof auths !== 'object' || auths === null) return undefined;
  // Exact spellings first, then any key naming the same host.
  const exactKeys = [registry, `https://${registry}`, `http://${registry}`, registryKeyFor(registry)];
  const keys = [...exactKeys, ...Object.keys(auths).filter((key) => keyMatches(key, registry))];
  for (const key of keys) {
    const credentials = decodeAuthEntry(auths[key]);
    if (credentials !== undefined) return credentials;
  }
  return undefined;
}

function decodeAuthEntry(entry: unknown): Credentials | undefined {
  if (typeof entry !== 'object' || entry === null) return undefined;
  const { auth, username, password } = entry as Record<string, unknown>;
  if (typeof auth === 'string' && auth !== '') {
    const decoded = Buffer.from(auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon > 0) return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  if (typeof username === 'string' && typeof password === 'string' && username !== '') {
    return { username, password };
  }
  return undefined;
}

/**
 * Runs `docker-credential-<helper> get` with the server address on stdin (the docker
 * credential-helper protocol). "Not found" answers and a missing helper both mean no
 * credentials; identity tokens (`<token>` usernames) are not supported yet and are ignored.
 */
export async function runCredentialHelper(
  helper: string,
  serverAddress: string,
  signal?: AbortSignal,
): Promise<Credentials | undefined> {
  if (!/^[A-Za-z0-9._-]+$/.test(helper)) return undefined;
  const output = await new Promise<string | undefined>((resolve) => {
    const child = spawn(`docker-credential-${helper}`, ['get'], {
      stdio: ['pipe', 'pipe', 'ignore'],
      timeout: HELPER_TIMEOUT_MS,
      ...(signal === undefined ? {} : { signal }),
    });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      if (stdout.length < 1 << 20) stdout += text;
    });
    child.on('error', () => resolve(undefined));
    child.on('close', (code) => resolve(code === 0 ? stdout : undefined));
    child.stdin.on('error', () => undefined);
    child.stdin.end(serverAddress);
  });
  // A killed helper looks like "no credentials": do not go on anonymously after an abort.
  throwIfAborted(signal);
  if (output === undefined) return undefined;
  try {
    const parsed = JSON.parse(output) as { Username?: unknown; Secret?: unknown };
    if (typeof parsed.Username !== 'string' || typeof parsed.Secret !== 'string') return undefined;
    if (parsed.Username === '<token>') return undefined;
    return { username: parsed.Username, password: parsed.Secret };
  } catch {
    return undefined;
  }
}
