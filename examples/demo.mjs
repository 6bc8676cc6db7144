#!/usr/bin/env node
// A whole pull on a machine with no internet: starts a throw-away registry (the Debian
// package docker-registry) on a free loopback port, pushes a small two-layer image built
// here (a whiteout, a hardlink, a usr-merged /bin), pulls it with the CLI into
// demo-rootfs.tar.gz and lists the result.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { END_OF_ARCHIVE, encodeHeader, paddingFor } from '../dist/index.js';

const sha256 = (bytes) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

function layer(entries) {
  const parts = [];
  for (const { name, type = 'file', content = '', linkname = '', mode = type === 'directory' ? 0o755 : type === 'symlink' ? 0o777 : 0o644 } of entries) {
    const body = Buffer.from(content);
    parts.push(encodeHeader({
      name: Buffer.from(name), type, mode, uid: 0, gid: 0, size: type === 'file' ? body.length : 0, mtime: 0,
      linkname: Buffer.from(linkname), uname: Buffer.from('root'), gname: Buffer.from('root'), devmajor: 0, devminor: 0, pax: [],
    }));
    if (type === 'file') parts.push(body, paddingFor(body.length));
  }
  parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}

async function freePort() {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function push(base, repo, tag, tars) {
  const blob = async (bytes) => {
    const digest = sha256(bytes);
    const start = await fetch(`${base}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    const location = new URL(start.headers.get('location'), base);
    location.searchParams.set('digest', digest);
    const put = await fetch(location, { method: 'PUT', body: bytes, headers: { 'content-type': 'application/octet-stream' } });
    if (put.status !== 201) throw new Error(`blob upload failed: HTTP ${put.status}`);
    return { digest, size: bytes.length };
  };
  const layers = [];
  for (const tar of tars) layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...(await blob(gzipSync(tar))) });
  const config = Buffer.from(JSON.stringify({
    architecture: process.arch === 'arm64' ? 'arm64' : 'amd64', os: 'linux',
    config: { Env: ['PATH=/usr/bin:/bin'], Cmd: ['/bin/sh'] },
    rootfs: { type: 'layers', diff_ids: tars.map(sha256) },
  }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...(await blob(config)) }, layers,
  }));
  const put = await fetch(`${base}/v2/${repo}/manifests/${tag}`, {
    method: 'PUT', body: manifest, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
  });
  if (put.status !== 201) throw new Error(`manifest upload failed: HTTP ${put.status}`);
}

const dir = mkdtempSync(join(tmpdir(), 'oci-rootfs-demo-'));
const port = await freePort();
writeFileSync(join(dir, 'config.yml'), `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${dir}/data\nhttp:\n  addr: 127.0.0.1:${port}\n`);
const registry = spawn('docker-registry', ['serve', join(dir, 'config.yml')], { stdio: 'ignore' });
registry.on('error', (error) => {
  console.error(`cannot start docker-registry (${error.message}); install it with: sudo apt-get install docker-registry`);
  process.exit(1);
});
const base = `http://127.0.0.1:${port}`;
try {
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${base}/v2/`)).ok) break;
    } catch {}
    if (i > 100) throw new Error('the registry did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
  await push(base, 'demo/distro', '1.0', [
    layer([
      { name: 'usr/', type: 'directory' }, { name: 'usr/bin/', type: 'directory' },
      { name: 'bin', type: 'symlink', linkname: 'usr/bin' },
      { name: 'usr/bin/sh', content: '#!fake shell\n', mode: 0o755 },
      { name: 'etc/', type: 'directory' }, { name: 'etc/motd', content: 'base layer\n' },
      { name: 'etc/old.conf', content: 'deleted by the next layer\n' },
      { name: 'etc/hostname', content: 'demo\n' }, { name: 'etc/hostname.bak', type: 'link', linkname: 'etc/hostname' },
    ]),
    layer([
      { name: 'etc/', type: 'directory' }, { name: 'etc/.wh.old.conf' },
      { name: 'etc/hostname', content: 'changed\n' },
      { name: 'bin/tool', content: '#!fake tool\n', mode: 0o755 },
    ]),
  ]);
  const ref = `127.0.0.1:${port}/demo/distro:1.0`;
  console.log(`$ oci-rootfs pull ${ref} -o demo-rootfs.tar.gz`);
  const pull = spawnSync(process.execPath, ['dist/cli/main.js', 'pull', ref, '-o', 'demo-rootfs.tar.gz'], { stdio: 'inherit' });
  if (pull.status !== 0) process.exitCode = pull.status ?? 1;
  else {
    console.log('$ tar -tzvf demo-rootfs.tar.gz');
    spawnSync('tar', ['-tzvf', 'demo-rootfs.tar.gz'], { stdio: 'inherit' });
  }
} finally {
  registry.kill();
  rmSync(dir, { recursive: true, force: true });
}
