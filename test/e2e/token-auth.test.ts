/**
 * The token flow against the real registry in token mode (`auth: token:`), with the token
 * server in this process signing ES256 JWTs the registry verifies against its
 * `rootcertbundle`. The realm is on another origin than the registry, as on Docker Hub.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuthError } from '../../src/errors.js';
import { RegistryClient, type RegistryClientOptions } from '../../src/registry/client.js';
import { makeTar, pushImage, type PushedImage } from '../helpers/push.js';
import { makeSigningCert, startConfiguredRegistry, type ConfiguredRegistry } from '../helpers/tls.js';
import { startTokenServer, tokenAuthConfig, TOKEN_SERVICE, type TokenServer } from '../helpers/token-server.js';

const work = await mkdtemp(join(tmpdir(), 'oci-rootfs-token-'));
const storage = join(work, 'storage');
const noConfig = join(work, 'no-config');
const suffix = randomBytes(3).toString('hex');
let plain: ConfiguredRegistry;
let secured: ConfiguredRegistry;
let tokens: TokenServer;
let privateImage: PushedImage;
let publicImage: PushedImage;
/** Tests flip these to make the token server stingy or its tokens stale. */
let withholdNext = 0;
let expiredNext = 0;
const clients: RegistryClient[] = [];

beforeAll(async () => {
  const cert = makeSigningCert(work);
  tokens = await startTokenServer({
    cert,
    users: { alice: 'wonder:land' },
    refreshTokens: { 'refresh-alice': 'alice' },
    grant: (user, name, actions) => {
      if (withholdNext > 0) {
        withholdNext--;
        return [];
      }
      const pull = actions.filter((action) => action === 'pull');
      if (name.startsWith('public/')) return pull;
      return user === 'alice' && name.startsWith('private/') ? pull : [];
    },
    lifetime: () => {
      if (expiredNext > 0) {
        expiredNext--;
        return -3600; // well past the registry's 60 s leeway
      }
      return 300;
    },
  });
  plain = await startConfiguredRegistry({ storage });
  secured = await startConfiguredRegistry({ storage, auth: tokenAuthConfig(tokens.realm, cert.certFile) });
  const layers = [{ tar: await makeTar([{ name: 'etc/hostname', content: 'token\n' }]), compression: 'gzip' as const }];
  privateImage = await pushImage(plain.host, `private/app-${suffix}`, 'v1', { layers });
  publicImage = await pushImage(plain.host, `public/app-${suffix}`, 'v1', { layers });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.destroy()));
  await secured?.stop();
  await plain?.stop();
  await tokens?.close();
  await rm(work, { recursive: true, force: true });
});

beforeEach(() => {
  tokens.requests.length = 0;
  withholdNext = 0;
  expiredNext = 0;
});

function client(options: RegistryClientOptions = {}): RegistryClient {
  const made = new RegistryClient(secured.host, { dockerConfigDir: noConfig, env: {}, plainHttp: true, ...options });
  clients.push(made);
  return made;
}

/** Fetches the manifest by tag and the first layer, as a pull does. */
async function pullManifestAndLayer(registry: RegistryClient, repository: string, image: PushedImage): Promise<string> {
  const manifest = await registry.request({ path: `/v2/${repository}/manifests/v1`, repository, what: 'manifest', headers: { accept: image.manifestMediaType } });
  const digest = String(manifest.headers['docker-content-digest']);
  await manifest.body.resume();
  const layer = image.layers[0];
  if (layer === undefined) throw new Error('no layer');
  const blob = await registry.request({ path: `/v2/${repository}/blobs/${layer.digest}`, repository, what: 'layer' });
  let size = 0;
  for await (const chunk of blob.body) size += (chunk as Buffer).length;
  expect(size).toBe(layer.size);
  return digest;
}

describe('a registry in token mode', () => {
  it('lets anonymous pulls of a public repository through with an anonymous token', async () => {
    const digest = await pullManifestAndLayer(client(), `public/app-${suffix}`, publicImage);
    expect(digest).toBe(publicImage.manifestDigest);
    expect(tokens.requests).toEqual([
      expect.objectContaining({ grantType: 'anonymous', service: TOKEN_SERVICE, scopes: [`repository:public/app-${suffix}:pull`], status: 200 }),
    ]);
  });

  it('refuses an anonymous pull of a private repository, saying no credentials were found', async () => {
    const error = await pullManifestAndLayer(client(), `private/app-${suffix}`, privateImage).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthError);
    expect((error as Error).message).toMatch(/no credentials found/);
  });

  it('pulls a private repository with a token fetched with Basic credentials', async () => {
    const digest = await pullManifestAndLayer(client({ username: 'alice', password: 'wonder:land' }), `private/app-${suffix}`, privateImage);
    expect(digest).toBe(privateImage.manifestDigest);
    // One token serves the manifest and the blob: it is cached per scope.
    expect(tokens.requests).toEqual([expect.objectContaining({ user: 'alice', grantType: 'basic', status: 200 })]);
  });

  it('says the token service refused the credentials when the password is wrong', async () => {
    const error = await pullManifestAndLayer(client({ username: 'alice', password: 'nope' }), `private/app-${suffix}`, privateImage).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthError);
    expect((error as Error).message).toMatch(/token service refused the credentials of "alice"/);
  });

  it('keeps a token to its scope: the registry refuses it for a repository the user may not read', async () => {
    const other = `secret/app-${suffix}`;
    const error = await client({ username: 'alice', password: 'wonder:land' })
      .request({ path: `/v2/${other}/manifests/v1`, repository: other, what: 'manifest' })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthError);
    expect(tokens.requests.every((r) => r.scopes.join() === `repository:${other}:pull`)).toBe(true);
  });

  it('fetches a new token when the registry says the one it got grants too little (insufficient_scope)', async () => {
    withholdNext = 1; // the first token comes with an empty access list
    const digest = await pullManifestAndLayer(client({ username: 'alice', password: 'wonder:land' }), `private/app-${suffix}`, privateImage);
    expect(digest).toBe(privateImage.manifestDigest);
    expect(tokens.requests).toHaveLength(2);
  });

  it('fetches a new token when the registry rejects an expired one, however long it was said to live', async () => {
    expiredNext = 1;
    const digest = await pullManifestAndLayer(client({ username: 'alice', password: 'wonder:land' }), `private/app-${suffix}`, privateImage);
    expect(digest).toBe(privateImage.manifestDigest);
    expect(tokens.requests).toHaveLength(2);
  });

  it('exchanges an identity token from the config with a refresh_token grant', async () => {
    const configDir = await mkdtemp(join(work, 'cfg-'));
    const auth = Buffer.from('alice:').toString('base64');
    await writeFile(join(configDir, 'config.json'), JSON.stringify({ auths: { [secured.host]: { auth, identitytoken: 'refresh-alice' } } }));
    const digest = await pullManifestAndLayer(client({ dockerConfigDir: configDir }), `private/app-${suffix}`, privateImage);
    expect(digest).toBe(privateImage.manifestDigest);
    expect(tokens.requests).toEqual([
      expect.objectContaining({ method: 'POST', grantType: 'refresh_token', user: 'alice', clientId: 'oci-rootfs', service: TOKEN_SERVICE, scopes: [`repository:private/app-${suffix}:pull`] }),
    ]);
  });

  it('exchanges an identity token given as user "<token>" and reports a refused one as an auth error', async () => {
    const good = client({ username: '<token>', password: 'refresh-alice' });
    expect(await pullManifestAndLayer(good, `private/app-${suffix}`, privateImage)).toBe(privateImage.manifestDigest);
    const error = await pullManifestAndLayer(client({ username: '<token>', password: 'stale' }), `private/app-${suffix}`, privateImage).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthError);
    expect((error as Error).message).toMatch(/refused the identity token/);
  });
});
