/**
 * `oci-rootfs pull <image>`: pullRootfs() → compressor → file (atomic) or stdout, the
 * right-hand end of the pipeline in DESIGN.md §2. Everything a user can get wrong is
 * checked before the first request goes out.
 */
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream';
import { InvalidArgumentError, type Command } from 'commander';
import { AbortError, ExitCode, UsageError } from '../errors.js';
import type { PullOptions } from '../operators/pull-options.js';
import { createCompressor, formatFromPath } from '../streams/compress.js';
import {
  TERMINAL_REFUSAL,
  writeAtomically,
  writeToStdout,
  type StdoutLike,
} from '../streams/output-file.js';
import { reportWarning } from './errors.js';

/** The options commander hands to the action, after the parsers below. */
export interface PullCommandOptions {
  output?: string;
  format?: 'tar' | 'gzip';
  platform?: string;
  username?: string;
  password?: string;
  passwordStdin?: boolean;
  plainHttp?: boolean;
  level?: number;
  debug?: boolean;
}

/** The process streams, passed in so the command can be driven without a process. */
export interface CliIo {
  stdin: Readable;
  stdout: StdoutLike;
  stderr: Writable;
}

const EXAMPLES = `
Examples:
  $ oci-rootfs pull alpine:3.20 -o alpine.tar.gz
  $ oci-rootfs pull --platform linux/arm64 debian:bookworm -o debian.tar
  $ echo "$TOKEN" | oci-rootfs pull ghcr.io/me/app:1.0 --username me --password-stdin -o app.tgz
  $ oci-rootfs pull --plain-http localhost:5000/test | tar -tv

On stdout a failed pull ends without the tar end-of-archive marker, so tar reports a
truncated archive; use "set -o pipefail" to see the exit status in a pipeline.
`;

export function registerPullCommand(program: Command, io: CliIo): Command {
  return program
    .command('pull')
    .description('pull an image and write its flattened root filesystem as one tar archive')
    .argument('<image>', 'image reference, e.g. alpine, alpine:3.20, ghcr.io/org/app@sha256:...')
    .option('-o, --output <file>', 'write to FILE, "-" for stdout (default: stdout)')
    .option('--format <format>', 'tar or gzip (default: from the -o extension, else tar)', parseFormat)
    .option(
      '--platform <os/arch[/variant]>',
      'the platform to pick from a multi-platform image (default: linux/<host arch>)',
      parsePlatform,
    )
    .option('--username <name>', 'registry user name (default: from the Docker config)')
    .option('--password <password>', 'registry password or token (visible to other users; prefer --password-stdin)')
    .option('--password-stdin', 'read the registry password or token from stdin')
    .option('--plain-http', 'talk to the registry over plain HTTP')
    .option('--level <n>', 'gzip compression level, 0 (none) to 9 (smallest) (default: 6)', parseLevel)
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
  if (options.level !== undefined && format !== 'gzip') {
    throw new UsageError(`--level applies only to gzip output, not ${format}`);
  }
  // Refuse before any network traffic, not after the first layer arrived.
  if (file === undefined && io.stdout.isTTY === true) throw new UsageError(TERMINAL_REFUSAL);
  checkCredentialOptions(options);
  if (options.password !== undefined) {
    reportWarning('--password can be read by other users of this machine; prefer --password-stdin', io.stderr);
  }

  const compressor = createCompressor(format, options.level === undefined ? {} : { level: options.level });
  let password: string | undefined;
  try {
    password = options.passwordStdin === true ? await readPassword(io.stdin) : options.password;
  } catch (error) {
    compressor.destroy();
    throw error;
  }

  const controller = new AbortController();
  const stopListening = abortOnInterrupt(controller);
  try {
    // Loaded here rather than at the top so --help, --version and usage errors do not pay
    // for the registry client, undici and rxjs at startup.
    const { pullRootfs } = await import('../operators/pull-rootfs.js');
    const tar = pullRootfs(reference, pullOptions(options, password, controller.signal));
    // On any error pipeline() destroys every stage, so the compressor never writes its
    // trailer and the consumer sees the error: the output stays visibly incomplete.
    const output = pipeline(tar, compressor, () => {});
    if (file === undefined) await writeToStdout(output, { signal: controller.signal, stdout: io.stdout });
    else await writeAtomically(output, file, { signal: controller.signal });
  } catch (error) {
    // However the abort surfaced (node's AbortError, a destroyed socket), it is an interrupt.
    if (controller.signal.aborted) throw new AbortError({ cause: error });
    throw error;
  } finally {
    stopListening();
  }
}

function pullOptions(options: PullCommandOptions, password: string | undefined, signal: AbortSignal): PullOptions {
  // exactOptionalPropertyTypes: absent options stay absent rather than `undefined`.
  const result: PullOptions = { signal };
  if (options.platform !== undefined) result.platform = options.platform;
  if (options.username !== undefined) result.username = options.username;
  if (password !== undefined) result.password = password;
  if (options.plainHttp === true) result.plainHttp = true;
  return result;
}

function checkCredentialOptions(options: PullCommandOptions): void {
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
async function readPassword(stdin: Readable): Promise<string> {
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
function abortOnInterrupt(controller: AbortController): () => void {
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

function parseFormat(value: string): 'tar' | 'gzip' {
  if (value === 'tar' || value === 'gzip') return value;
  if (value === 'zstd') throw new InvalidArgumentError('zstd output is not supported yet.');
  throw new InvalidArgumentError('Expected tar or gzip.');
}

function parsePlatform(value: string): string {
  if (/^[^/\s]+\/[^/\s]+(\/[^/\s]+)?$/.test(value)) return value;
  throw new InvalidArgumentError('Expected os/arch[/variant], e.g. linux/arm64 or linux/arm/v7.');
}

function parseLevel(value: string): number {
  if (/^[0-9]$/.test(value)) return Number(value);
  throw new InvalidArgumentError('Expected an integer from 0 to 9.');
}
