// The CNCF distribution registry on a free loopback port with a temporary storage dir, and
// pushing cached images into it with the distribution API (monolithic uploads).
import { spawn } from 'node:child_process';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { children } from './util.mjs';

const CANDIDATES = ['/usr/bin/docker-registry', '/usr/bin/registry', '/usr/local/bin/registry'];

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Starts the registry; resolves { host, url, stop() }. */
export async function startRegistry(tempDir) {
  const binary = process.env.OCI_ROOTFS_REGISTRY_BIN ?? CANDIDATES.find((p) => existsSync(p));
  if (binary === undefined) throw new Error(`no distribution registry binary found (looked for ${CANDIDATES.join(', ')})`);
  const dir = join(tempDir, 'registry');
  await mkdir(dir, { recursive: true });
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    const configPath = join(dir, 'config.yml');
    await writeFile(
      configPath,
      [
        'version: 0.1',
        'log:',
        '  level: error',
        '  accesslog:',
        '    disabled: true',
        'storage:',
        '  filesystem:',
        `    rootdirectory: ${join(dir, 'data')}`,
        '  delete:',
        '    enabled: true',
        '  maintenance:',
        '    uploadpurging:',
        '      enabled: false',
        'http:',
        `  addr: ${host}`,
        '  secret: oci-rootfs-bench',
        '',
      ].join('\n'),
    );
    const child = spawn(binary, ['serve', configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.add(child);
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (t) => (stderr = (stderr + t).slice(-4000)));
    const exited = new Promise((resolve) => child.once('exit', () => { children.delete(child); resolve(); }));
    const stop = async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
    };
    const deadline = Date.now() + 15000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) break;
      try {
        const r = await request(`http://${host}/v2/`);
        await r.body.dump();
        if (r.statusCode === 200) return { host, url: `http://${host}`, stop, pid: child.pid };
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) break;
      await sleep(50);
    }
    await stop();
    if (attempt >= 2) throw new Error(`registry did not come up on ${host}: ${stderr}`);
  }
}

async function expect(response, statuses, what) {
  if (!statuses.includes(response.statusCode)) {
    throw new Error(`${what}: HTTP ${response.statusCode}: ${await response.body.text()}`);
  }
}

/** Monolithic upload: POST /v2/<name>/blobs/uploads/ then PUT <location>?digest=. */
async function pushBlob(registryUrl, repo, digest, size, body) {
  const head = await request(`${registryUrl}/v2/${repo}/blobs/${digest}`, { method: 'HEAD' });
  await head.body.dump();
  if (head.statusCode === 200) return;
  const post = await request(`${registryUrl}/v2/${repo}/blobs/uploads/`, { method: 'POST', headers: { 'content-length': '0' } });
  await expect(post, [202], `POST upload ${repo}`);
  await post.body.dump();
  const location = new URL(post.headers.location, registryUrl);
  location.searchParams.set('digest', digest);
  const put = await request(location, {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
    body,
  });
  await expect(put, [201], `PUT blob ${digest}`);
  await put.body.dump();
}

/** Pushes a cached image (see images.mjs) as `repo:tag`; resolves the seconds it took. */
export async function pushImage(registryUrl, repo, tag, image) {
  const started = performance.now();
  for (const layer of image.layers) await pushBlob(registryUrl, repo, layer.digest, layer.size, createReadStream(layer.file));
  const config = await readFile(image.configFile);
  await pushBlob(registryUrl, repo, image.config.digest, config.length, config);
  const manifest = await readFile(image.manifestFile);
  const put = await request(`${registryUrl}/v2/${repo}/manifests/${tag}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
    body: manifest,
  });
  await expect(put, [201], `PUT manifest ${repo}:${tag}`);
  await put.body.dump();
  return (performance.now() - started) / 1000;
}
