/**
 * `inspect`, `config`, `exists` and the extra outputs of `pull` (--config-out,
 * --digest-file, --if-changed), run through the CLI program in this process (`runCli`,
 * what the binary runs) against the real test registry, with a single-platform image and a
 * multi-platform index (with an attestation entry), and against the same image copied to
 * an OCI layout and a docker-archive. A few runs spawn the built binary for its exit status.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { runInProcess, type CliRun } from '../helpers/cli.js';
import { makeTar, pushImage, pushIndex, type PushedImage } from '../helpers/push.js';

const registry = inject('registry');
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = join(ROOT, 'dist/cli/main.js');
const work = await mkdtemp(join(tmpdir(), 'oci-rootfs-cli-commands-'));
const emptyConfigDir = await mkdtemp(join(tmpdir(), 'oci-rootfs-cli-commands-noconfig-'));
const hostArch = process.arch === 'arm64' ? 'arm64' : 'amd64';
const otherArch = hostArch === 'arm64' ? 'amd64' : 'arm64';

const suffix = randomBytes(4).toString('hex');
const singleRepo = `e2e-cli/single-${suffix}`;
const multiRepo = `e2e-cli/multi-${suffix}`;
let single: PushedImage;
let host: PushedImage;
let other: PushedImage;
let index: { digest: string; bytes: Buffer };

const CONFIG = {
  User: 'builder',
  WorkingDir: '/home/builder',
  Env: ['PATH=/usr/bin:/bin', 'LANG=C.UTF-8'],
  Entrypoint: ['/usr/bin/tini', '--'],
  Cmd: ['/bin/bash', '-l'],
  Labels: { 'org.opencontainers.image.title': 'e2e' },
};

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (\`npm test\` does)`);
  const base = await makeTar([{ name: 'etc/', type: 'directory' }, { name: 'etc/os-release', content: 'ID=e2e\n' }]);
  const top = await makeTar([{ name: 'usr/', type: 'directory' }, { name: 'usr/share/doc/readme', content: 'doc\n' }]);
  single = await pushImage(registry, singleRepo, 'v1', {
    layers: [{ tar: base, compression: 'gzip' }, { tar: top, compression: 'none' }],
    platform: { os: 'linux', architecture: hostArch },
    config: { architecture: hostArch, os: 'linux', config: CONFIG },
  });
  host = await pushImage(registry, multiRepo, `only-${hostArch}`, {
    layers: [{ tar: await makeTar([{ name: 'arch', content: `${hostArch}\n` }]), compression: 'gzip' }],
    platform: { os: 'linux', architecture: hostArch },
  });
  other = await pushImage(registry, multiRepo, `only-${otherArch}`, {
    layers: [{ tar: await makeTar([{ name: 'arch', content: `${otherArch}\n` }]), compression: 'gzip' }],
    platform: { os: 'linux', architecture: otherArch },
  });
  index = await pushIndex(registry, multiRepo, 'v1', [
    { digest: host.manifestDigest, size: host.manifestSize, mediaType: host.manifestMediaType, platform: { os: 'linux', architecture: hostArch } },
    { digest: other.manifestDigest, size: other.manifestSize, mediaType: other.manifestMediaType, platform: { os: 'linux', architecture: otherArch } },
    {
      digest: host.manifestDigest,
      size: host.manifestSize,
      mediaType: host.manifestMediaType,
      platform: { os: 'unknown', architecture: 'unknown' },
      annotations: { 'vnd.docker.reference.type': 'attestation-manifest' },
    },
  ]);
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
  await rm(emptyConfigDir, { recursive: true, force: true });
});

type Run = CliRun;

/** `oci-rootfs <args>` in this process, with no Docker config of the developer's. */
function cli(args: string[], cwd = work): Promise<Run> {
  return runInProcess(args, { cwd, env: { DOCKER_CONFIG: emptyConfigDir } });
}

/** The built binary, spawned: for the exit status a shell sees. */
function spawned(args: string[], cwd = work): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolvePromise) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { cwd, env: { ...process.env, DOCKER_CONFIG: emptyConfigDir }, encoding: 'buffer', timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
        resolvePromise({ code, stdout, stderr: stderr.toString('utf8') });
      },
    );
  });
}

const text = (run: Run): string => run.stdout.toString('utf8');
const sha256 = (bytes: Buffer): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
const ref = (repo: string, tag: string): string => `${registry}/${repo}:${tag}`;

describe('oci-rootfs inspect', () => {
  it('shows the manifest, layers and the config fields a rootfs user needs, as text', async () => {
    const result = await cli(['inspect', ref(singleRepo, 'v1')]);
    expect(result.code, result.stderr).toBe(0);
    const out = text(result);
    expect(out).toContain(`Reference   ${ref(singleRepo, 'v1')}\n`);
    expect(out).toContain(`Manifest    ${single.manifestDigest}  application/vnd.oci.image.manifest.v1+json`);
    expect(out).toContain(`Platform    linux/${hostArch}\n`);
    expect(out).toContain(`Config      ${single.configDigest}`);
    expect(out).toMatch(/Layers {6}2, [\d.]+ (B|kB) compressed \(base first\)\n/);
    expect(out).toContain(`  1  ${single.layers[0]?.digest}  application/vnd.oci.image.layer.v1.tar+gzip  `);
    expect(out).toContain(`  2  ${single.layers[1]?.digest}  application/vnd.oci.image.layer.v1.tar  `);
    expect(out).toContain('Env\n  PATH=/usr/bin:/bin\n  LANG=C.UTF-8\n');
    expect(out).toContain('Entrypoint  ["/usr/bin/tini","--"]\n');
    expect(out).toContain('Cmd         ["/bin/bash","-l"]\n');
    expect(out).toContain('User        builder\n');
    expect(out).toContain('WorkingDir  /home/builder\n');
    expect(out).toContain('Labels\n  org.opencontainers.image.title=e2e\n');
    expect(out).not.toContain('Index');
  });

  it('lists the platforms of an index and marks the one it picked and the attestation', async () => {
    const result = await cli(['inspect', ref(multiRepo, 'v1')]);
    expect(result.code, result.stderr).toBe(0);
    const out = text(result);
    expect(out).toContain(`Index       ${index.digest}  application/vnd.oci.image.index.v1+json, 3 entries\n`);
    expect(out).toMatch(new RegExp(`  linux/${hostArch} +${host.manifestDigest}  \\d+ B  \\(selected\\)\\n`));
    expect(out).toMatch(new RegExp(`  linux/${otherArch} +${other.manifestDigest}  \\d+ B\\n`));
    expect(out).toMatch(/ {2}unknown\/unknown +sha256:[0-9a-f]{64} {2}\d+ B {2}not an image \(attestation\)\n/);
    expect(out).toContain(`Manifest    ${host.manifestDigest}`);
  });

  it('shows another platform with --platform, as JSON with --json', async () => {
    const result = await cli(['inspect', '--json', '--platform', `linux/${otherArch}`, ref(multiRepo, 'v1')]);
    expect(result.code, result.stderr).toBe(0);
    const json = JSON.parse(text(result)) as {
      index: { digest: string; manifests: Array<{ digest: string; platform?: { architecture: string }; notAnImage: boolean }> };
      manifest: { digest: string; size: number };
      platform: { os: string; architecture: string };
      config: { digest: string };
      layers: Array<{ digest: string; mediaType: string; size: number }>;
      imageConfig: { Cmd?: string[] } | null;
    };
    expect(json.index.digest).toBe(index.digest);
    expect(json.index.manifests.map((entry) => entry.notAnImage)).toEqual([false, false, true]);
    expect(json.manifest).toEqual({ digest: other.manifestDigest, mediaType: other.manifestMediaType, size: other.manifestSize });
    expect(json.platform).toEqual({ os: 'linux', architecture: otherArch });
    expect(json.config.digest).toBe(other.configDigest);
    expect(json.layers).toEqual(other.layers.map(({ digest, mediaType, size }) => ({ digest, mediaType, size })));
    expect(json.imageConfig?.Cmd).toEqual(['/bin/sh']);
  });

  it('prints the index bytes with --raw, and the platform manifest bytes with --raw --platform', async () => {
    const raw = await cli(['inspect', '--raw', ref(multiRepo, 'v1')]);
    expect(raw.code, raw.stderr).toBe(0);
    expect(raw.stdout.equals(index.bytes)).toBe(true);
    const platform = await cli(['inspect', '--raw', '--platform', `linux/${otherArch}`, ref(multiRepo, 'v1')]);
    expect(platform.code, platform.stderr).toBe(0);
    expect(sha256(platform.stdout)).toBe(other.manifestDigest);
    const plain = await cli(['inspect', '--raw', ref(singleRepo, 'v1')]);
    expect(plain.stdout.equals(single.manifestBytes)).toBe(true);
  });

  it('exits 3 for a missing tag or platform and 2 for --json with --raw', async () => {
    const missing = await cli(['inspect', ref(singleRepo, 'nope')]);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toMatch(/^oci-rootfs: .*not found/);
    const platform = await cli(['inspect', '--platform', 'linux/s390x', ref(multiRepo, 'v1')]);
    expect(platform.code).toBe(3);
    expect(platform.stderr).toContain(`no manifest for platform linux/s390x; available: `);
    expect((await cli(['inspect', '--json', '--raw', ref(singleRepo, 'v1')])).code).toBe(2);
  });
});

describe('a config of the wrong shape', () => {
  it('is malformed content (exit 8) naming the field, for inspect, config and pull alike', async () => {
    const repo = `e2e-cli/bad-env-${suffix}`;
    await pushImage(registry, repo, 'v1', {
      layers: [{ tar: await makeTar([{ name: 'a', content: 'a' }]), compression: 'gzip' }],
      config: { architecture: hostArch, os: 'linux', config: { Env: 'PATH=/bin' } },
    });
    for (const args of [['inspect'], ['config'], ['pull', '-o', join(work, 'bad-env.tar')]]) {
      const result = await cli([...args, ref(repo, 'v1')]);
      expect(result.code, result.stderr).toBe(8);
      expect(result.stderr).toMatch(/^oci-rootfs: config sha256:[0-9a-f]{64}: "config"\.Env is not a list of strings \(the string "PATH=\/bin"\)\n$/);
    }
  });
});

describe('oci-rootfs config', () => {
  it('prints the whole config pretty, and its exact bytes with --raw', async () => {
    const pretty = await cli(['config', ref(singleRepo, 'v1')]);
    expect(pretty.code, pretty.stderr).toBe(0);
    expect(text(pretty)).toBe(`${JSON.stringify(JSON.parse(single.configBytes.toString('utf8')), null, 2)}\n`);
    const raw = await cli(['config', '--raw', ref(singleRepo, 'v1')]);
    expect(raw.stdout.equals(single.configBytes)).toBe(true);
    expect(sha256(raw.stdout)).toBe(single.configDigest);
  });

  it('prints the config of the picked platform of an index', async () => {
    const result = await cli(['config', '--raw', '--platform', `linux/${otherArch}`, ref(multiRepo, 'v1')]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.equals(other.configBytes)).toBe(true);
  });
});

describe('oci-rootfs exists', () => {
  it('exits 0 and prints the digest the reference points at', async () => {
    const result = await cli(['exists', ref(multiRepo, 'v1')]);
    expect(result.code, result.stderr).toBe(0);
    expect(text(result)).toBe(`${index.digest}\n`);
    const byDigest = await cli(['exists', '-q', `${registry}/${singleRepo}@${single.manifestDigest}`]);
    expect(byDigest).toMatchObject({ code: 0, stderr: '' });
    expect(byDigest.stdout.length).toBe(0);
  });

  it('exits 3 for a missing tag, repository or platform, and 0 for a present platform', async () => {
    expect((await cli(['exists', ref(singleRepo, 'nope')])).code).toBe(3);
    expect((await cli(['exists', ref(`e2e-cli/absent-${suffix}`, 'v1')])).code).toBe(3);
    const platform = await cli(['exists', '--platform', 'linux/s390x', ref(multiRepo, 'v1')]);
    expect(platform.code).toBe(3);
    expect(platform.stderr).toBe(`oci-rootfs: ${ref(multiRepo, 'v1')}: no such image for linux/s390x\n`);
    expect((await cli(['exists', '--platform', `linux/${otherArch}`, ref(multiRepo, 'v1')])).code).toBe(0);
    expect((await cli(['exists', '--platform', `linux/${otherArch}`, ref(singleRepo, 'v1')])).code).toBe(3);
    expect((await cli(['exists', '--platform', `linux/${hostArch}`, ref(singleRepo, 'v1')])).code).toBe(0);
    const quiet = await cli(['exists', '-q', ref(singleRepo, 'nope')]);
    expect(quiet).toMatchObject({ code: 3, stderr: '' });
  });

  it('gives the shell its exit statuses: 0 present, 3 absent (the built binary)', async () => {
    expect((await spawned(['exists', '-q', ref(singleRepo, 'v1')])).code).toBe(0);
    const absent = await spawned(['exists', ref(singleRepo, 'nope')]);
    expect(absent.code).toBe(3);
    expect(absent.stderr).toBe(`oci-rootfs: ${ref(singleRepo, 'nope')}: no such image\n`);
  });

  it('exits with the status of what stopped it: 2 for a bad reference, 6 for no registry', async () => {
    const bad = await cli(['exists', 'bad//name']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^oci-rootfs: invalid image reference "bad\/\/name"/);
    const unreachable = await cli(['exists', '127.0.0.1:9/nothing:here']);
    expect(unreachable.code).toBe(6);
    expect(unreachable.stderr).toMatch(/^oci-rootfs: /);
  });
});

describe('pull --config-out and --digest-file', () => {
  it('writes the image config and the sha256 of the output beside the rootfs', async () => {
    const dir = await mkdtemp(join(work, 'extras-'));
    const result = await cli(
      ['pull', ref(singleRepo, 'v1'), '-o', 'rootfs.tar.gz', '--config-out', 'config.json', '--digest-file', 'rootfs.sha256'],
      dir,
    );
    expect(result.code, result.stderr).toBe(0);
    const output = await readFile(join(dir, 'rootfs.tar.gz'));
    expect(await readFile(join(dir, 'rootfs.sha256'), 'utf8')).toBe(`${sha256(output)}  rootfs.tar.gz\n`);
    const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as { config: typeof CONFIG };
    expect(config.config).toEqual(CONFIG);
    expect((await readdir(dir)).sort()).toEqual(['config.json', 'rootfs.sha256', 'rootfs.tar.gz']);
  });

  it('hashes stdout too, and writes neither file when the pull fails', async () => {
    const dir = await mkdtemp(join(work, 'extras-stdout-'));
    const ok = await cli(['pull', ref(singleRepo, 'v1'), '--digest-file', 'out.sha256'], dir);
    expect(ok.code, ok.stderr).toBe(0);
    expect(await readFile(join(dir, 'out.sha256'), 'utf8')).toBe(`${sha256(ok.stdout)}  -\n`);
    const failed = await cli(['pull', ref(singleRepo, 'nope'), '-o', 'x.tar', '--config-out', 'c.json', '--digest-file', 'd'], dir);
    expect(failed.code).toBe(3);
    expect((await readdir(dir)).sort()).toEqual(['out.sha256']);
  });
});

describe('pull --if-changed', () => {
  it('pulls once, then does nothing while the registry has the same image, and pulls again when it changed', async () => {
    const dir = await mkdtemp(join(work, 'if-changed-'));
    const repo = `e2e-cli/if-changed-${suffix}`;
    const tar = await makeTar([{ name: 'version', content: '1\n' }]);
    const first = await pushImage(registry, repo, 'v1', { layers: [{ tar, compression: 'gzip' }] });
    const reference = ref(repo, 'v1');

    const pulled = await cli(['pull', '--if-changed', reference, '-o', 'rootfs.tar'], dir);
    expect(pulled.code, pulled.stderr).toBe(0);
    const record = JSON.parse(await readFile(join(dir, 'rootfs.tar.oci-rootfs.json'), 'utf8')) as Record<string, unknown>;
    expect(record).toMatchObject({ version: 1, digest: first.manifestDigest, manifestDigest: first.manifestDigest });
    const before = await stat(join(dir, 'rootfs.tar'));

    const skipped = await cli(['pull', '--if-changed', reference, '-o', 'rootfs.tar'], dir);
    expect(skipped.code).toBe(0);
    expect(skipped.stderr).toBe(
      `rootfs.tar is up to date: ${reference} is still ${first.manifestDigest} (see rootfs.tar.oci-rootfs.json); nothing pulled\n`,
    );
    expect((await stat(join(dir, 'rootfs.tar'))).mtimeMs).toBe(before.mtimeMs);
    const json = await cli(['pull', '--if-changed', '--progress', 'json', reference, '-o', 'rootfs.tar'], dir);
    expect(JSON.parse(json.stderr)).toEqual({ type: 'up-to-date', reference, digest: first.manifestDigest, output: 'rootfs.tar' });

    // Different options make different bytes: not up to date.
    const gz = await cli(['pull', '--if-changed', '--progress', 'plain', reference, '-o', 'rootfs.tar', '--platform', 'linux/amd64'], dir);
    expect(gz.stderr).toMatch(/^resolved /);

    const second = await pushImage(registry, repo, 'v1', { layers: [{ tar: await makeTar([{ name: 'version', content: '2\n' }]), compression: 'gzip' }] });
    const again = await cli(['pull', '--if-changed', '--progress', 'plain', reference, '-o', 'rootfs.tar', '--platform', 'linux/amd64'], dir);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain(`to ${second.manifestDigest}`);
    const updated = JSON.parse(await readFile(join(dir, 'rootfs.tar.oci-rootfs.json'), 'utf8')) as Record<string, unknown>;
    expect(updated['digest']).toBe(second.manifestDigest);
  });

  it('compares the platform manifest when only another platform of the index changed', async () => {
    const dir = await mkdtemp(join(work, 'if-changed-index-'));
    const repo = `e2e-cli/if-changed-index-${suffix}`;
    const build = async (arch: string, content: string): Promise<PushedImage> =>
      pushImage(registry, repo, `${arch}-${content}`, {
        layers: [{ tar: await makeTar([{ name: 'arch', content }]), compression: 'gzip' }],
        platform: { os: 'linux', architecture: arch },
      });
    const entry = (image: PushedImage, arch: string): Parameters<typeof pushIndex>[3][number] => ({
      digest: image.manifestDigest,
      size: image.manifestSize,
      mediaType: image.manifestMediaType,
      platform: { os: 'linux', architecture: arch },
    });
    const mine = await build(hostArch, 'a');
    const theirs1 = await build(otherArch, 'b');
    const theirs2 = await build(otherArch, 'c');
    const index1 = await pushIndex(registry, repo, 'v1', [entry(mine, hostArch), entry(theirs1, otherArch)]);
    const reference = ref(repo, 'v1');

    expect((await cli(['pull', '--if-changed', reference, '-o', 'rootfs.tar'], dir)).code).toBe(0);
    const record = JSON.parse(await readFile(join(dir, 'rootfs.tar.oci-rootfs.json'), 'utf8')) as Record<string, unknown>;
    expect(record).toMatchObject({ digest: index1.digest, indexDigest: index1.digest, manifestDigest: mine.manifestDigest });

    // Another platform is rebuilt: the index digest moves, our manifest does not.
    const index2 = await pushIndex(registry, repo, 'v1', [entry(mine, hostArch), entry(theirs2, otherArch)]);
    const skipped = await cli(['pull', '--if-changed', reference, '-o', 'rootfs.tar'], dir);
    expect(skipped.code, skipped.stderr).toBe(0);
    expect(skipped.stderr).toContain('is up to date');
    const remembered = JSON.parse(await readFile(join(dir, 'rootfs.tar.oci-rootfs.json'), 'utf8')) as Record<string, unknown>;
    expect(remembered).toMatchObject({ digest: index2.digest, manifestDigest: mine.manifestDigest });
  });

  it('pulls when the output is gone or was replaced, and needs -o', async () => {
    const dir = await mkdtemp(join(work, 'if-changed-replaced-'));
    const reference = ref(singleRepo, 'v1');
    expect((await cli(['pull', '--if-changed', reference, '-o', 'r.tar'], dir)).code).toBe(0);
    await writeFile(join(dir, 'r.tar'), 'not the rootfs');
    const replaced = await cli(['pull', '--if-changed', '--progress', 'plain', reference, '-o', 'r.tar'], dir);
    expect(replaced.stderr).toMatch(/^resolved /);
    await rm(join(dir, 'r.tar'));
    const gone = await cli(['pull', '--if-changed', '--progress', 'plain', reference, '-o', 'r.tar'], dir);
    expect(gone.stderr).toMatch(/^resolved /);
    const noFile = await cli(['pull', '--if-changed', reference]);
    expect(noFile.code).toBe(2);
    expect(noFile.stderr).toContain('--if-changed needs -o FILE');
  });

  it('removes the record of an output that a pull without --if-changed replaces', async () => {
    const dir = await mkdtemp(join(work, 'if-changed-forget-'));
    const reference = ref(singleRepo, 'v1');
    expect((await cli(['pull', '--if-changed', reference, '-o', 'r.tar'], dir)).code).toBe(0);
    expect(existsSync(join(dir, 'r.tar.oci-rootfs.json'))).toBe(true);
    expect((await cli(['pull', reference, '-o', 'r.tar'], dir)).code).toBe(0);
    expect(existsSync(join(dir, 'r.tar.oci-rootfs.json'))).toBe(false);
  });
});

describe('local sources: oci: and docker-archive:', () => {
  let layout: string;
  let archive: string;

  beforeAll(async () => {
    const policy = join(work, 'policy.json');
    await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    layout = join(work, 'layout');
    archive = join(work, 'saved.tar');
    const copy = (destination: string): Promise<void> =>
      new Promise((resolvePromise, reject) =>
        execFile('skopeo', ['--policy', policy, 'copy', '--src-tls-verify=false', `docker://${ref(singleRepo, 'v1')}`, destination], (error) =>
          error ? reject(error) : resolvePromise(),
        ),
      );
    await copy(`oci:${layout}:stable`);
    await copy(`docker-archive:${archive}:example/saved:v1`);
  });

  it('inspects an OCI layout and a docker-archive: layers, platform and the config fields', async () => {
    for (const source of [`oci:${layout}:stable`, `docker-archive:${archive}`]) {
      const result = await cli(['inspect', source]);
      expect(result.code, result.stderr).toBe(0);
      const out = text(result);
      expect(out).toContain(`Reference   ${source}\n`);
      expect(out).toContain(`Platform    linux/${hostArch}\n`);
      expect(out).toMatch(/Layers {6}2, /);
      expect(out).toContain('Cmd         ["/bin/bash","-l"]\n');
      expect(out).toContain('User        builder\n');
    }
  });

  it('prints the config of a local source, byte for byte with --raw', async () => {
    for (const source of [`oci:${layout}:stable`, `docker-archive:${archive}:example/saved:v1`]) {
      const raw = await cli(['config', '--raw', source]);
      expect(raw.code, raw.stderr).toBe(0);
      expect((JSON.parse(raw.stdout.toString('utf8')) as { config: unknown }).config).toEqual(CONFIG);
      expect(text(await cli(['config', source]))).toBe(`${JSON.stringify(JSON.parse(raw.stdout.toString('utf8')), null, 2)}\n`);
    }
    const manifest = await cli(['inspect', '--raw', `oci:${layout}:stable`]);
    expect(manifest.code, manifest.stderr).toBe(0);
    expect((JSON.parse(manifest.stdout.toString('utf8')) as { layers: unknown[] }).layers).toHaveLength(2);
  });

  it('says whether a local image exists: 0 with its digest, 3 for a tag or platform it lacks', async () => {
    const present = await cli(['exists', `oci:${layout}:stable`]);
    expect(present.code, present.stderr).toBe(0);
    expect(text(present)).toMatch(/^sha256:[0-9a-f]{64}\n$/);
    expect((await cli(['exists', `oci:${layout}:other`])).code).toBe(3);
    expect((await cli(['exists', `docker-archive:${archive}:example/saved:v1`])).code).toBe(0);
    expect((await cli(['exists', `docker-archive:${archive}:example/absent:v1`])).code).toBe(3);
    expect((await cli(['exists', '--platform', `linux/${otherArch}`, `oci:${layout}:stable`])).code).toBe(3);
    expect((await cli(['exists', '--platform', `linux/${hostArch}`, `docker-archive:${archive}`])).code).toBe(0);
  });

  it('writes --config-out for a local source (the config the pull resolved, not fetched again)', async () => {
    for (const [name, source] of [['oci', `oci:${layout}:stable`], ['archive', `docker-archive:${archive}`]] as const) {
      const dir = await mkdtemp(join(work, `config-out-${name}-`));
      const result = await cli(['pull', source, '-o', 'rootfs.tar', '--config-out', 'config.json'], dir);
      expect(result.code, result.stderr).toBe(0);
      const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as { config: typeof CONFIG };
      expect(config.config).toEqual(CONFIG);
      expect((await readdir(dir)).sort()).toEqual(['config.json', 'rootfs.tar']);
    }
  });

  it('skips the pull of an unchanged local source with --if-changed, and pulls again when it changed', async () => {
    for (const [name, source] of [['oci', `oci:${layout}:stable`], ['archive', `docker-archive:${archive}`]] as const) {
      const dir = await mkdtemp(join(work, `if-changed-${name}-`));
      const first = await cli(['pull', '--if-changed', source, '-o', 'rootfs.tar'], dir);
      expect(first.code, first.stderr).toBe(0);
      const again = await cli(['pull', '--if-changed', source, '-o', 'rootfs.tar'], dir);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stderr).toContain('rootfs.tar is up to date');
      // A record of another image: the source no longer holds what the output was made from.
      const recordFile = join(dir, 'rootfs.tar.oci-rootfs.json');
      const record = JSON.parse(await readFile(recordFile, 'utf8')) as Record<string, unknown>;
      const other = `sha256:${'0'.repeat(64)}`;
      await writeFile(recordFile, JSON.stringify({ ...record, digest: other, manifestDigest: other }));
      const pulled = await cli(['pull', '--if-changed', '--progress', 'plain', source, '-o', 'rootfs.tar'], dir);
      expect(pulled.code, pulled.stderr).toBe(0);
      expect(pulled.stderr).toMatch(/^resolved /);
    }
  });
});

describe('help', () => {
  it('has examples for every command', async () => {
    for (const command of ['pull', 'inspect', 'config', 'exists']) {
      const result = await cli([command, '--help']);
      expect(result.code).toBe(0);
      expect(text(result)).toContain('Examples:');
      expect(text(result)).toContain(`$ oci-rootfs ${command} `);
      expect(text(result)).toContain('--debug');
    }
    const top = text(await cli(['--help']));
    for (const command of ['pull', 'inspect', 'config', 'exists']) expect(top).toMatch(new RegExp(`^\\s+${command} \\[options\\] <image>`, 'm'));
  });
});
