/**
 * Docker schema 1 manifests (plain functions): the digest of a signed manifest covers its JWS
 * payload, the manifest is read from that payload, layers come out base first without
 * throwaway layers, and the config is synthesised from the top `v1Compatibility`.
 */
import { describe, expect, it } from 'vitest';
import { DigestMismatchError, ManifestError } from '../../src/errors.js';
import { checkFetchedManifest } from '../../src/image/manifest.js';
import {
  EMPTY_GZIP_LAYER_DIGEST,
  parseSchema1,
  schema1Payload,
  synthesiseSchema1Config,
} from '../../src/image/schema1.js';
import { sha256 } from '../helpers/push.js';

const SIGNED = 'application/vnd.docker.distribution.manifest.v1+prettyjws';
const d = (n: number): string => sha256(Buffer.from(`layer ${n}`));

/** History top first, as schema 1 lists it. */
const history = [
  { id: 'c', parent: 'b', created: '2024-01-03T00:00:00Z', throwaway: true, container_config: { Cmd: ['/bin/sh', '-c', '#(nop) CMD ["sh"]'] }, config: { Cmd: ['sh'], Env: ['PATH=/bin'], User: 'app', WorkingDir: '/srv', Entrypoint: null, ExposedPorts: { '80/tcp': {} } }, architecture: 'arm64', os: 'linux', variant: 'v8' },
  { id: 'b', parent: 'a', created: '2024-01-02T00:00:00Z', container_config: { Cmd: ['/bin/sh', '-c', 'echo hi > /hi'] } },
  { id: 'a', created: '2024-01-01T00:00:00Z', container_config: { Cmd: ['/bin/sh', '-c', '#(nop) ADD file:x in /'] } },
];
const manifest = {
  schemaVersion: 1,
  name: 'library/example',
  tag: 'latest',
  architecture: 'arm64',
  fsLayers: [{ blobSum: EMPTY_GZIP_LAYER_DIGEST }, { blobSum: d(2) }, { blobSum: d(1) }],
  history: history.map((entry) => ({ v1Compatibility: JSON.stringify(entry) })),
};

/** A pretty JWS as libtrust writes it: the signatures spliced in before the closing brace. */
function sign(payload: Buffer, extra = ''): Buffer {
  const text = payload.toString('utf8');
  const formatLength = text.lastIndexOf('\n}');
  const protectedHeader = Buffer.from(
    JSON.stringify({ formatLength, formatTail: Buffer.from(text.slice(formatLength)).toString('base64url'), time: '2024-01-01T00:00:00Z' }),
  ).toString('base64url');
  const signature = { header: { jwk: { crv: 'P-256', kty: 'EC', x: 'x', y: 'y' }, alg: 'ES256' }, signature: 'c2ln', protected: protectedHeader };
  const signatures = JSON.stringify([signature], null, 3).replace(/\n/g, '\n   ');
  return Buffer.from(`${text.slice(0, formatLength)},\n   "signatures": ${signatures}${extra}${text.slice(formatLength)}`);
}

const payload = Buffer.from(JSON.stringify(manifest, null, 3));
const signed = sign(payload);

describe('schema 1 digest', () => {
  it('covers the JWS payload of a signed manifest, not the bytes served', () => {
    expect(schema1Payload(signed, JSON.parse(signed.toString()) as Record<string, unknown>, 'm').equals(payload)).toBe(true);
    const fetched = checkFetchedManifest(signed, SIGNED, sha256(payload), 'manifest');
    expect(fetched.digest).toBe(sha256(payload));
    expect(fetched.bytes.equals(payload)).toBe(true);
    expect(fetched.signedBytes?.equals(signed)).toBe(true);
    expect(fetched.mediaType).toBe(SIGNED);
  });

  it('refuses a signed manifest pulled by the digest of its whole body', () => {
    expect(() => checkFetchedManifest(signed, SIGNED, sha256(signed), 'manifest')).toThrow(DigestMismatchError);
  });

  it('digests an unsigned schema 1 manifest over its bytes', () => {
    const fetched = checkFetchedManifest(payload, 'application/vnd.docker.distribution.manifest.v1+json', undefined, 'm');
    expect(fetched.digest).toBe(sha256(payload));
    expect(fetched.signedBytes).toBeUndefined();
  });

  it('reads the manifest from the payload, so keys smuggled in after the signatures are ignored', () => {
    const smuggled = sign(payload, `,\n   "fsLayers": [{"blobSum": "${d(666)}"}]`);
    const fetched = checkFetchedManifest(smuggled, SIGNED, sha256(payload), 'manifest');
    expect(parseSchema1(fetched.json, 'm').layers.map((l) => l.digest)).toEqual([d(1), d(2)]);
  });

  it('refuses signatures that disagree on the payload', () => {
    const json = JSON.parse(signed.toString()) as { signatures: Array<Record<string, unknown>> };
    const other = Buffer.from(JSON.stringify({ formatLength: 10, formatTail: 'Cn0' })).toString('base64url');
    json.signatures.push({ ...json.signatures[0], protected: other });
    expect(() => schema1Payload(signed, json as unknown as Record<string, unknown>, 'm')).toThrow(/disagree/);
  });
});

describe('schema 1 layers and config', () => {
  const image = parseSchema1(manifest, 'm');

  it('lists layers base first and skips throwaway layers', () => {
    expect(image.layers).toEqual([
      { digest: d(1), position: 2 },
      { digest: d(2), position: 1 },
    ]);
    expect(image.history.map((h) => h.id)).toEqual(['a', 'b', 'c']);
  });

  it('synthesises an OCI-like config from the top v1Compatibility', () => {
    const config = synthesiseSchema1Config(image);
    expect(config).toMatchObject({
      architecture: 'arm64',
      os: 'linux',
      variant: 'v8',
      created: '2024-01-03T00:00:00Z',
      config: { Cmd: ['sh'], Env: ['PATH=/bin'], User: 'app', WorkingDir: '/srv', ExposedPorts: { '80/tcp': {} } },
      rootfs: { type: 'layers', diff_ids: [] },
    });
    expect(config.config).not.toHaveProperty('Entrypoint');
    expect(config.history).toEqual([
      { created: '2024-01-01T00:00:00Z', created_by: '/bin/sh -c #(nop) ADD file:x in /' },
      { created: '2024-01-02T00:00:00Z', created_by: '/bin/sh -c echo hi > /hi' },
      { created: '2024-01-03T00:00:00Z', created_by: '/bin/sh -c #(nop) CMD ["sh"]', empty_layer: true },
    ]);
  });

  it('falls back on container_config when the top entry has no config', () => {
    const bare = parseSchema1(
      { ...manifest, fsLayers: [{ blobSum: d(1) }], history: [{ v1Compatibility: JSON.stringify({ container_config: { Cmd: ['x'] } }) }] },
      'm',
    );
    expect(synthesiseSchema1Config(bare)).toMatchObject({ architecture: 'arm64', os: 'linux', config: { Cmd: ['x'] } });
  });

  it('refuses fsLayers and history of different lengths, and a bad blobSum', () => {
    expect(() => parseSchema1({ ...manifest, history: manifest.history.slice(1) }, 'm')).toThrow(ManifestError);
    expect(() => parseSchema1({ ...manifest, fsLayers: [{ blobSum: 'md5:x' }, ...manifest.fsLayers.slice(1)] }, 'm')).toThrow(
      /invalid blobSum/,
    );
  });
});
