/**
 * The options every command that talks to a registry shares with `pull` (platform,
 * credentials, plain HTTP, debug), declared once so `inspect`, `config` and `exists`
 * spell and check them exactly as `pull` does.
 */
import type { Command } from 'commander';
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

export function addRegistryOptions(command: Command, platformHelp: string): Command {
  return command
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
  options: RegistryCommandOptions,
  io: CliIo,
  work: (registryOptions: PullOptions) => Promise<T>,
): Promise<T> {
  checkCredentialOptions(options);
  if (options.password !== undefined) {
    reportWarning('--password can be read by other users of this machine; prefer --password-stdin', io.stderr);
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
