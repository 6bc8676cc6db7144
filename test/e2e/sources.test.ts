/**
 * Non-registry sources written by a real tool: an image pushed to the test registry is
 * copied by `skopeo` into an OCI layout (`oci:DIR:TAG`) and a `docker save`-format archive
 * (`docker-archive:FILE:REPO:TAG`), then read back with our sources and flattened; the
 * output must be what the registry pull gives.
 */
import { execFile, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { flattenLayers, type FlattenLayer } from '../../src/flatten/flatten.js';
import { pullRootfs } from '../../src/pull/pull-rootfs.js';
import { parseSourceReference } from '../../src/stores/index.js';
import { openSource } from '../helpers/open-source.js';
import { listTar, type ListedEntry } from '../helpers/listing.js';
import { pushImage, type PushedImage } from '../helpers/push.js';
import { buildTar, type FixtureEntry } from '../helpers/tar-fixture.js';

const execFileAsync = promisify(execFile);
const registry = inject('registry');
const work = await mkdtemp(join(tmpdir(), 'oci-rootfs-sources-e2e-'));
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function collect(tar: AsyncIterable<Buffer | Uint8Array>): Promise<ListedEntry[]> {
  const chunks: Buffer[] = [];
  for await (const chunk of tar) chunks.push(Buffer.from(chunk));
  return listTar(Buffer.concat(chunks));
}
const flatten = (layers: FlattenLayer[]): Promise<ListedEntry[]> => collect(flattenLayers(layers));
const byPath = (entries: ListedEntry[]): ListedEntry[] => [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));

const layers: FixtureEntry[][] = [
  [
    { name: 'usr', type: 'dir' },
    { name: 'usr/bin', type: 'dir' },
    { name: 'bin', type: 'symlink', linkname: 'usr/bin' },
    { name: 'usr/bin/sh', type: 'file', content: 'shell', mode: 0o755 },
    { name: 'etc', type: 'dir' },
    { name: 'etc/passwd', type: 'file', content: 'root:x:0:0::/root:/bin/sh\n' },
    { name: 'etc/motd', type: 'file', content: 'hello' },
  ],
  [
    { name: 'etc', type: 'dir' },
    { name: 'etc/.wh.motd', type: 'file' },
    { name: 'bin/tool', type: 'file', content: randomBytes(70_000), mode: 0o4755, uid: 0, gid: 0 },
    { name: 'home', type: 'dir' },
    { name: 'home/user', type: 'dir', uid: 1000, gid: 1000, mode: 0o700 },
  ],
];

describe('sources written by skopeo', () => {
  const repo = `e2e-sources/img-${randomBytes(4).toString('hex')}`;
  let pushed: PushedImage;
  let fromRegistry: ListedEntry[];
  let policy: string;

  beforeAll(async () => {
    pushed = await pushImage(registry, repo, 'v1', {
      format: 'docker',
      layers: layers.map((entries) => ({ tar: buildTar(entries), compression: 'gzip' as const })),
    });
    const noConfig = await mkdtemp(join(work, 'noconfig-'));
    fromRegistry = byPath(await collect(pullRootfs(`${registry}/${repo}:v1`, { dockerConfigDir: noConfig })));
    policy = join(work, 'policy.json');
    await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  });

  const skopeoCopy = (destination: string): Promise<unknown> =>
    execFileAsync('skopeo', ['--policy', policy, 'copy', '--src-tls-verify=false', `docker://${registry}/${repo}:v1`, destination]);

  it('reads an OCI layout (oci:DIR:TAG) and flattens it to what the registry pull gives', async () => {
    const dir = join(work, 'layout');
    await skopeoCopy(`oci:${dir}:stable`);
    const { image, layers: sources } = await openSource(parseSourceReference(`oci:${dir}:stable`));
    expect(image.platform).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(image.layers.map((layer) => layer.diffId)).toEqual(pushed.layers.map((layer) => layer.diffId));
    expect(image.config.json.config?.Cmd).toEqual(['/bin/sh']);
    const listing = byPath(await flatten(sources));
    expect(listing).toEqual(fromRegistry);
    expect(listing.map((entry) => entry.path)).toContain('usr/bin/tool');
    expect(listing.map((entry) => entry.path)).not.toContain('etc/motd');
  });

  it('reads a docker-archive (docker-archive:FILE:REPO:TAG) and flattens it to what the registry pull gives', async () => {
    const file = join(work, 'saved.tar');
    await skopeoCopy(`docker-archive:${file}:example/saved:v1`);
    const { image, layers: sources } = await openSource(parseSourceReference(`docker-archive:${file}:example/saved:v1`));
    expect(image.layers.map((layer) => layer.diffId)).toEqual(pushed.layers.map((layer) => layer.diffId));
    expect(byPath(await flatten(sources))).toEqual(fromRegistry);
  });

  it('pulls an oci: layout through pullRootfs, with the same events as a registry pull', async () => {
    const dir = join(work, 'layout-api');
    await skopeoCopy(`oci:${dir}:stable`);
    const events: string[] = [];
    const listing = await collect(pullRootfs(`oci:${dir}:stable`, { onEvent: (event) => events.push(event.type) }));
    expect(byPath(listing)).toEqual(fromRegistry);
    expect(events[0]).toBe('resolved');
    expect(events.filter((type) => type === 'layer-done')).toHaveLength(2);
    expect(events[events.length - 1]).toBe('done');
  });

  it('writes a docker-archive: source to a file with the CLI, and refuses a missing archive with status 2', () => {
    const file = join(work, 'saved-cli.tar');
    return skopeoCopy(`docker-archive:${file}:example/saved:v1`).then(async () => {
      const out = join(work, 'from-archive.tar');
      const cli = spawnSync(process.execPath, ['dist/cli/main.js', 'pull', `docker-archive:${file}`, '-o', out], { encoding: 'utf8' });
      expect(cli.stderr).toBe('');
      expect(cli.status).toBe(0);
      expect(byPath(await listTar(readFileSync(out)))).toEqual(fromRegistry);
      const missing = spawnSync(process.execPath, ['dist/cli/main.js', 'pull', `docker-archive:${join(work, 'nope.tar')}`, '-o', join(work, 'nope-out.tar')], { encoding: 'utf8' });
      expect(missing.status).toBe(2);
      expect(missing.stderr).toMatch(/^oci-rootfs: .*nope\.tar/);
      expect(readdirSync(work).filter((name) => name.startsWith('nope-out'))).toEqual([]);
    });
  });
});
