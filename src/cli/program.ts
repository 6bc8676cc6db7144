/**
 * The `oci-rootfs` program: its commands, help and exit statuses, for any streams. `main.ts`
 * runs it on the process; tests run it in-process with streams of their own.
 */
import { Command, CommanderError } from 'commander';
import { ExitCode } from '../errors.js';
import { QuietFailure, reportError, usageErrorFromCommander } from './errors.js';
import { registerExistsCommand } from './exists-command.js';
import { registerConfigCommand, registerInspectCommand } from './inspect-command.js';
import { registerPullCommand } from './pull-command.js';
import { registerUnpackCommand } from './unpack-command.js';
import type { CliIo } from './shared.js';
import { versionText } from './version.js';

export type { CliIo } from './shared.js';

const EXAMPLES_AND_EXIT_STATUSES = `
Examples:
  $ oci-rootfs pull alpine -o alpine.tar.gz
  $ oci-rootfs pull --platform linux/arm64 debian:bookworm > debian.tar
  $ oci-rootfs pull --if-changed alpine -o alpine.tar.gz --config-out alpine.json
  $ oci-rootfs inspect alpine
  $ oci-rootfs config alpine | jq -r .config.User
  $ oci-rootfs exists ghcr.io/me/app:1.0 || echo missing
  $ oci-rootfs pull oci:./layout:latest -o rootfs.tar
  $ oci-rootfs pull docker-archive:saved.tar -o rootfs.tar
  $ oci-rootfs pull --help

Exit status:
  0 success, 1 other failure, 2 usage error or bad reference, 3 image, tag or platform
  not found, 4 authentication, 5 rate limited, 6 network, 7 integrity (digest or size),
  8 unsafe or malformed content, 130 interrupted
`;

/**
 * The command line as a commander program over `io`. It throws instead of exiting; use
 * {@link runCli} for the exit status.
 */
export function createProgram(io: CliIo): Command {
  const program = new Command('oci-rootfs')
    .description('Pull an OCI / Docker image from a registry into one flattened root filesystem tar.')
    .option('-V, --version', 'print the version and the compression engines in use')
    .helpOption('-h, --help', 'print this help')
    .addHelpText('after', EXAMPLES_AND_EXIT_STATUSES)
    // Throw instead of exiting, and print nothing: main() prints one line and exits 2.
    // Subcommands created afterwards inherit both settings.
    .exitOverride()
    // Help and version go to the streams we were given, not necessarily the process's.
    .configureOutput({
      writeOut: (text) => void io.stdout.write(text),
      writeErr: (text) => void io.stderr.write(text),
      outputError: () => {},
    });
  // Not commander's .version(): that takes the text up front, and finding the engines
  // loads the addons, which no other command should pay for at startup.
  // runCli prints it (versionText() is async: it loads the compressors only then).
  program.on('option:version', () => {
    throw new CommanderError(ExitCode.ok, 'commander.version', '');
  });
  registerPullCommand(program, io);
  registerUnpackCommand(program, io);
  registerInspectCommand(program, io);
  registerConfigCommand(program, io);
  registerExistsCommand(program, io);
  return program;
}

/** The exit status for a parse outcome: help and version are successes, the rest usage errors. */
function commanderExit(error: CommanderError, stderr: NodeJS.WritableStream): number {
  if (error.exitCode === 0) return ExitCode.ok;
  // Commander already printed the help to stderr (e.g. no command given).
  if (error.code === 'commander.help') return ExitCode.usage;
  return reportError(usageErrorFromCommander(error), { stderr });
}

/**
 * Runs the program on `argv` (as `process.argv`: node, script, arguments) and returns the
 * exit status; every message goes to `io.stderr`. Never exits the process.
 *
 * @example
 * ```ts
 * const status = await runCli(['node', 'oci-rootfs', 'exists', 'alpine'], io);
 * ```
 */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const program = createProgram(io);
  try {
    await program.parseAsync(argv);
    return ExitCode.ok;
  } catch (error) {
    if (error instanceof CommanderError && error.code === 'commander.version') {
      io.stdout.write(`${await versionText()}\n`);
      return ExitCode.ok;
    }
    // `--debug` is read from argv so it also covers errors raised while parsing.
    return error instanceof QuietFailure
      ? error.exitCode
      : error instanceof CommanderError
        ? commanderExit(error, io.stderr)
        : reportError(error, { debug: argv.includes('--debug'), stderr: io.stderr });
  }
}

