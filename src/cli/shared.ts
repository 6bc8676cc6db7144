/**
 * What every command shares: the process streams it is given, Ctrl-C handling, the
 * credential options' rules, and writing to stdout. Commands import this; it imports no
 * command, so there is no cycle between them.
 */
import type { Readable, Writable } from 'node:stream';
import { InvalidArgumentError } from 'commander';
import { AbortError, ExitCode, UsageError } from '../errors.js';
import type { StdoutLike } from '../index.js';

/** The process streams, passed in so the commands can be driven without a process. */
export interface CliIo {
  stdin: Readable;
  stdout: StdoutLike;
  stderr: Writable & { isTTY?: boolean | undefined; columns?: number; rows?: number };
  env?: NodeJS.ProcessEnv;
}

/** The credential options as commander hands them. */
export interface CredentialCommandOptions {
  username?: string;
  password?: string;
  passwordStdin?: boolean;
}

export function checkCredentialOptions(options: CredentialCommandOptions): void {
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

/** How long a command may take to wind down after Ctrl-C before the process is made to exit. */
const INTERRUPT_GRACE_MS = 5_000;

/**
 * SIGINT/SIGTERM abort the command: a partial file is removed and the exit status is 130.
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

/** `--platform`: the shape only; the library judges the names. */
export function parsePlatformArgument(value: string): string {
  if (/^[^/\s]+\/[^/\s]+(\/[^/\s]+)?$/.test(value)) return value;
  throw new InvalidArgumentError('Expected os/arch[/variant], e.g. linux/arm64 or linux/arm/v7.');
}

/** Writes to stdout and waits until it was handed to the OS, so exit never cuts it short. */
export function writeOut(io: CliIo, data: string | Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    io.stdout.write(data, (error) => (error ? reject(error) : resolve()));
  });
}

/** The image argument: what every command says it takes. */
export const IMAGE_ARGUMENT_HELP =
  'image: a registry reference (alpine, alpine:3.20, ghcr.io/org/app@sha256:...), oci:DIR[:TAG] or docker-archive:FILE[:REPO:TAG]';
