/**
 * `oci-rootfs pull <image>`: pullRootfs() → compressor → file (atomic) or stdout, the
 * right-hand end of the pipeline in DESIGN.md §2. Everything a user can get wrong is
 * checked before the first request goes out.
 */
import { basename } from 'node:path';
import { pipeline } from 'node:stream';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { AbortError, UsageError } from '../errors.js';
import type { PullEvent, PullOptions, ResolvedEvent, ResolvedImage } from '../index.js';
import { COMPRESSOR_ENGINES, type CompressorEngine } from '../streams/compressor-engines.js';
import { reportWarning } from './errors.js';
import { addRegistryOptions, type RegistryCommandOptions } from './registry-options.js';
import type { ProgressReporter } from './progress/display.js';
import {
  forgetRecord,
  HashingPassThrough,
  prettyJson,
  readRecord,
  recordMatches,
  recordOf,
  recordPath,
  writeRecord,
  writeText,
  type RecordedOptions,
} from './pull-outputs.js';
import { pullToFile } from './pull-to-file.js';
import { addTransferOptions, checkReportingOptions, createReporter, transferOptions, type TransferCommandOptions } from './transfer-options.js';
import { abortOnInterrupt, checkCredentialOptions, IMAGE_ARGUMENT_HELP, readPassword, type CliIo } from './shared.js';

/** The options commander hands to the action, after the parsers below. */
export interface PullCommandOptions extends RegistryCommandOptions, TransferCommandOptions {
  output?: string;
  format?: 'tar' | 'gzip' | 'zstd';
  level?: number;
  gzipEngine?: CompressorEngine;
  configOut?: string;
  digestFile?: string;
  ifChanged?: boolean;
  expandSparse?: boolean;
  /** `--no-passthrough` makes it false. */
  passthrough?: boolean;
}

export type { CliIo } from './shared.js';

const EXAMPLES = `
Examples:
  $ oci-rootfs pull alpine:3.20 -o alpine.tar.gz
  $ oci-rootfs pull --platform linux/arm64 debian:bookworm -o debian.tar
  $ echo "$TOKEN" | oci-rootfs pull ghcr.io/me/app:1.0 --username me --password-stdin -o app.tgz
  $ oci-rootfs pull --plain-http localhost:5000/test | tar -tv
  $ oci-rootfs pull alpine -o alpine.tar.gz --config-out alpine.config.json --digest-file alpine.sha256
  $ oci-rootfs pull --if-changed debian:bookworm -o debian.tar.gz     # cron: no download if unchanged
  $ oci-rootfs pull --progress json alpine -o alpine.tar 2> events.ndjson
  $ oci-rootfs pull oci:./alpine-oci:latest -o alpine.tar            # an OCI image layout
  $ oci-rootfs pull docker-archive:saved.tar:alpine:3.20 -o alpine.tar  # a docker save archive

Progress goes to stderr: a display redrawn in place on a terminal, nothing otherwise
(--progress auto); "plain" prints a line per layer event, "json" every event as one JSON
object per line. NO_COLOR turns colours off.

--if-changed keeps a record of what the output was made from in <output>.oci-rootfs.json
and skips the pull when the source still has that image (for a registry, checked with a
HEAD request).

On stdout a failed pull ends without the tar end-of-archive marker, so tar reports a
truncated archive; use "set -o pipefail" to see the exit status in a pipeline.
`;

export function registerPullCommand(program: Command, io: CliIo): Command {
  const command = program
    .command('pull')
    .description('pull an image and write its flattened root filesystem as one tar archive')
    .argument('<image>', IMAGE_ARGUMENT_HELP)
    .option('-o, --output <file>', 'write to FILE, "-" for stdout (default: stdout)')
    .option('--format <format>', 'tar, gzip or zstd (default: from the -o extension, else tar)', parseFormat);
  return addTransferOptions(addRegistryOptions(command, 'the platform to pick from a multi-platform image (default: linux/<host arch>)'))
    .option('--expand-sparse', 'write sparse files with their holes filled with zeros (default: kept sparse)')
    .option('--no-passthrough', 'always flatten, even an image of one gzip layer pulled to a gzip file (default: its blob is written as published)')
    .option('--level <n>', 'compression level: gzip 0 (none) to 9 (smallest), default 6; zstd 1 to 19, default 3', parseLevel)
    .addOption(
      new Option(
        '--gzip-engine <engine>',
        'gzip with native (libdeflate, the default where built), zlib (node:zlib) or pako; each gives its own bytes',
      ).choices(COMPRESSOR_ENGINES),
    )
    .option('--config-out <file>', 'also write the image config (JSON) to FILE, once the pull succeeded')
    .option('--digest-file <file>', 'also write "sha256:<hex>  <output>" of the output bytes to FILE')
    .option('--if-changed', 'do nothing if -o FILE was made from the image the registry has now')
    .addHelpText('after', EXAMPLES)
    .action(async (image: string, options: PullCommandOptions) => {
      await runPull(image, options, io);
    });
}

/** Runs one pull to completion; throws an OciRootfsError-compatible error on failure. */
export async function runPull(reference: string, options: PullCommandOptions, io: CliIo): Promise<void> {
  // Loaded here rather than at the top so --help, --version and usage errors do not pay
  // for the registry client, undici and rxjs at startup.
  const api = await import('../index.js');
  const file = options.output === undefined || options.output === '-' ? undefined : options.output;
  // stdout has no name to infer from, and plain tar is what `| tar -x` expects.
  const format = options.format ?? (file === undefined ? 'tar' : (api.formatFromPath(file) ?? 'tar'));
  if (options.level !== undefined && format === 'tar') {
    throw new UsageError('--level applies only to gzip or zstd output, not tar');
  }
  if (options.level !== undefined && format === 'gzip' && options.level > 9) {
    throw new UsageError(`--level ${options.level} is out of range for gzip: expected 0 to 9`);
  }
  if (options.gzipEngine !== undefined && format !== 'gzip') {
    throw new UsageError(`--gzip-engine applies only to gzip output, not ${format}`);
  }
  if (options.level === 0 && format === 'zstd') {
    throw new UsageError('--level 0 is out of range for zstd: expected 1 to 19');
  }
  // Refuse before any network traffic, not after the first layer arrived.
  if (file === undefined && io.stdout.isTTY === true) throw new UsageError(TERMINAL_REFUSAL);
  checkCredentialOptions(options);
  checkReportingOptions(options);
  if (options.ifChanged === true && file === undefined) {
    throw new UsageError('--if-changed needs -o FILE: there is nothing to compare stdout with');
  }
  if (options.password !== undefined) {
    reportWarning('--password can be read by other users of this machine; prefer --password-stdin', io.stderr);
  }
  if (options.insecure === true) {
    reportWarning('--insecure: TLS certificates are not verified; the registry can be impersonated', io.stderr);
  }

  // Resolved here, not inside the compressor: the engine changes the bytes, so the record
  // and the done event name it (and a pinned engine that is missing fails before any request).
  const gzipEngine = format === 'gzip' ? api.resolveGzipEngine(options.gzipEngine) : undefined;
  const compressorOptions = {
    ...(options.level === undefined ? {} : { level: options.level }),
    ...(gzipEngine === undefined ? {} : { engine: gzipEngine }),
  };
  const compressor = api.createCompressor(format, compressorOptions);
  let password: string | undefined;
  try {
    password = options.passwordStdin === true ? await readPassword(io.stdin) : options.password;
  } catch (error) {
    compressor.destroy();
    throw error;
  }

  const started = performance.now();
  const reporter = createReporter(options, io);
  // What the output bytes depend on besides the image (DESIGN.md §1), for --if-changed.
  const recorded: RecordedOptions = {
    platform: options.platform ?? null,
    format,
    level: format === 'tar' ? null : (options.level ?? DEFAULT_LEVEL[format]),
    expandSparse: options.expandSparse === true,
    gzipEngine: gzipEngine ?? null,
    // Whether a single gzip layer may be written as its blob (only a gzip file can take it).
    passthrough: format === 'gzip' && file !== undefined && options.passthrough !== false,
  };
  const controller = new AbortController();
  const stopListening = abortOnInterrupt(controller);
  try {
    const registryOptions = pullOptions(options, password, controller.signal);
    if (options.ifChanged === true && file !== undefined) {
      if (await upToDate(reference, file, recorded, registryOptions, reporter, options, io)) {
        compressor.destroy();
        return;
      }
    }
    // The output is about to be replaced: a record of the old one must not outlive it.
    if (file !== undefined) await forgetRecord(file);

    let resolved: ResolvedEvent | undefined;
    let image: ResolvedImage | undefined;
    const onEvent = (pulled: PullEvent): void => {
      // A passed-through blob was deflated by its publisher, not by an engine of ours.
      const event = pulled.type === 'done' && gzipEngine !== undefined && pulled.path !== 'passthrough' ? { ...pulled, gzipEngine } : pulled;
      if (event.type === 'resolved') resolved = event;
      reporter.event(event);
    };
    // The resolved image carries its config: --config-out needs no second request.
    const requestOptions = { ...registryOptions, onEvent, onResolved: (resolvedImage: ResolvedImage) => (image = resolvedImage) };
    // Hashed as it is written, so --digest-file costs no second read of the output.
    let hasher: HashingPassThrough | undefined;
    let bytes: number;
    if (file === undefined) {
      const tar = api.pullRootfs(reference, requestOptions);
      hasher = options.digestFile === undefined ? undefined : new HashingPassThrough();
      // On any error pipeline() destroys every stage, so the compressor never writes its
      // trailer and the consumer sees the error: the output stays visibly incomplete.
      const output = hasher === undefined ? pipeline(tar, compressor, () => {}) : pipeline(tar, compressor, hasher, () => {});
      ({ bytes } = await api.writeToStdout(output, { signal: controller.signal, stdout: io.stdout }));
    } else {
      // A file can start over (each path once, a damaged layer fetched again): each attempt
      // gets its own compressor and hasher.
      let compressorUsed = false;
      try {
        ({ bytes } = await pullToFile(reference, requestOptions, file, () => {
          hasher = options.digestFile === undefined ? undefined : new HashingPassThrough();
          const stage = compressorUsed ? api.createCompressor(format, compressorOptions) : compressor;
          compressorUsed = true;
          return hasher === undefined ? [stage] : [stage, hasher];
        }, recorded.passthrough ? () => {
          hasher = options.digestFile === undefined ? undefined : new HashingPassThrough();
          return hasher === undefined ? [] : [hasher];
        } : undefined));
      } finally {
        // A pull that failed before its first byte never handed the compressor on.
        if (!compressorUsed) compressor.destroy();
      }
    }

    // The rootfs is complete; only now what describes it, each file whole or not at all.
    if (options.configOut !== undefined && image !== undefined) await writeText(options.configOut, prettyJson(image.config.bytes));
    if (hasher !== undefined && options.digestFile !== undefined) {
      await writeText(options.digestFile, `${hasher.digest}  ${file ?? '-'}\n`);
    }
    if (options.ifChanged === true && file !== undefined && resolved !== undefined) {
      await writeRecord(file, recordOf(resolved, recorded, bytes));
    }
    reporter.finish({ bytesWritten: bytes, output: file, format, seconds: (performance.now() - started) / 1000 });
  } catch (error) {
    reporter.abandon();
    // However the abort surfaced (node's AbortError, a destroyed socket), it is an interrupt.
    if (controller.signal.aborted) throw new AbortError({ cause: error });
    throw error;
  } finally {
    stopListening();
  }
}

/** What refusing a terminal as the output says (binary on a terminal garbles it). */
const TERMINAL_REFUSAL = 'refusing to write a tar archive to a terminal; use -o FILE or redirect stdout';

/** compress.ts's levels when none is given; the record must say the same either way. */
const DEFAULT_LEVEL = { gzip: 6, zstd: 3 } as const;

/**
 * `--if-changed`: whether `file` was made, with the same options, from the image the
 * source has now. Says so when it was (one line, or an `up-to-date` record in json mode).
 */
async function upToDate(
  reference: string,
  file: string,
  recorded: RecordedOptions,
  registryOptions: PullOptions,
  reporter: ProgressReporter,
  options: PullCommandOptions,
  io: CliIo,
): Promise<boolean> {
  const record = await readRecord(file);
  if (record === undefined || !(await recordMatches(record, file, recorded))) return false;
  const { checkImageChanged } = await import('../index.js');
  const check = await checkImageChanged(reference, record, registryOptions);
  if (check.changed) return false;
  if (check.digest !== undefined && check.digest !== record.digest) {
    // The index moved on, our platform's manifest did not: remember the new index digest
    // so that the next check is a single HEAD again.
    await writeRecord(file, { ...record, digest: check.digest, indexDigest: check.digest });
  }
  const digest = check.digest ?? record.digest;
  if (reporter.mode === 'json') {
    io.stderr.write(`${JSON.stringify({ type: 'up-to-date', reference, digest, output: file })}\n`);
  } else if (options.quiet !== true) {
    io.stderr.write(`${file} is up to date: ${reference} is still ${digest} (see ${basename(recordPath(file))}); nothing pulled\n`);
  }
  return true;
}

/** Output and reporting options that contradict each other. */

function pullOptions(options: PullCommandOptions, password: string | undefined, signal: AbortSignal): PullOptions {
  // exactOptionalPropertyTypes: absent options stay absent rather than `undefined`.
  const result: PullOptions = { signal };
  if (options.platform !== undefined) result.platform = options.platform;
  if (options.username !== undefined) result.username = options.username;
  if (password !== undefined) result.password = password;
  if (options.plainHttp === true) result.plainHttp = true;
  if (options.caFile !== undefined && options.caFile.length > 0) result.caFiles = options.caFile;
  if (options.insecure === true) result.insecure = true;
  if (options.registryMirror !== undefined && options.registryMirror !== '') result.registryMirror = options.registryMirror;
  Object.assign(result, transferOptions(options));
  if (options.expandSparse === true) result.expandSparse = true;
  if (options.timeout !== undefined) result.timeoutMs = options.timeout * 1000;
  return result;
}

function parseFormat(value: string): 'tar' | 'gzip' | 'zstd' {
  if (value === 'tar' || value === 'gzip' || value === 'zstd') return value;
  throw new InvalidArgumentError('Expected tar, gzip or zstd.');
}

function parseLevel(value: string): number {
  if (/^(1[0-9]|[0-9])$/.test(value)) return Number(value);
  throw new InvalidArgumentError('Expected an integer from 0 to 9 (gzip) or 1 to 19 (zstd).');
}

