/**
 * Where credentials come from and in which order: explicit > REGISTRY_AUTH_FILE > podman's
 * `${XDG_RUNTIME_DIR}/containers/auth.json` > docker's config; identity tokens from config
 * files and helpers; and the scopes a token is asked for after `insufficient_scope`.
 */
import { Readable } from 'node:stream';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Authenticator } from '../../src/registry/auth.js';
import { credentialFiles, resolveCredentials, runCredentialHelper } from '../../src/registry/credentials.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'oci-rootfs-cred-sources-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const b64 = (text: string): string => Buffer.from(text).toString('base64');

async function file(path: string, content: unknown): Promise<string> {
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, JSON.stringify(content));
  return path;
}

describe('credential sources', () => {
  it('reads REGISTRY_AUTH_FILE, then podman, then docker, first that knows the registry winning', async () => {
    const root = await mkdtemp(join(dir, 'order-'));
    const authFile = await file(join(root, 'auth-file.json'), { auths: { 'a.io': { auth: b64('from:auth-file') } } });
    const runtime = join(root, 'run');
    await file(join(runtime, 'containers', 'auth.json'), { auths: { 'a.io': { auth: b64('from:podman') }, 'b.io': { auth: b64('from:podman') } } });
    const docker = join(root, 'docker');
    await file(join(docker, 'config.json'), { auths: { 'a.io': { auth: b64('from:docker') }, 'b.io': { auth: b64('from:docker') }, 'c.io': { auth: b64('from:docker') } } });
    const env = { REGISTRY_AUTH_FILE: authFile, XDG_RUNTIME_DIR: runtime, DOCKER_CONFIG: docker };
    expect(await resolveCredentials('a.io', { env })).toEqual({ username: 'from', password: 'auth-file' });
    expect(await resolveCredentials('b.io', { env })).toEqual({ username: 'from', password: 'podman' });
    expect(await resolveCredentials('c.io', { env })).toEqual({ username: 'from', password: 'docker' });
    expect(await resolveCredentials('a.io', { env, username: 'x', password: 'y' })).toEqual({ username: 'x', password: 'y' });
    expect(credentialFiles({ env }).map((f) => f.kind)).toEqual(['registry-auth-file', 'podman', 'docker']);
    // An explicit directory replaces DOCKER_CONFIG; an empty variable counts as unset.
    expect(credentialFiles({ env: { REGISTRY_AUTH_FILE: '', XDG_RUNTIME_DIR: '' }, dockerConfigDir: '/d' })).toEqual([
      { kind: 'docker', path: join('/d', 'config.json') },
    ]);
  });

  it('reads identity tokens from auths entries, keeping the user name', async () => {
    const docker = join(await mkdtemp(join(dir, 'identity-')), 'docker');
    await file(join(docker, 'config.json'), {
      auths: { 'id.io': { auth: b64('me:'), identitytoken: 'refresh-1' }, 'bare.io': { identitytoken: 'refresh-2' } },
    });
    expect(await resolveCredentials('id.io', { dockerConfigDir: docker, env: {} })).toEqual({ username: 'me', password: '', identityToken: 'refresh-1' });
    expect(await resolveCredentials('bare.io', { dockerConfigDir: docker, env: {} })).toEqual({ username: '<token>', password: '', identityToken: 'refresh-2' });
    expect(await resolveCredentials('x.io', { username: '<token>', password: 'refresh-3' })).toEqual({ username: '<token>', password: '', identityToken: 'refresh-3' });
  });

  it.skipIf(process.platform === 'win32')('takes a helper\'s "<token>" user name as an identity token', async () => {
    const bin = await mkdtemp(join(dir, 'bin-'));
    await writeFile(join(bin, 'docker-credential-tok'), '#!/bin/sh\nread host\necho "{\\"ServerURL\\":\\"$host\\",\\"Username\\":\\"<token>\\",\\"Secret\\":\\"refresh-for-$host\\"}"\n');
    await chmod(join(bin, 'docker-credential-tok'), 0o755);
    const saved = process.env['PATH'];
    process.env['PATH'] = `${bin}${delimiter}${saved ?? ''}`;
    try {
      expect(await runCredentialHelper('tok', 'h.io')).toEqual({ username: '<token>', password: '', identityToken: 'refresh-for-h.io' });
    } finally {
      process.env['PATH'] = saved;
    }
  });
});

describe('insufficient_scope', () => {
  it('asks for the union of the scopes, each as its own scope parameter', async () => {
    const asked: string[][] = [];
    const auth = new Authenticator({
      registry: 'r.io',
      transport: {
        ping: () => Promise.resolve({ status: 401, headers: { 'www-authenticate': 'Bearer realm="https://auth.example/token",service="r"' }, url: 'https://r.io/v2/' }),
        get: (url) => {
          asked.push(url.searchParams.getAll('scope'));
          return Promise.resolve({ status: 200, headers: {}, body: Readable.from([Buffer.from(`{"token":"t${asked.length}"}`)]) });
        },
        post: () => Promise.reject(new Error('no OAuth here')),
      },
      credentials: () => Promise.resolve(undefined),
      isRealmAllowed: () => true,
    });
    const scope = 'repository:a/b:pull';
    expect(await auth.authorization(scope)).toBe('Bearer t1');
    auth.invalidate(
      scope,
      'Bearer realm="https://auth.example/token",service="r",scope="repository:a/b:pull repository:c/d:pull",error="insufficient_scope"',
    );
    expect(await auth.authorization(scope)).toBe('Bearer t2');
    expect(asked).toEqual([[scope], ['repository:a/b:pull', 'repository:c/d:pull']]);
    // The union sticks: the cached token serves the next request of that scope.
    expect(await auth.authorization(scope)).toBe('Bearer t2');
  });
});
