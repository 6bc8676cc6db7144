/**
 * Docker image manifest schema 1 (`application/vnd.docker.distribution.manifest.v1+json`
 * and its signed form `+prettyjws`), read into the same shape as a schema 2 / OCI image.
 * Plain functions, no I/O.
 *
 * - **Digest.** A signed manifest is a JWS in "pretty" JSON serialisation: the manifest with
 *   a `signatures` member spliced in before its closing brace. Its digest (what a registry
 *   reports and what `@sha256:` names) covers the *payload*, the manifest without the
 *   signatures: per signature, the protected header holds `formatLength` (how many bytes of
 *   the document precede the signatures) and `formatTail` (base64url of what follows them in
 *   the payload, usually `"\n}"`), so payload = `bytes[0, formatLength) + formatTail`
 *   (libtrust `ParsePrettySignature`, distribution `schema1.SignedManifest.UnmarshalJSON`).
 *   We read the manifest *from the payload*, never from the whole document: JSON keeps the
 *   last of two equal keys, and bytes after `formatLength` are covered by no digest.
 *   The signatures themselves are not checked: their keys are ephemeral and embedded, so
 *   they prove nothing the digest does not.
 * - **Layers.** `fsLayers[i]` and `history[i]` go together, top (newest) first; we reverse
 *   them to base first. Entries whose `v1Compatibility` says `"throwaway": true` are empty
 *   layers (ENV, CMD, ...; usually the 32-byte gzip of an empty tar) and are skipped.
 * - **No diffIDs.** Schema 1 has no config blob and no `rootfs.diff_ids`, so a layer is
 *   checked against its compressed digest (and size) only; its uncompressed tar is unchecked.
 * - **Config.** The top `v1Compatibility` carries the runtime config (`config`, else
 *   `container_config`), `architecture` and `os`; {@link synthesiseSchema1Config} builds an
 *   OCI-like config from it, with `rootfs.diff_ids` empty.
 */
import { ManifestError } from '../errors.js';
import { isValidDigest } from '../reference/index.js';
import type { ImageConfigJson } from './types.js';

/** The 32-byte gzip of an empty tar (1024 zero bytes) that schema 1 uses for empty layers. */
export const EMPTY_GZIP_LAYER_DIGEST = 'sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4';

/** One `v1Compatibility` entry, the fields we use. */
export interface Schema1V1Compatibility {
  id?: string;
  parent?: string;
  created?: string;
  author?: string;
  comment?: string;
  architecture?: string;
  os?: string;
  variant?: string;
  throwaway?: boolean;
  config?: Record<string, unknown> | null;
  container_config?: Record<string, unknown> | null;
  [key: string]: unknown;
}

export interface Schema1Layer {
  /** The blob's digest (`blobSum`). */
  digest: string;
  /** Position in `fsLayers` (0 = top). */
  position: number;
}

export interface Schema1Image {
  name?: string;
  tag?: string;
  architecture?: string;
  /** Non-throwaway layers, base first. */
  layers: Schema1Layer[];
  /** The `v1Compatibility` objects, base first, throwaway ones included. */
  history: Schema1V1Compatibility[];
}

/**
 * The bytes a schema 1 manifest's digest covers: the JWS payload of a signed manifest, the
 * document itself when it has no `signatures`.
 */
export function schema1Payload(bytes: Buffer, json: Record<string, unknown>, what: string): Buffer {
  const signatures = json['signatures'];
  if (signatures === undefined) return bytes;
  if (!Array.isArray(signatures) || signatures.length === 0) {
    throw new ManifestError(`${what}: "signatures" is not a non-empty list`);
  }
  let format: { length: number; tail: Buffer } | undefined;
  signatures.forEach((signature: unknown, index) => {
    const protectedHeader =
      typeof signature === 'object' && signature !== null ? (signature as Record<string, unknown>)['protected'] : undefined;
    if (typeof protectedHeader !== 'string') throw new ManifestError(`${what}: signature ${index} has no protected header`);
    let header: unknown;
    try {
      header = JSON.parse(base64UrlDecode(protectedHeader).toString('utf8'));
    } catch (error) {
      throw new ManifestError(`${what}: signature ${index}: protected header is not base64url JSON`, { cause: error });
    }
    const { formatLength, formatTail } = (typeof header === 'object' && header !== null ? header : {}) as Record<
      string,
      unknown
    >;
    if (typeof formatLength !== 'number' || !Number.isSafeInteger(formatLength) || formatLength < 0 || formatLength > bytes.length) {
      throw new ManifestError(`${what}: signature ${index}: invalid formatLength ${JSON.stringify(formatLength)}`);
    }
    if (typeof formatTail !== 'string') throw new ManifestError(`${what}: signature ${index}: no formatTail`);
    const tail = base64UrlDecode(formatTail);
    if (format === undefined) format = { length: formatLength, tail };
    else if (format.length !== formatLength || !format.tail.equals(tail)) {
      throw new ManifestError(`${what}: signatures disagree on the signed payload`);
    }
  });
  if (format === undefined) throw new ManifestError(`${what}: no signature`);
  return Buffer.concat([bytes.subarray(0, format.length), format.tail]);
}

/** Reads the layers and history of a schema 1 manifest (parsed from its payload). */
export function parseSchema1(json: Record<string, unknown>, what: string): Schema1Image {
  if (json['schemaVersion'] !== 1) throw new ManifestError(`${what}: schemaVersion is not 1`);
  const fsLayers = json['fsLayers'];
  const history = json['history'];
  if (!Array.isArray(fsLayers) || fsLayers.length === 0) throw new ManifestError(`${what}: "fsLayers" is not a non-empty list`);
  if (!Array.isArray(history) || history.length !== fsLayers.length) {
    throw new ManifestError(
      `${what}: ${fsLayers.length} fsLayers but ${Array.isArray(history) ? history.length : 'no'} history entries`,
    );
  }
  const layers: Schema1Layer[] = [];
  const compat: Schema1V1Compatibility[] = [];
  for (let position = fsLayers.length - 1; position >= 0; position--) {
    const name = `${what} fsLayers[${position}]`;
    const layer: unknown = fsLayers[position];
    const digest = typeof layer === 'object' && layer !== null ? (layer as Record<string, unknown>)['blobSum'] : undefined;
    if (typeof digest !== 'string' || !isValidDigest(digest)) {
      throw new ManifestError(`${name}: invalid blobSum ${JSON.stringify(digest)}`);
    }
    const entry: unknown = history[position];
    const raw = typeof entry === 'object' && entry !== null ? (entry as Record<string, unknown>)['v1Compatibility'] : undefined;
    if (typeof raw !== 'string') throw new ManifestError(`${what} history[${position}]: no v1Compatibility`);
    let v1: unknown;
    try {
      v1 = JSON.parse(raw);
    } catch (error) {
      throw new ManifestError(`${what} history[${position}]: v1Compatibility is not JSON`, { cause: error });
    }
    if (typeof v1 !== 'object' || v1 === null || Array.isArray(v1)) {
      throw new ManifestError(`${what} history[${position}]: v1Compatibility is not an object`);
    }
    const parsed = v1 as Schema1V1Compatibility;
    compat.push(parsed);
    if (parsed.throwaway !== true) layers.push({ digest, position });
  }
  const result: Schema1Image = { layers, history: compat };
  const { name, tag, architecture } = json;
  if (typeof name === 'string') result.name = name;
  if (typeof tag === 'string') result.tag = tag;
  if (typeof architecture === 'string') result.architecture = architecture;
  return result;
}

/** The runtime config keys of an OCI image config, as Docker names them. */
const CONFIG_KEYS = ['User', 'ExposedPorts', 'Env', 'Entrypoint', 'Cmd', 'Volumes', 'WorkingDir', 'Labels', 'StopSignal'];

/**
 * An OCI-like image config for a schema 1 image, from its top `v1Compatibility`: the
 * runtime config (`config`, or `container_config` when `config` is absent), platform,
 * creation time and a history with `empty_layer` for throwaway entries. `rootfs.diff_ids`
 * is empty: schema 1 does not know them.
 */
export function synthesiseSchema1Config(image: Schema1Image): ImageConfigJson {
  const top = image.history[image.history.length - 1] ?? {};
  const source = isRecord(top.config) ? top.config : isRecord(top.container_config) ? top.container_config : {};
  const config: Record<string, unknown> = {};
  for (const key of CONFIG_KEYS) {
    const value = source[key];
    if (value !== undefined && value !== null && value !== '') config[key] = value;
  }
  const history = image.history.map((entry) => {
    const item: Record<string, unknown> = {};
    if (typeof entry.created === 'string') item['created'] = entry.created;
    const cmd = isRecord(entry.container_config) ? entry.container_config['Cmd'] : undefined;
    if (Array.isArray(cmd)) item['created_by'] = cmd.filter((part) => typeof part === 'string').join(' ');
    if (typeof entry.author === 'string') item['author'] = entry.author;
    if (typeof entry.comment === 'string') item['comment'] = entry.comment;
    if (entry.throwaway === true) item['empty_layer'] = true;
    return item;
  });
  const architecture = typeof top.architecture === 'string' ? top.architecture : image.architecture;
  const json: ImageConfigJson = {
    ...(typeof top.created === 'string' ? { created: top.created } : {}),
    ...(typeof top.author === 'string' ? { author: top.author } : {}),
    ...(architecture === undefined ? {} : { architecture }),
    os: typeof top.os === 'string' ? top.os : 'linux',
    ...(typeof top.variant === 'string' ? { variant: top.variant } : {}),
    config,
    rootfs: { type: 'layers', diff_ids: [] },
    history,
  };
  return json;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function base64UrlDecode(text: string): Buffer {
  if (!/^[A-Za-z0-9_-]*={0,2}$/.test(text)) throw new ManifestError(`invalid base64url ${JSON.stringify(text.slice(0, 40))}`);
  return Buffer.from(text, 'base64url');
}
