/**
 * `oci-rootfs pull <image>`: pullRootfs() → compressor → file (atomic) or stdout, the
 * right-hand end of the pipeline in DESIGN.md §2. Everything a user can get wrong is
 * checked before the first request goes out.
 */
import { basename } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { AbortError, ExitCode, UsageError } from '../errors.js';
import type { PullEvent, ResolvedEvent } from '../operators/events.js';
import type { PullOptions } from '../operators/pull-options.js';
import { COMPRESSOR_ENGINES, createCompressor, formatFromPath, resolveGzipEngine, type CompressorEngine } from '../streams/compress.js';
import {
  TERMINAL_REFUSAL,
  writeAtomically,
  writeToStdout,
  type StdoutLike,
} from '../streams/output-file.js';
import { reportWarning } from './errors.js';
import { addConnectionOptions, connectionOptions, type ConnectionCommandOptions } from './registry-options.js';
import { createProgressReporter, PROGRESS_MODES, type ProgressMode, type ProgressReporter } from './progress/display.js';
import {
  ConfigFetch,
  forgetRecord,
  HashingPassThrough,
  readRecord,
  recordMatches,
  recordOf,
  recordPath,
  writeRecord,
  writeText,
  type RecordedOptions,
} from './pull-outputs.js';

/** The options commander hands to the action, after the parsers below. */
export interface PullCommandOptions extends ConnectionCommandOptions {
  output?: string;
  format?: 'tar' | 'gzip' | 'zstd';
  platform?: string;
  username?: string;
  password?: string;
  passwordStdin?: boolean;
  plainHttp?: boolean;
  allowForeign?: boolean;
  level?: number;
  gzipEngine?: CompressorEngine;
  debug?: boolean;
  retries?: number;
  /** Seconds. */
  maxWait?: number;
  /** Seconds. */
  timeout?: number;
  /** Absent: `auto`. */
  progress?: ProgressMode;
  quiet?: boolean;
  configOut?: string;
  digestFile?: string;
  ifChanged?: boolean;
}

/** The process streams, passed in so the command can be driven without a process. */
export interface CliIo {
  stdin: Readable;
  stdout: StdoutLike;
  stderr: Writable & { isTTY?: boolean | undefined; columns?: number; rows?: number };
  env?: NodeJS.ProcessEnv;
}

const EXAMPLES = `
Examples:
  $ oci-rootfs pull alpine:3.20 -o alpine.tar.gz
  $ oci-rootfs pull --platform linux/arm64 debian:bookworm -o debian.tar
  $ echo "$TOKEN" | oci-rootfs pull ghcr.io/me/app:1.0 --username me --password-stdin -o app.tgz
  $ oci-rootfs pull --plain-http localhost:5000/test | tar -tv
  $ oci-rootfs pull alpine -o alpine.tar.gz --config-out alpine.config.json --digest-file alpine.sha256
  $ oci-rootfs pull --if-changed debian:bookworm -o debian.tar.gz     # cron: no download if unchanged
  $ oci-rootfs pull --progress json alpine -o alpine.tar 2> events.ndjson

Progress goes to stderr: a display redrawn in place on a terminal, nothing otherwise
(--progress auto); "plain" prints a line per layer event, "json" every event as one JSON
object per line. NO_COLOR turns colours off.

--if-changed keeps a record of what the output was made from in <output>.oci-rootfs.json
and skips the pull when the registry still has that image (checked with a HEAD request).

On stdout a failed pull ends without the tar end-of-archive marker, so tar reports a
truncated archive; use "set -o pipefail" to see the exit status in a pipeline.
`;

export function registerPullCommand(program: Command, io: CliIo): Command {
  const command = program
    .command('pull')
    .description('pull an image and write its flattened root filesystem as one tar archive')
    .argument('<image>', 'image reference, e.g. alpine, alpine:3.20, ghcr.io/org/app@sha256:...')
    .option('-o, --output <file>', 'write to FILE, "-" for stdout (default: stdout)')
    .option('--format <format>', 'tar, gzip or zstd (default: from the -o extension, else tar)', parseFormat)
    .option(
      '--platform <os/arch[/variant]>',
      'the platform to pick from a multi-platform image (default: linux/<host arch>)',
      parsePlatform,
    )
    .option('--username <name>', 'registry user name (default: from the Docker config)')
    .option('--password <password>', 'registry password or token (visible to other users; prefer --password-stdin)')
    .option('--password-stdin', 'read the registry password or token from stdin')
    .option('--plain-http', 'talk to the registry over plain HTTP');
  return addConnectionOptions(command)
    .option('--allow-foreign', 'fetch foreign (non-distributable) layers from the URLs they list, without credentials')
    .option('--level <n>', 'compression level: gzip 0 (none) to 9 (smallest), default 6; zstd 1 to 19, default 3', parseLevel)
    .addOption(
      new Option(
        '--gzip-engine <engine>',
        'gzip with native (libdeflate, the default where built), zlib (node:zlib) or pako; each gives its own bytes',
      ).choices(COMPRESSOR_ENGINES),
    )
    .addOption(
      new Option('--progress <mode>', 'progress on stderr: auto (a display on a terminal, else none), tty, plain, json, none').choices(
        PROGRESS_MODES,
      ),
    )
    .option('-q, --quiet', 'print nothing but errors')
    .option('--config-out <file>', 'also write the image config (JSON) to FILE, once the pull succeeded')
    .option('--digest-file <file>', 'also write "sha256:<hex>  <output>" of the output bytes to FILE')
    .option('--if-changed', 'do nothing if -o FILE was made from the image the registry has now')
    .option('--retries <n>', 'tries after the first for a failing request or layer download (default: 5)', parseRetries)
    .option('--max-wait <seconds>', 'longest wait on a rate limit (HTTP 429 Retry-After) before failing (default: 60)', parseSeconds)
    .option('--timeout <seconds>', 'connect timeout and longest silence of a response before retrying (default: 30)', parsePositiveSeconds)
    .option('--debug', 'on failure, print the cause chain and stack traces')
    .addHelpText('after', EXAMPLES)
    .action(async (image: string, options: PullCommandOptions) => {
      await runPull(image, options, io);
    });
}

/** Runs one pull to completion; throws an OciRootfsError-compatible error on failure. */
export async function runPull(reference: string, options: PullCommandOptions, io: CliIo): Promise<void> {
  const file = options.output === undefined || options.output === '-' ? undefined : options.output;
  // stdout has no name to infer from, and plain tar is what `| tar -x` expects.
  const format = options.format ?? (file === undefined ? 'tar' : (formatFromPath(file) ?? 'tar'));
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
  checkReportingOptions(options, file);
  if (options.password !== undefined) {
    reportWarning('--password can be read by other users of this machine; prefer --password-stdin', io.stderr);
  }

  // Resolved here, not inside the compressor: the engine changes the bytes, so the record
  // and the done event name it (and a pinned engine that is missing fails before any request).
  const gzipEngine = format === 'gzip' ? resolveGzipEngine(options.gzipEngine) : undefined;
  const compressor = createCompressor(format, {
    ...(options.level === undefined ? {} : { level: options.level }),
    ...(gzipEngine === undefined ? {} : { engine: gzipEngine }),
  });
  let password: string | undefined;
  try {
    password = options.passwordStdin === true ? await readPassword(io.stdin) : options.password;
  } catch (error) {
    compressor.destroy();
    throw error;
  }

  const started = performance.now();
  const reporter = createProgressReporter({
    mode: options.progress ?? 'auto',
    quiet: options.quiet === true,
    stream: io.stderr,
    env: io.env ?? process.env,
  });
  // What the output bytes depend on besides the image (DESIGN.md §1), for --if-changed.
  const recorded: RecordedOptions = {
    platform: options.platform ?? null,
    format,
    level: format === 'tar' ? null : (options.level ?? DEFAULT_LEVEL[format]),
    gzipEngine: gzipEngine ?? null,
  };
  const controller = new AbortController();
  const stopListening = abortOnInterrupt(controller);
  try {
    const registryOptions = { ...pullOptions(options, password, controller.signal), ...connectionOptions(options, io) };
    if (options.ifChanged === true && file !== undefined) {
      if (await upToDate(reference, file, recorded, registryOptions, reporter, options, io)) {
        compressor.destroy();
        return;
      }
    }
    // The output is about to be replaced: a record of the old one must not outlive it.
    if (file !== undefined) await forgetRecord(file);

    // Loaded here rather than at the top so --help, --version and usage errors do not pay
    // for the registry client, undici and rxjs at startup.
    const { pullRootfs } = await import('../operators/pull-rootfs.js');
    let resolved: ResolvedEvent | undefined;
    const config = options.configOut === undefined ? undefined : new ConfigFetch(reference, registryOptions);
    const onEvent = (pulled: PullEvent): void => {
      const event = pulled.type === 'done' && gzipEngine !== undefined ? { ...pulled, gzipEngine } : pulled;
      if (event.type === 'resolved') resolved = event;
      config?.event(event);
      reporter.event(event);
    };
    const tar = pullRootfs(reference, { ...registryOptions, onEvent });
    // Hashed as it is written, so --digest-file costs no second read of the output.
    const hasher = options.digestFile === undefined ? undefined : new HashingPassThrough();
    // On any error pipeline() destroys every stage, so the compressor never writes its
    // trailer and the consumer sees the error: the output stays visibly incomplete.
    const output = hasher === undefined ? pipeline(tar, compressor, () => {}) : pipeline(tar, compressor, hasher, () => {});
    const { bytes } =
      file === undefined
        ? await writeToStdout(output, { signal: controller.signal, stdout: io.stdout })
        : await writeAtomically(output, file, { signal: controller.signal });

    // The rootfs is complete; only now what describes it, each file whole or not at all.
    if (config !== undefined && options.configOut !== undefined) await writeText(options.configOut, await config.text());
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

/** compress.ts's levels when none is given; the record must say the same either way. */
const DEFAULT_LEVEL = { gzip: 6, zstd: 3 } as const;

/**
 * `--if-changed`: whether `file` was made, with the same options, from the image the
 * registry has now. Says so when it was (one line, or an `up-to-date` record in json mode).
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
  const { checkImageChanged } = await import('../operators/image-changed.js');
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
function checkReportingOptions(options: PullCommandOptions, file: string | undefined): void {
  if (options.quiet === true && options.progress !== undefined && options.progress !== 'none') {
    throw new UsageError(`--quiet and --progress ${options.progress} cannot be used together`);
  }
  if (options.ifChanged === true && file === undefined) {
    throw new UsageError('--if-changed needs -o FILE: there is nothing to compare stdout with');
  }
}

function pullOptions(options: PullCommandOptions, password: string | undefined, signal: AbortSignal): PullOptions {
  // exactOptionalPropertyTypes: absent options stay absent rather than `undefined`.
  const result: PullOptions = { signal };
  if (options.platform !== undefined) result.platform = options.platform;
  if (options.username !== undefined) result.username = options.username;
  if (password !== undefined) result.password = password;
  if (options.plainHttp === true) result.plainHttp = true;
  if (options.allowForeign === true) result.allowForeign = true;
  if (options.retries !== undefined) result.retries = options.retries;
  if (options.maxWait !== undefined) result.maxWaitMs = options.maxWait * 1000;
  if (options.timeout !== undefined) result.timeoutMs = options.timeout * 1000;
  return result;
}

export function checkCredentialOptions(options: PullCommandOptions): void {
  const hasPassword = options.password !== undefined || options.passwordStdin === true;
  if (options.password !== undefined && options.passwordStdin === true) {
    throw new UsageError('--password and --password-stdin cannot be used together');
  }
  if (hasPassword && options.username === undefined) {
    throw new UsageError(`${options.password !== undefined ? '--password' : '--password-stdin'} needs --username`);
  }
  if (!hasPassword && options.username !== undefined) {
    throw new UsageError('--username needs --password or --password-stdin');
  }
}

/** All of stdin, less one trailing newline (as `docker login --password-stdin` does). */
export async function readPassword(stdin: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stdin) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  const password = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
  if (password === '') throw new UsageError('--password-stdin: stdin held no password');
  return password;
}

/** How long a pull may take to wind down after Ctrl-C before the process is made to exit. */
const INTERRUPT_GRACE_MS = 5_000;

/**
 * SIGINT/SIGTERM abort the pull: the partial file is removed and the exit status is 130.
 * A second signal, or a wind-down that outlasts the grace period, exits at once: the user
 * asked twice, and a stuck socket must not keep the process alive.
 */
export function abortOnInterrupt(controller: AbortController): () => void {
  const onSignal = (): void => {
    if (controller.signal.aborted) process.exit(ExitCode.interrupted);
    controller.abort(new AbortError());
    // unref: the timer fires only if something else still keeps the process alive.
    setTimeout(() => process.exit(ExitCode.interrupted), INTERRUPT_GRACE_MS).unref();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
}

function parseFormat(value: string): 'tar' | 'gzip' | 'zstd' {
  if (value === 'tar' || value === 'gzip' || value === 'zstd') return value;
  throw new InvalidArgumentError('Expected tar, gzip or zstd.');
}

export function parsePlatform(value: string): string {
  if (/^[^/\s]+\/[^/\s]+(\/[^/\s]+)?$/.test(value)) return value;
  throw new InvalidArgumentError('Expected os/arch[/variant], e.g. linux/arm64 or linux/arm/v7.');
}

function parseLevel(value: string): number {
  if (/^(1[0-9]|[0-9])$/.test(value)) return Number(value);
  throw new InvalidArgumentError('Expected an integer from 0 to 9 (gzip) or 1 to 19 (zstd).');
}

function parseRetries(value: string): number {
  if (/^\d{1,3}$/.test(value)) return Number(value);
  throw new InvalidArgumentError('Expected a whole number of retries, e.g. 0 or 5.');
}

function parseSeconds(value: string): number {
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value);
  throw new InvalidArgumentError('Expected a number of seconds, e.g. 60 or 0.5.');
}

function parsePositiveSeconds(value: string): number {
  const seconds = parseSeconds(value);
  if (seconds > 0) return seconds;
  throw new InvalidArgumentError('Expected a number of seconds above 0.');
}
