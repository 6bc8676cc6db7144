/**
 * Builds images in code and pushes them with the distribution API (monolithic uploads:
 * `POST /v2/<name>/blobs/uploads/` then `PUT <location>?digest=`), so tests control every
 * byte, digest and media type.
 */
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';

export interface PushAuth {
  user: string;
  password: string;
}

export interface PushOptions {
  /** Basic credentials for an htpasswd registry. */
  auth?: PushAuth;
}

export interface LayerInput {
  tar: Buffer;
  compression: 'gzip' | 'none';
  /** Override the layer media type in the manifest (negative tests). */
  mediaType?: string;
  /** Foreign-layer URLs to put in the descriptor (negative tests). */
  urls?: string[];
}

export interface PlatformInput {
  os: string;
  architecture: string;
  variant?: string;
}

export interface PushImageOptions extends PushOptions {
  layers: LayerInput[];
  /** Merged over the generated config (give `rootfs` to override the diff_ids). */
  config?: Record<string, unknown>;
  platform?: PlatformInput;
  /** `oci` (default) or Docker schema 2. */
  format?: 'oci' | 'docker';
}

export interface PushedLayer {
  digest: string;
  diffId: string;
  size: number;
  mediaType: string;
}

export interface PushedImage {
  manifestDigest: string;
  manifestSize: number;
  manifestMediaType: string;
  manifestBytes: Buffer;
  configDigest: string;
  configBytes: Buffer;
  layers: PushedLayer[];
}

export interface IndexEntryInput {
  digest: string;
  size: number;
  mediaType: string;
  platform: PlatformInput;
  annotations?: Record<string, string>;
}

export const sha256 = (bytes: Uint8Array): string =>
  `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

function headers(options: PushOptions | undefined, extra: Record<string, string> = {}): Record<string, string> {
  const result = { ...extra };
  if (options?.auth !== undefined) {
    result['authorization'] = `Basic ${Buffer.from(`${options.auth.user}:${options.auth.password}`).toString('base64')}`;
  }
  return result;
}

async function expectStatus(response: Response, wanted: number[], what: string): Promise<void> {
  if (!wanted.includes(response.status)) {
    throw new Error(`${what}: HTTP ${response.status}: ${await response.text()}`);
  }
  await response.arrayBuffer();
}

/** Uploads `bytes` as a blob of `repo`; returns its digest. */
export async function pushBlob(host: string, repo: string, bytes: Buffer, options?: PushOptions): Promise<string> {
  const digest = sha256(bytes);
  const start = await fetch(`http://${host}/v2/${repo}/blobs/uploads/`, {
    method: 'POST',
    headers: headers(options),
  });
  const location = start.headers.get('location');
  await expectStatus(start, [202], `start upload to ${repo}`);
  if (location === null) throw new Error('upload start without Location');
  const url = new URL(location, `http://${host}`);
  url.searchParams.set('digest', digest);
  const put = await fetch(url, {
    method: 'PUT',
    headers: headers(options, { 'content-type': 'application/octet-stream' }),
    body: bytes,
  });
  await expectStatus(put, [201], `upload ${digest} to ${repo}`);
  return digest;
}

/** Puts `bytes` as a manifest under `reference` (tag or digest); returns its digest. */
export async function pushManifest(
  host: string,
  repo: string,
  reference: string,
  mediaType: string,
  bytes: Buffer,
  options?: PushOptions,
): Promise<string> {
  const response = await fetch(`http://${host}/v2/${repo}/manifests/${reference}`, {
    method: 'PUT',
    headers: headers(options, { 'content-type': mediaType }),
    body: bytes,
  });
  await expectStatus(response, [201], `put manifest ${repo}:${reference}`);
  return sha256(bytes);
}

/** Builds and pushes a one-platform image: layers, config with diff_ids, manifest. */
export async function pushImage(
  host: string,
  repo: string,
  tag: string,
  options: PushImageOptions,
): Promise<PushedImage> {
  const docker = options.format === 'docker';
  const platform = options.platform ?? { os: 'linux', architecture: 'amd64' };
  const layers: PushedLayer[] = [];
  const layerDescriptors: Array<Record<string, unknown>> = [];
  for (const layer of options.layers) {
    const blob = layer.compression === 'gzip' ? gzipSync(layer.tar) : layer.tar;
    const digest = await pushBlob(host, repo, blob, options);
    const mediaType =
      layer.mediaType ??
      (docker
        ? layer.compression === 'gzip'
          ? 'application/vnd.docker.image.rootfs.diff.tar.gzip'
          : 'application/vnd.docker.image.rootfs.diff.tar'
        : layer.compression === 'gzip'
          ? 'application/vnd.oci.image.layer.v1.tar+gzip'
          : 'application/vnd.oci.image.layer.v1.tar');
    layers.push({ digest, diffId: sha256(layer.tar), size: blob.length, mediaType });
    layerDescriptors.push({
      mediaType,
      digest,
      size: blob.length,
      ...(layer.urls === undefined ? {} : { urls: layer.urls }),
    });
  }
  const config = {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant === undefined ? {} : { variant: platform.variant }),
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/sh'] },
    rootfs: { type: 'layers', diff_ids: layers.map((layer) => layer.diffId) },
    history: layers.map(() => ({ created_by: 'oci-rootfs test' })),
    ...options.config,
  };
  const configBytes = Buffer.from(JSON.stringify(config));
  const configDigest = await pushBlob(host, repo, configBytes, options);
  const manifestMediaType = docker
    ? 'application/vnd.docker.distribution.manifest.v2+json'
    : 'application/vnd.oci.image.manifest.v1+json';
  const manifest = {
    schemaVersion: 2,
    mediaType: manifestMediaType,
    config: {
      mediaType: docker ? 'application/vnd.docker.container.image.v1+json' : 'application/vnd.oci.image.config.v1+json',
      digest: configDigest,
      size: configBytes.length,
    },
    layers: layerDescriptors,
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest, null, 2));
  const manifestDigest = await pushManifest(host, repo, tag, manifestMediaType, manifestBytes, options);
  return {
    manifestDigest,
    manifestSize: manifestBytes.length,
    manifestMediaType,
    manifestBytes,
    configDigest,
    configBytes,
    layers,
  };
}

/** Pushes an OCI index (or Docker manifest list with `format: 'docker'`) under `tag`. */
export async function pushIndex(
  host: string,
  repo: string,
  tag: string,
  manifests: IndexEntryInput[],
  options: PushOptions & { format?: 'oci' | 'docker' } = {},
): Promise<{ digest: string; size: number; mediaType: string; bytes: Buffer }> {
  const mediaType =
    options.format === 'docker'
      ? 'application/vnd.docker.distribution.manifest.list.v2+json'
      : 'application/vnd.oci.image.index.v1+json';
  const index = {
    schemaVersion: 2,
    mediaType,
    manifests: manifests.map((entry) => ({
      mediaType: entry.mediaType,
      digest: entry.digest,
      size: entry.size,
      platform: entry.platform,
      ...(entry.annotations === undefined ? {} : { annotations: entry.annotations }),
    })),
  };
  const bytes = Buffer.from(JSON.stringify(index, null, 2));
  const digest = await pushManifest(host, repo, tag, mediaType, bytes, options);
  return { digest, size: bytes.length, mediaType, bytes };
}

export interface TarFile {
  name: string;
  content?: string | Buffer;
  type?: 'file' | 'directory' | 'symlink';
  linkname?: string;
  mode?: number;
}

/** A tar of `files`, written by tar-stream (an independent writer). */
export async function makeTar(files: TarFile[]): Promise<Buffer> {
  const archive = pack();
  for (const file of files) {
    const type = file.type ?? 'file';
    const content = file.content === undefined ? undefined : Buffer.from(file.content);
    const header = {
      name: file.name,
      type,
      mode: file.mode ?? (type === 'directory' ? 0o755 : 0o644),
      mtime: new Date(0),
      ...(file.linkname === undefined ? {} : { linkname: file.linkname }),
    };
    if (content === undefined) archive.entry(header);
    else archive.entry({ ...header, size: content.length }, content);
  }
  archive.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of archive as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}
