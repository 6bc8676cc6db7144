/**
 * What `oci-rootfs pull` writes besides the rootfs, each only after the rootfs itself was
 * written whole, each atomically: `--config-out` (the image config), `--digest-file` (the
 * sha256 of the output bytes) and, with `--if-changed`, the record of what the output was
 * made from (`<output>.oci-rootfs.json`, the sidecar), which the next `--if-changed` reads.
 */
import { createHash, type Hash } from 'node:crypto';
import { readFile, rm, stat } from 'node:fs/promises';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { ManifestError } from '../errors.js';
import type { PullEvent, ResolvedEvent } from '../operators/events.js';
import { registryClientOptions } from '../operators/inspect.js';
import type { PullOptions } from '../operators/pull-options.js';
import { parseReference } from '../reference/index.js';
import { readBlob } from '../registry/blob.js';
import { RegistryClient } from '../registry/client.js';
import { MAX_CONFIG_BYTES } from '../registry/http.js';
import { writeAtomically } from '../streams/output-file.js';

/** A PassThrough that hashes what goes through it: the output digest without a second read. */
export class HashingPassThrough extends Transform {
  readonly #hash: Hash = createHash('sha256');
  #digest: string | undefined;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#hash.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.#digest = `sha256:${this.#hash.digest('hex')}`;
    callback();
  }

  /** `sha256:<hex>` of every byte, once the stream has ended. */
  get digest(): string {
    if (this.#digest === undefined) throw new Error('the output digest is only known once the output ended');
    return this.#digest;
  }
}

/** The sidecar beside `output` that says what it was made from. */
export function recordPath(output: string): string {
  return `${output}.oci-rootfs.json`;
}

/** The options that change the output bytes: with any of them different, the output is stale. */
export interface RecordedOptions {
  /** `--platform` as given, or null for the default (linux and the host architecture). */
  platform: string | null;
  format: string;
  level: number | null;
  /**
   * The gzip engine (`native`, `zlib`, `pako`) for gzip output, else null: each engine
   * writes its own bytes of the same tar. Absent in records written before engines existed,
   * which then never match a gzip output.
   */
  gzipEngine?: string | null;
}

/** The sidecar's content (version 1). */
export interface OutputRecord {
  version: 1;
  reference: string;
  /** What the reference pointed at: the index digest, or the manifest digest. */
  digest: string;
  indexDigest?: string;
  manifestDigest: string;
  /** The platform that was pulled. */
  platform: string;
  options: RecordedOptions;
  /** The output file's size: a replaced or truncated output is not up to date. */
  output: { bytes: number };
}

/** The sidecar of `output`, or undefined when it is missing or not one of ours. */
export async function readRecord(output: string): Promise<OutputRecord | undefined> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(recordPath(output), 'utf8'));
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const record = parsed as Partial<OutputRecord>;
  const ok =
    record.version === 1 &&
    typeof record.digest === 'string' &&
    typeof record.manifestDigest === 'string' &&
    (record.indexDigest === undefined || typeof record.indexDigest === 'string') &&
    typeof record.output?.bytes === 'number' &&
    typeof record.options === 'object' &&
    record.options !== null;
  return ok ? (record as OutputRecord) : undefined;
}

/** Whether `record` was made with `options` and still describes the file at `output`. */
export async function recordMatches(record: OutputRecord, output: string, options: RecordedOptions): Promise<boolean> {
  const sameOptions =
    record.options.platform === options.platform &&
    record.options.format === options.format &&
    record.options.level === options.level &&
    (record.options.gzipEngine ?? null) === (options.gzipEngine ?? null);
  if (!sameOptions) return false;
  try {
    return (await stat(output)).size === record.output.bytes;
  } catch {
    return false;
  }
}

export async function writeRecord(output: string, record: OutputRecord): Promise<void> {
  await writeText(recordPath(output), `${JSON.stringify(record, null, 2)}\n`);
}

/**
 * Removes the sidecar of an output about to be replaced: if the pull then fails half-way,
 * or the sidecar is not rewritten, the next `--if-changed` pulls rather than trusting it.
 */
export async function forgetRecord(output: string): Promise<void> {
  await rm(recordPath(output), { force: true });
}

export function recordOf(resolved: ResolvedEvent, options: RecordedOptions, bytes: number): OutputRecord {
  const { platform } = resolved;
  return {
    version: 1,
    reference: resolved.reference,
    digest: resolved.indexDigest ?? resolved.manifestDigest,
    ...(resolved.indexDigest === undefined ? {} : { indexDigest: resolved.indexDigest }),
    manifestDigest: resolved.manifestDigest,
    platform: [platform.os, platform.architecture, platform.variant].filter((p) => p !== undefined).join('/'),
    options,
    output: { bytes },
  };
}

/**
 * The config blob of the image being pulled, fetched as soon as the pull resolved it, so
 * it is ready when the rootfs is. `pullRootfs` keeps the config it read to itself, so this
 * is one more blob GET (blobs do not count against Docker Hub's pull limit; manifests do).
 */
export class ConfigFetch {
  #bytes: Promise<Buffer> | undefined;

  constructor(
    private readonly reference: string,
    private readonly options: PullOptions,
  ) {}

  event(event: PullEvent): void {
    if (event.type !== 'resolved' || this.#bytes !== undefined) return;
    this.#bytes = this.#fetch(event.configDigest);
    // Awaited only after a successful pull; a pull that failed first must not leave this unheard.
    this.#bytes.catch(() => undefined);
  }

  /** The config, pretty-printed as `oci-rootfs config` prints it. */
  async text(): Promise<string> {
    if (this.#bytes === undefined) throw new ManifestError('the pull finished without resolving the image config');
    return prettyJson(await this.#bytes);
  }

  async #fetch(digest: string): Promise<Buffer> {
    const ref = parseReference(this.reference);
    const client = RegistryClient.for(ref, registryClientOptions(this.options));
    try {
      return await readBlob(
        client,
        ref,
        { digest },
        MAX_CONFIG_BYTES,
        () => new ManifestError(`config ${digest}: larger than ${MAX_CONFIG_BYTES} bytes`),
        this.options.signal === undefined ? {} : { signal: this.options.signal },
      );
    } finally {
      await client.close();
    }
  }
}

/** JSON bytes re-indented by two spaces, with a final newline. */
export function prettyJson(bytes: Buffer): string {
  return `${JSON.stringify(JSON.parse(bytes.toString('utf8')), null, 2)}\n`;
}

/** Writes `text` to `path` the way the rootfs is written: complete or not at all. */
export async function writeText(path: string, text: string): Promise<void> {
  await writeAtomically(Readable.from([Buffer.from(text, 'utf8')]), path);
}
