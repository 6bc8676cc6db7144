import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthError } from '../../src/errors.js';
import { parseTokenResponse } from '../../src/registry/auth.js';
import { DOCKER_HUB_AUTH_KEY, resolveCredentials } from '../../src/registry/credentials.js';
import { manifestMediaType } from '../../src/image/manifest.js';
import { MediaType } from '../../src/image/media-types.js';
import { parseErrorEnvelope, parseRetryAfter } from '../../src/registry/http.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'oci-rootfs-creds-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function withConfig(config: unknown): Promise<string> {
  const configDir = await mkdtemp(join(dir, 'cfg-'));
  await writeFile(join(configDir, 'config.json'), typeof config === 'string' ? config : JSON.stringify(config));
  return configDir;
}

const b64 = (text: string): string => Buffer.from(text).toString('base64');

describe('resolveCredentials', () => {
  it('prefers explicit credentials and wants both halves', async () => {
    expect(await resolveCredentials('x.io', { username: 'u', password: 'p', dockerConfigDir: dir })).toEqual({ username: 'u', password: 'p' });
    await expect(resolveCredentials('x.io', { username: 'u' })).rejects.toBeInstanceOf(AuthError);
  });

  it('treats a missing, unreadable or malformed config as no credentials', async () => {
    expect(await resolveCredentials('x.io', { dockerConfigDir: join(dir, 'nope') })).toBeUndefined();
    expect(await resolveCredentials('x.io', { dockerConfigDir: await withConfig('{not json') })).toBeUndefined();
    expect(await resolveCredentials('x.io', { dockerConfigDir: await withConfig('null') })).toBeUndefined();
  });

  it.each([
    ['x.io:5000', { auth: b64('u:p:with:colons') }, 'x.io:5000', { username: 'u', password: 'p:with:colons' }],
    ['https://x.io:5000', { auth: b64('u:p') }, 'x.io:5000', { username: 'u', password: 'p' }],
    ['http://x.io:5000/v2/', { username: 'u', password: 'p' }, 'x.io:5000', { username: 'u', password: 'p' }],
    [DOCKER_HUB_AUTH_KEY, { auth: b64('hub:pw') }, 'docker.io', { username: 'hub', password: 'pw' }],
    ['index.docker.io', { auth: b64('hub:pw') }, 'docker.io', { username: 'hub', password: 'pw' }],
  ])('reads auths key %s', async (key, entry, registry, expected) => {
    const configDir = await withConfig({ auths: { 'x.io': { auth: b64('wrong:host') }, [key]: entry } });
    expect(await resolveCredentials(registry, { dockerConfigDir: configDir })).toEqual(expected);
  });

  it('ignores entries of other hosts and empty entries', async () => {
    const configDir = await withConfig({ auths: { 'x.io': { auth: b64('a:b') }, 'y.io': {} } });
    expect(await resolveCredentials('x.io:5000', { dockerConfigDir: configDir })).toBeUndefined();
    expect(await resolveCredentials('y.io', { dockerConfigDir: configDir })).toBeUndefined();
  });

  it('reads $DOCKER_CONFIG when no directory is given', async () => {
    const configDir = await withConfig({ auths: { 'env.io': { auth: b64('e:v') } } });
    const saved = process.env['DOCKER_CONFIG'];
    process.env['DOCKER_CONFIG'] = configDir;
    try {
      expect(await resolveCredentials('env.io')).toEqual({ username: 'e', password: 'v' });
    } finally {
      if (saved === undefined) delete process.env['DOCKER_CONFIG'];
      else process.env['DOCKER_CONFIG'] = saved;
    }
  });

  it.skipIf(process.platform === 'win32')('asks a credential helper (credHelpers before auths, credsStore after)', async () => {
    const bin = await mkdtemp(join(dir, 'bin-'));
    // The helper protocol: server address on stdin, JSON on stdout, non-zero when unknown.
    await writeFile(
      join(bin, 'docker-credential-fake'),
      '#!/bin/sh\nread host\ncase "$host" in\n  helper.io) echo \'{"ServerURL":"helper.io","Username":"hu","Secret":"hs"}\' ;;\n  https://index.docker.io/v1/) echo \'{"Username":"hub","Secret":"hubs"}\' ;;\n  *) echo "credentials not found in native keychain"; exit 1 ;;\nesac\n',
    );
    await chmod(join(bin, 'docker-credential-fake'), 0o755);
    const savedPath = process.env['PATH'];
    process.env['PATH'] = `${bin}${delimiter}${savedPath ?? ''}`;
    try {
      const helperFirst = await withConfig({ credHelpers: { 'helper.io': 'fake' }, auths: { 'helper.io': { auth: b64('file:creds') } } });
      expect(await resolveCredentials('helper.io', { dockerConfigDir: helperFirst })).toEqual({ username: 'hu', password: 'hs' });
      const store = await withConfig({ credsStore: 'fake', auths: { 'other.io': { auth: b64('o:p') } } });
      expect(await resolveCredentials('docker.io', { dockerConfigDir: store })).toEqual({ username: 'hub', password: 'hubs' });
      expect(await resolveCredentials('other.io', { dockerConfigDir: store })).toEqual({ username: 'o', password: 'p' });
      expect(await resolveCredentials('unknown.io', { dockerConfigDir: store })).toBeUndefined();
      const missing = await withConfig({ credsStore: 'not-installed' });
      expect(await resolveCredentials('x.io', { dockerConfigDir: missing })).toBeUndefined();
    } finally {
      process.env['PATH'] = savedPath;
    }
  });
});

describe('token responses', () => {
  it('reads token or access_token and keeps at least 60 s of lifetime', () => {
    expect(parseTokenResponse(Buffer.from('{"token":"a","expires_in":10}'), 't', 1000)).toEqual({ token: 'a', expiresAt: 1000 + 60_000 - 5000 });
    expect(parseTokenResponse(Buffer.from('{"access_token":"b","expires_in":300}'), 't', 0)).toEqual({ token: 'b', expiresAt: 300_000 - 5000 });
    expect(parseTokenResponse(Buffer.from('{"token":"","access_token":"c"}'), 't', 0).token).toBe('c');
    expect(() => parseTokenResponse(Buffer.from('{}'), 't', 0)).toThrow(AuthError);
    expect(() => parseTokenResponse(Buffer.from('<html>'), 't', 0)).toThrow(AuthError);
  });
});

describe('response helpers', () => {
  it('parses the registry error envelope and tolerates anything else', () => {
    expect(parseErrorEnvelope('{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{"name":"x"}}]}')).toEqual([
      { code: 'NAME_UNKNOWN', message: 'repository name not known to registry', detail: { name: 'x' } },
    ]);
    expect(parseErrorEnvelope('not json')).toEqual([]);
    expect(parseErrorEnvelope('{"errors":"nope"}')).toEqual([]);
    expect(parseErrorEnvelope('{"errors":[null,{"message":3}]}')).toEqual([{ code: 'UNKNOWN', message: '' }]);
  });

  it('reads Retry-After as seconds or as an HTTP date', () => {
    expect(parseRetryAfter('120')).toBe(120);
    expect(parseRetryAfter(new Date(10_000 + 30_000).toUTCString(), 10_000)).toBe(30);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(undefined)).toBeUndefined();
  });

  it('trusts Content-Type, then the JSON mediaType, then the shape', () => {
    expect(manifestMediaType(`${MediaType.dockerManifest}; charset=utf-8`, { mediaType: MediaType.ociManifest })).toBe(MediaType.dockerManifest);
    expect(manifestMediaType('application/json', { mediaType: MediaType.ociIndex })).toBe(MediaType.ociIndex);
    expect(manifestMediaType(undefined, { schemaVersion: 2, manifests: [] })).toBe(MediaType.ociIndex);
    expect(manifestMediaType('text/plain', { schemaVersion: 2, config: {}, layers: [] })).toBe(MediaType.ociManifest);
    expect(manifestMediaType(undefined, { schemaVersion: 1, fsLayers: [] })).toBe(MediaType.dockerManifestSchema1);
    expect(manifestMediaType('application/json', {})).toBeUndefined();
  });
});
