/**
 * A Docker Hub pull-through mirror (`--registry-mirror`, `REGISTRY_MIRROR`), as the docker
 * daemon's `registry-mirrors` setting works: only `docker.io` references use it, with the
 * same paths (`/v2/library/alpine/...`); the client falls back to Docker Hub when the
 * mirror lacks the image or cannot be reached.
 */
import { UsageError } from '../errors.js';
import { DOCKER_HUB_API_HOST, DOCKER_HUB_REGISTRY } from '../reference/index.js';

/** Said (through `onWarning`) when the mirror was passed over. */
export interface MirrorWarning {
  code: 'MIRROR_FALLBACK';
  message: string;
}

/** Whether `registry` is Docker Hub under one of its names. */
export function isDockerHub(registry: string): boolean {
  return registry === DOCKER_HUB_REGISTRY || registry === 'index.docker.io' || registry === DOCKER_HUB_API_HOST;
}

/** `https://mirror:5000` → its host, and whether it is to be spoken to in plain HTTP. */
export function mirrorHost(url: string): { host: string; plainHttp: boolean } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`registry mirror "${url}" is not a URL; expected https://host[:port]`);
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    throw new UsageError(`registry mirror "${url}" must be an http or https URL`);
  }
  // The distribution API lives at /v2/ of the host; a path would be silently ignored.
  if ((parsed.pathname !== '/' && parsed.pathname !== '') || parsed.search !== '' || parsed.username !== '') {
    throw new UsageError(`registry mirror "${url}" must be just a scheme and host[:port], without a path or user`);
  }
  return { host: parsed.host, plainHttp: parsed.protocol === 'http:' };
}
