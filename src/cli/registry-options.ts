/**
 * The options every command that talks to a registry shares with `pull` (platform,
 * credentials, plain HTTP, TLS trust, the Docker Hub mirror, debug), declared once so
 * `inspect`, `config` and `exists` spell and check them exactly as `pull` does.
 */
import { Option, type Command } from 'commander';
import { AbortError } from '../errors.js';
import type { PullOptions } from '../operators/pull-options.js';
import { reportWarning } from './errors.js';
import { abortOnInterrupt, checkCredentialOptions, parsePlatform, readPassword, type CliIo } from './pull-command.js';

/** What commander hands the action for the shared options. */
export interface RegistryCommandOptions {
  platform?: string;
  username?: string;
  password?: string;
  passwordStdin?: boolean;
  plainHttp?: boolean;
  debug?: boolean;
}

/** How to reach the registry: TLS trust and the Docker Hub mirror. */
export interface ConnectionCommandOptions {
  caFile?: string[];
  insecure?: boolean;
  registryMirror?: string;
}

/** `--ca-file`, `--insecure`, `--registry-mirror`: added to `pull` and the shared set alike. */
export function addConnectionOptions(command: Command): Command {
  return command
    .option('--ca-file <file>', 'also trust the CA certificates (PEM) in FILE; may be repeated', collect, [])
    .option('--insecure', 'do not verify the registry TLS certificate (unsafe: anyone on the path can change the image)')
    .addOption(
      new Option('--registry-mirror <url>', 'ask this Docker Hub mirror first for docker.io images').env('REGISTRY_MIRROR'),
    );
}

/**
 * The connection options as the API takes them; warns (one line) about `--insecure`,
 * which a script may carry for years after the reason for it went away.
 */
export function connectionOptions(options: ConnectionCommandOptions, io: Pick<CliIo, 'stderr'>): PullOptions {
  const result: PullOptions = {};
  if (options.caFile !== undefined && options.caFile.length > 0) result.caFiles = options.caFile;
  if (options.insecure === true) {
    reportWarning('--insecure: TLS certificates are not verified; the registry can be impersonated', io.stderr);
    result.insecure = true;
  }
  if (options.registryMirror !== undefined && options.registryMirror !== '') result.registryMirror = options.registryMirror;
  return result;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function addRegistryOptions(command: Command, platformHelp: string): Command {
  return addConnectionOptions(command)
    .option('--platform <os/arch[/variant]>', platformHelp, parsePlatform)
    .option('--username <name>', 'registry user name (default: from the Docker config)')
    .option('--password <password>', 'registry password or token (visible to other users; prefer --password-stdin)')
    .option('--password-stdin', 'read the registry password or token from stdin')
    .option('--plain-http', 'talk to the registry over plain HTTP')
    .option('--debug', 'on failure, print the cause chain and stack traces');
}

/**
 * Runs `work` with the registry options as the API takes them and an abort signal that
 * Ctrl-C fires (exit 130), as `pull` does.
 */
export async function withRegistryOptions<T>(
  options: RegistryCommandOptions & ConnectionCommandOptions,
  io: CliIo,
  work: (registryOptions: PullOptions) => Promise<T>,
): Promise<T> {
  checkCredentialOptions(options);
  if (options.password !== undefined) {
    reportWarning('--password can be read by other users of this machine; prefer --password-stdin', io.stderr);
  }
  const connection = connectionOptions(options, io);
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
      ...connection,
    });
  } catch (error) {
    if (controller.signal.aborted) throw new AbortError({ cause: error });
    throw error;
  } finally {
    stopListening();
  }
}

/** Writes to stdout and waits until it was handed to the OS, so exit never cuts it short. */
export function writeOut(io: CliIo, data: string | Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    io.stdout.write(data, (error) => (error ? reject(error) : resolve()));
  });
}
