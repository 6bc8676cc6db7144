/**
 * The options every command that reads an image shares (platform, credentials, plain
 * HTTP, TLS trust, the Docker Hub mirror, timeout, debug), declared once so `pull`,
 * `inspect`, `config` and `exists` spell and check them alike.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { AbortError } from '../errors.js';
import type { QueryOptions } from '../index.js';
import { reportWarning } from './errors.js';
import { abortOnInterrupt, checkCredentialOptions, parsePlatformArgument, readPassword, type CliIo } from './shared.js';

/** What commander hands the action for the shared options. */
export interface RegistryCommandOptions {
  platform?: string;
  username?: string;
  password?: string;
  passwordStdin?: boolean;
  plainHttp?: boolean;
  caFile?: string[];
  insecure?: boolean;
  registryMirror?: string;
  /** Seconds. */
  timeout?: number;
  debug?: boolean;
}

/** Adds the shared options to `command`; `platformHelp` says what the platform picks there. */
export function addRegistryOptions(command: Command, platformHelp: string): Command {
  return command
    .option('--platform <os/arch[/variant]>', platformHelp, parsePlatformArgument)
    .option('--username <name>', 'registry user name (default: from the Docker config)')
    .option('--password <password>', 'registry password or token (visible to other users; prefer --password-stdin)')
    .option('--password-stdin', 'read the registry password or token from stdin')
    .option('--plain-http', 'talk to the registry over plain HTTP')
    .option('--ca-file <file>', 'also trust the CA certificates (PEM) in FILE; may be repeated', collect, [])
    .option('--insecure', 'do not verify the registry TLS certificate (unsafe: anyone on the path can change the image)')
    .addOption(
      new Option('--registry-mirror <url>', 'ask this Docker Hub mirror first for docker.io images').env('REGISTRY_MIRROR'),
    )
    .option('--timeout <seconds>', 'connect timeout and longest silence of a response before retrying (default: 30)', parsePositiveSeconds)
    .option('--debug', 'on failure, print the cause chain and stack traces');
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function parseSeconds(value: string): number {
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value);
  throw new InvalidArgumentError('Expected a number of seconds, e.g. 60 or 0.5.');
}

function parsePositiveSeconds(value: string): number {
  const seconds = parseSeconds(value);
  if (seconds > 0) return seconds;
  throw new InvalidArgumentError('Expected a number of seconds above 0.');
}

/**
 * Runs `work` with the shared options as the API takes them and an abort signal that
 * Ctrl-C fires (exit 130). Warns (one line each) about `--password` and `--insecure`,
 * which a script may carry for years after the reason for them went away.
 */
export async function withRegistryOptions<T>(
  options: RegistryCommandOptions,
  io: CliIo,
  work: (queryOptions: QueryOptions & { signal: AbortSignal }) => Promise<T>,
): Promise<T> {
  checkCredentialOptions(options);
  if (options.password !== undefined) {
    reportWarning('--password can be read by other users of this machine; prefer --password-stdin', io.stderr);
  }
  if (options.insecure === true) {
    reportWarning('--insecure: TLS certificates are not verified; the registry can be impersonated', io.stderr);
  }
  const password = options.passwordStdin === true ? await readPassword(io.stdin) : options.password;
  const controller = new AbortController();
  const stopListening = abortOnInterrupt(controller);
  try {
    return await work({
      signal: controller.signal,
      ...(options.platform === undefined ? {} : { platform: options.platform }),
      ...(options.username === undefined ? {} : { username: options.username }),
      ...(password === undefined ? {} : { password }),
      ...(options.plainHttp === true ? { plainHttp: true } : {}),
      ...(options.caFile !== undefined && options.caFile.length > 0 ? { caFiles: options.caFile } : {}),
      ...(options.insecure === true ? { insecure: true } : {}),
      ...(options.registryMirror === undefined || options.registryMirror === '' ? {} : { registryMirror: options.registryMirror }),
      ...(options.timeout === undefined ? {} : { timeoutMs: options.timeout * 1000 }),
    });
  } catch (error) {
    // However the abort surfaced (node's AbortError, a destroyed socket), it is an interrupt.
    if (controller.signal.aborted) throw new AbortError({ cause: error });
    throw error;
  } finally {
    stopListening();
  }
}
