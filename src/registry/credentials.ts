/**
 * Registry credentials the way the docker and podman CLIs find them. Sources, first that
 * knows the registry wins:
 *
 * 1. explicit options (`--username` and a password);
 * 2. the auth file `REGISTRY_AUTH_FILE` names (podman, skopeo, buildah);
 * 3. podman's `${XDG_RUNTIME_DIR}/containers/auth.json`;
 * 4. docker's `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`).
 *
 * Within one file: a `credHelpers` entry for the host, an `auths` entry (base64 `auth`,
 * `username`/`password`, or an `identitytoken`), then the `credsStore` helper. A missing or
 * unreadable file, or a helper that knows nothing, means "no credentials here": anonymous
 * pulls must keep working on machines that never ran `docker login`.
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
  /**
   * An OAuth2 refresh token (docker's "identity token": a helper's `<token>` user name, or
   * `identitytoken` in an auth file). It is exchanged at the token realm
   * (`grant_type=refresh_token`) and never sent as Basic auth.
   */
  identityToken?: string;
}

/** The environment variables credential lookup reads. */
export type CredentialEnv = Readonly<Record<string, string | undefined>>;

export interface CredentialOptions {
  /** Explicit credentials; both must be given. User name `<token>` makes the password an identity token. */
  username?: string;
  password?: string;
  /** Directory holding config.json; defaults to `$DOCKER_CONFIG`, then `~/.docker`. */
  dockerConfigDir?: string;
  /** A podman-style auth file read before any other (default `$REGISTRY_AUTH_FILE`). */
  authFile?: string;
  /** Where `DOCKER_CONFIG`, `REGISTRY_AUTH_FILE` and `XDG_RUNTIME_DIR` are read (default `process.env`). */
  env?: CredentialEnv;
  signal?: AbortSignal;
}

/** Where a credential came from, for messages ("credentials of "u" from ~/.docker/config.json"). */
export interface CredentialSource {
  kind: 'explicit' | 'registry-auth-file' | 'podman' | 'docker';
  /** The file read, absent for explicit credentials. */
  path?: string;
}

/** The key Docker Hub credentials are stored under, a leftover of the v1 API. */
export const DOCKER_HUB_AUTH_KEY = 'https://index.docker.io/v1/';
/** The user name credential helpers and `docker login` use to mark an identity token. */
export const IDENTITY_TOKEN_USERNAME = '<token>';
const DOCKER_HUB_ALIASES = new Set([DOCKER_HUB_REGISTRY, 'index.docker.io', DOCKER_HUB_API_HOST]);
/** A helper that hangs must not hang the pull. */
const HELPER_TIMEOUT_MS = 30_000;

interface AuthFile {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string } | undefined>;
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
    if (options.username === IDENTITY_TOKEN_USERNAME) {
      return { username: options.username, password: '', identityToken: options.password };
    }
    return { username: options.username, password: options.password };
  }
  for (const source of credentialFiles(options)) {
    const file = await readAuthFile(source.path);
    if (file === undefined) continue;
    const found = await lookUp(file, registry, options.signal);
    if (found !== undefined) return found;
  }
  return undefined;
}

/**
 * The files consulted, in order. Podman's files come before docker's because a machine with
 * both usually logged in with podman last on purpose (podman itself reads docker's file
 * only as a fallback, in this same order).
 */
export function credentialFiles(options: Pick<CredentialOptions, 'authFile' | 'dockerConfigDir' | 'env'> = {}): Array<Required<CredentialSource>> {
  const env = options.env ?? process.env;
  const files: Array<Required<CredentialSource>> = [];
  const authFile = options.authFile ?? nonEmpty(env['REGISTRY_AUTH_FILE']);
  if (authFile !== undefined) files.push({ kind: 'registry-auth-file', path: authFile });
  const runtimeDir = nonEmpty(env['XDG_RUNTIME_DIR']);
  if (runtimeDir !== undefined) files.push({ kind: 'podman', path: join(runtimeDir, 'containers', 'auth.json') });
  const dockerDir = options.dockerConfigDir ?? nonEmpty(env['DOCKER_CONFIG']) ?? join(homedir(), '.docker');
  files.push({ kind: 'docker', path: join(dockerDir, 'config.json') });
  return files;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

/** One file's answer for `registry`: its helper for the host, its `auths`, its store. */
async function lookUp(file: AuthFile, registry: string, signal?: AbortSignal): Promise<Credentials | undefined> {
  const helperKey = registryKeyFor(registry);
  const helper = pickHelper(file.credHelpers, registry);
  if (helper !== undefined) return runCredentialHelper(helper, helperKey, signal);

  const entry = pickAuthEntry(file.auths, registry);
  if (entry !== undefined) return entry;

  if (typeof file.credsStore === 'string' && file.credsStore !== '') {
    return runCredentialHelper(file.credsStore, helperKey, signal);
  }
  return undefined;
}

/** The server address docker uses as the store key for `registry`. */
export function registryKeyFor(registry: string): string {
  return DOCKER_HUB_ALIASES.has(registry) ? DOCKER_HUB_AUTH_KEY : registry;
}

async function readAuthFile(path: string): Promise<AuthFile | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const parsed: unknown = JSON.parse(text);
    return typeof parsed === 'object' && parsed !== null ? (parsed as AuthFile) : undefined;
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

function pickHelper(helpers: AuthFile['credHelpers'], registry: string): string | undefined {
  if (typeof helpers !== 'object' || helpers === null) return undefined;
  const exact = helpers[registry];
  if (typeof exact === 'string') return exact;
  for (const [key, helper] of Object.entries(helpers)) {
    if (typeof helper === 'string' && keyMatches(key, registry)) return helper;
  }
  return undefined;
}

function pickAuthEntry(auths: AuthFile['auths'], registry: string): Credentials | undefined {
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
  const { auth, username, password, identitytoken } = entry as Record<string, unknown>;
  let decoded: Credentials | undefined;
  if (typeof auth === 'string' && auth !== '') {
    const text = Buffer.from(auth, 'base64').toString('utf8');
    const colon = text.indexOf(':');
    if (colon > 0) decoded = { username: text.slice(0, colon), password: text.slice(colon + 1) };
  }
  // `docker login` against an OAuth registry stores the refresh token next to the user name.
  if (typeof identitytoken === 'string' && identitytoken !== '') {
    return { username: decoded?.username ?? IDENTITY_TOKEN_USERNAME, password: '', identityToken: identitytoken };
  }
  if (decoded !== undefined) return decoded;
  if (typeof username === 'string' && typeof password === 'string' && username !== '') {
    return { username, password };
  }
  return undefined;
}

/**
 * Runs `docker-credential-<helper> get` with the server address on stdin (the docker
 * credential-helper protocol). "Not found" answers and a missing helper both mean no
 * credentials; a `<token>` user name marks the secret as an identity (refresh) token.
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
    if (parsed.Secret === '') return undefined;
    if (parsed.Username === IDENTITY_TOKEN_USERNAME) {
      return { username: parsed.Username, password: '', identityToken: parsed.Secret };
    }
    return { username: parsed.Username, password: parsed.Secret };
  } catch {
    return undefined;
  }
}
