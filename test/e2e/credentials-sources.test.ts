/**
 * Credentials against the real registry behind htpasswd: from a docker config, from a
 * credential helper on PATH (`docker-credential-test`, server URL on stdin, JSON out),
 * from podman's auth.json and REGISTRY_AUTH_FILE, in the documented order.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthError } from '../../src/errors.js';
import { RegistryClient, type RegistryClientOptions } from '../../src/registry/client.js';
import { makeTar, pushImage, type PushedImage } from '../helpers/push.js';
import { startRegistry, type RegistryServer } from '../helpers/registry-server.js';

const auth = { user: 'creds', password: 'pa:ss word' };
const b64 = (text: string): string => Buffer.from(text).toString('base64');
const good = b64(`${auth.user}:${auth.password}`);
const bad = b64(`${auth.user}:wrong`);
const work = await mkdtemp(join(tmpdir(), 'oci-rootfs-creds-e2e-'));
const repo = `private/creds-${randomBytes(3).toString('hex')}`;
let secured: RegistryServer;
let image: PushedImage;
let bin: string;
const clients: RegistryClient[] = [];

beforeAll(async () => {
  secured = await startRegistry({ htpasswd: auth });
  image = await pushImage(secured.host, repo, 'v1', { auth, layers: [{ tar: await makeTar([{ name: 'x', content: 'x' }]), compression: 'gzip' }] });
  bin = await mkdtemp(join(work, 'bin-'));
  // The helper protocol: `get`, the server URL on stdin, {"Username","Secret"} on stdout.
  await writeFile(
    join(bin, 'docker-credential-test'),
    `#!/bin/sh\n[ "$1" = get ] || exit 2\nread url\necho "$url" >> "${join(work, 'helper.log')}"\nif [ "$url" = "${secured.host}" ]; then echo '{"ServerURL":"${secured.host}","Username":"${auth.user}","Secret":"${auth.password}"}'; else echo "credentials not found in native keychain"; exit 1; fi\n`,
  );
  await chmod(join(bin, 'docker-credential-test'), 0o755);
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.destroy()));
  await secured?.stop();
  await rm(work, { recursive: true, force: true });
});

function client(options: RegistryClientOptions): RegistryClient {
  const made = new RegistryClient(secured.host, { plainHttp: true, ...options });
  clients.push(made);
  return made;
}

async function digest(c: RegistryClient): Promise<string> {
  const response = await c.request({ path: `/v2/${repo}/manifests/v1`, repository: repo, what: 'manifest', headers: { accept: image.manifestMediaType } });
  response.body.resume();
  return String(response.headers['docker-content-digest']);
}

async function json(path: string, content: unknown): Promise<string> {
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, JSON.stringify(content));
  return path;
}

describe('credentials for a registry behind Basic auth', () => {
  it('reads a base64 auths entry of $DOCKER_CONFIG/config.json', async () => {
    const docker = join(work, 'docker-auths');
    await json(join(docker, 'config.json'), { auths: { [`http://${secured.host}`]: { auth: good } } });
    expect(await digest(client({ env: { DOCKER_CONFIG: docker } }))).toBe(image.manifestDigest);
  });

  it('asks a credHelpers helper on PATH, and a credsStore one, with the registry host on stdin', async () => {
    const saved = process.env['PATH'];
    process.env['PATH'] = `${bin}${delimiter}${saved ?? ''}`;
    try {
      const perHost = join(work, 'docker-helper');
      await json(join(perHost, 'config.json'), { credHelpers: { [secured.host]: 'test' }, auths: { [secured.host]: { auth: bad } } });
      expect(await digest(client({ env: {}, dockerConfigDir: perHost }))).toBe(image.manifestDigest);
      const store = join(work, 'docker-store');
      await json(join(store, 'config.json'), { credsStore: 'test', auths: { [secured.host]: {} } });
      expect(await digest(client({ env: {}, dockerConfigDir: store }))).toBe(image.manifestDigest);
    } finally {
      process.env['PATH'] = saved;
    }
  });

  it('prefers REGISTRY_AUTH_FILE over podman\'s auth.json over the docker config, and explicit credentials over all', async () => {
    const root = await mkdtemp(join(work, 'order-'));
    const docker = join(root, 'docker');
    await json(join(docker, 'config.json'), { auths: { [secured.host]: { auth: bad } } });
    const runtime = join(root, 'run');
    const podman = await json(join(runtime, 'containers', 'auth.json'), { auths: { [secured.host]: { auth: good } } });
    const env = { XDG_RUNTIME_DIR: runtime, DOCKER_CONFIG: docker };
    expect(await digest(client({ env }))).toBe(image.manifestDigest);
    // The wrong password in REGISTRY_AUTH_FILE wins over podman's right one: it comes first.
    const authFile = await json(join(root, 'auth-file.json'), { auths: { [secured.host]: { auth: bad } } });
    const refused = await digest(client({ env: { ...env, REGISTRY_AUTH_FILE: authFile } })).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(AuthError);
    expect(await digest(client({ env: { ...env, REGISTRY_AUTH_FILE: podman } }))).toBe(image.manifestDigest);
    expect(await digest(client({ env: { ...env, REGISTRY_AUTH_FILE: authFile }, username: auth.user, password: auth.password }))).toBe(
      image.manifestDigest,
    );
  });

  it('says no credentials were found when no source knows the registry', async () => {
    const error = await digest(client({ env: {}, dockerConfigDir: join(work, 'none') })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthError);
    expect((error as Error).message).toMatch(/no credentials found/);
  });
});
