/**
 * What `oci-rootfs pull` writes besides the rootfs, each only after the rootfs itself was
 * written whole, each atomically: `--config-out` (the image config), `--digest-file` (the
 * sha256 of the output bytes) and, with `--if-changed`, the record of what the output was
 * made from (`<output>.oci-rootfs.json`, the sidecar), which the next `--if-changed` reads.
 */
import { createHash, type Hash } from 'node:crypto';
import { readFile, rm, stat } from 'node:fs/promises';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import type { ResolvedEvent } from '../index.js';

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
  /** `--expand-sparse`; a record written before the option existed has none (false). */
  expandSparse?: boolean;
  /**
   * The gzip engine (`native`, `zlib`, `pako`) for gzip output, else null: each engine
   * writes its own bytes of the same tar. Absent in records written before engines existed,
   * which then never match a gzip output.
   */
  gzipEngine?: string | null;
  /** Whether a single gzip layer could be passed through; a record written before had none (false). */
  passthrough?: boolean;
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
    (record.options.expandSparse ?? false) === (options.expandSparse ?? false) &&
    (record.options.gzipEngine ?? null) === (options.gzipEngine ?? null) &&
    (record.options.passthrough ?? false) === (options.passthrough ?? false);
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

/** JSON bytes re-indented by two spaces, with a final newline. */
export function prettyJson(bytes: Buffer): string {
  return `${JSON.stringify(JSON.parse(bytes.toString('utf8')), null, 2)}\n`;
}

/** Writes `text` to `path` the way the rootfs is written: complete or not at all. */
export async function writeText(path: string, text: string): Promise<void> {
  const { writeAtomically } = await import('../index.js');
  await writeAtomically(Readable.from([Buffer.from(text, 'utf8')]), path);
}
