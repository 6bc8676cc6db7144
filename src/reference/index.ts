export {
  DOCKER_HUB_API_HOST,
  DOCKER_HUB_REGISTRY,
  isValidDigest,
  makeReference,
  manifestReference,
  parseReference,
  registryApiHost,
  withDigest,
} from './parse.js';
export type { ImageReference } from './parse.js';
