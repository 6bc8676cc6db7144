import { InvalidReferenceError } from '../errors.js';

/**
 * Image references, after `distribution/reference` (reference.go, normalize.go):
 *
 *   reference        := name [ ":" tag ] [ "@" digest ]
 *   name             := [domain "/"] path-component ["/" path-component]*
 *   domain           := host [":" port-number]
 *   host             := domain-name | "[" IPv6address "]"
 *   domain-name      := domain-component ["." domain-component]*
 *   domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
 *   port-number      := /[0-9]+/
 *   path-component   := alpha-numeric [separator alpha-numeric]*
 *   alpha-numeric    := /[a-z0-9]+/
 *   separator        := /[_.]|__|[-]+/
 *   tag              := /[\w][\w.-]{0,127}/
 *   digest           := algorithm ":" hex    (we accept sha256/sha384/sha512, lowercase hex)
 *
 * Normalisation (as `docker pull` does): the first path component is a registry host only
 * if it contains "." or ":", is "localhost", or has uppercase letters (a repository path
 * never does, a hostname may); otherwise the registry is docker.io. `index.docker.io` is
 * spelled `docker.io`, and one-component Docker Hub names live under `library/`.
 */

/** A parsed, normalised image reference. */
export interface ImageReference {
  /** `host[:port]` as typed (IPv6 in brackets); Docker Hub is always `docker.io`. */
  readonly registry: string;
  /** Repository path inside the registry, e.g. `library/alpine`. */
  readonly repository: string;
  /** The tag; `latest` when neither tag nor digest was given, absent for digest-only references. */
  readonly tag?: string;
  /** `algorithm:hex`; when both tag and digest are present, the digest is what gets fetched. */
  readonly digest?: string;
  /** The fully qualified form, `registry/repository[:tag][@digest]`. */
  toString(): string;
}

/** The registry name Docker Hub references are normalised to. */
export const DOCKER_HUB_REGISTRY = 'docker.io';
/** Where Docker Hub's registry API actually lives. */
export const DOCKER_HUB_API_HOST = 'registry-1.docker.io';
const DEFAULT_TAG = 'latest';
const NAME_TOTAL_LENGTH_MAX = 255;

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = new RegExp(
  `^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`,
);
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*):([0-9a-fA-F]{32,})$/;
/** Hex lengths of the digest algorithms go-digest registers; anything else is unsupported. */
const DIGEST_HEX_LENGTH: Readonly<Record<string, number>> = { sha256: 64, sha384: 96, sha512: 128 };
/** A bare 64-hex string is refused as a name: it would be read as an image ID. */
const ANCHORED_IDENTIFIER = /^[a-f0-9]{64}$/;

/**
 * Parses `input` as a `docker pull` style reference and normalises it.
 *
 * @example parseReference('alpine').toString() === 'docker.io/library/alpine:latest'
 * @throws {InvalidReferenceError} with the reason when `input` breaks the grammar.
 */
export function parseReference(input: string): ImageReference {
  const fail = (reason: string): never => {
    throw new InvalidReferenceError(input, reason);
  };
  if (input.length === 0) fail('empty reference');
  if (input !== input.trim()) fail('leading or trailing whitespace');

  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    validateDigest(digest, fail);
  }

  // A ":" after the last "/" starts the tag; one before it belongs to a host:port.
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/') && !rest.endsWith(']')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) fail(`invalid tag "${tag}"`);
  }

  const name = rest;
  if (name.length === 0) fail('missing repository name');
  if (ANCHORED_IDENTIFIER.test(name)) {
    fail('repository name cannot be a 64-character hexadecimal string');
  }

  let registry: string;
  let repository: string;
  const slash = name.indexOf('/');
  const first = slash === -1 ? '' : name.slice(0, slash);
  if (slash !== -1 && isDomainComponent(first)) {
    registry = first;
    repository = name.slice(slash + 1);
    if (!DOMAIN.test(registry)) fail(`invalid registry host "${registry}"`);
  } else {
    registry = DOCKER_HUB_REGISTRY;
    repository = name;
  }
  if (registry === 'index.docker.io') registry = DOCKER_HUB_REGISTRY;

  if (repository.length === 0) fail('missing repository name');
  if (repository !== repository.toLowerCase()) {
    fail(`repository name "${repository}" must be lowercase`);
  }
  for (const component of repository.split('/')) {
    if (component.length === 0) fail(`empty path component in "${repository}"`);
    if (!PATH_COMPONENT.test(component)) fail(`invalid path component "${component}"`);
  }
  if (registry === DOCKER_HUB_REGISTRY && !repository.includes('/')) {
    repository = `library/${repository}`;
  }
  // reference.go checks the length of the name as typed (domain included).
  if (name.length > NAME_TOTAL_LENGTH_MAX) {
    fail(`repository name longer than ${NAME_TOTAL_LENGTH_MAX} characters`);
  }

  if (tag === undefined && digest === undefined) tag = DEFAULT_TAG;
  return makeReference(registry, repository, tag, digest);
}

/** Builds an {@link ImageReference} from parts that are already valid and normalised. */
export function makeReference(
  registry: string,
  repository: string,
  tag?: string,
  digest?: string,
): ImageReference {
  const text = `${registry}/${repository}${tag === undefined ? '' : `:${tag}`}${digest === undefined ? '' : `@${digest}`}`;
  return Object.freeze({
    registry,
    repository,
    ...(tag === undefined ? {} : { tag }),
    ...(digest === undefined ? {} : { digest }),
    toString: () => text,
  });
}

/** The same repository pinned to `digest` (the tag is dropped: the digest is what is fetched). */
export function withDigest(ref: ImageReference, digest: string): ImageReference {
  return makeReference(ref.registry, ref.repository, undefined, digest);
}

/** The tag or digest to put in `/v2/<name>/manifests/<reference>`: the digest wins. */
export function manifestReference(ref: ImageReference): string {
  return ref.digest ?? ref.tag ?? DEFAULT_TAG;
}

/** The host the registry API is served from: Docker Hub's API is not on `docker.io`. */
export function registryApiHost(registry: string): string {
  return registry === DOCKER_HUB_REGISTRY ? DOCKER_HUB_API_HOST : registry;
}

/** Whether `text` is a well-formed digest of an algorithm we can verify. */
export function isValidDigest(text: string): boolean {
  try {
    validateDigest(text, (reason) => {
      throw new Error(reason);
    });
    return true;
  } catch {
    return false;
  }
}

function isDomainComponent(first: string): boolean {
  return (
    first.includes('.') ||
    first.includes(':') ||
    first === 'localhost' ||
    first !== first.toLowerCase()
  );
}

function validateDigest(digest: string, fail: (reason: string) => never): void {
  const match = DIGEST.exec(digest);
  if (match === null) fail(`invalid digest "${digest}"`);
  const algorithm = match?.[1] ?? '';
  const hex = match?.[2] ?? '';
  const length = DIGEST_HEX_LENGTH[algorithm];
  if (length === undefined) fail(`unsupported digest algorithm "${algorithm}"`);
  if (hex.length !== length || !/^[a-f0-9]+$/.test(hex)) {
    fail(`invalid ${algorithm} digest: expected ${length} lowercase hex characters`);
  }
}
