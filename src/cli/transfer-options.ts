/**
 * The options of the commands that download layers (`pull`, `unpack`): how hard to try and
 * what to show while trying. Declared and read once, so the two commands spell and check
 * them alike; the registry options they share with every command are in registry-options.ts.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { UsageError } from '../errors.js';
import type { PullOptions } from '../index.js';
import { createProgressReporter, PROGRESS_MODES, type ProgressMode, type ProgressReporter } from './progress/display.js';
import { parseSeconds } from './registry-options.js';
import type { CliIo } from './shared.js';

/** What commander hands the action for these options. */
export interface TransferCommandOptions {
  allowForeign?: boolean;
  retries?: number;
  /** Seconds. */
  maxWait?: number;
  /** Absent: `auto`. */
  progress?: ProgressMode;
  quiet?: boolean;
}

export function addTransferOptions(command: Command): Command {
  return command
    .option('--allow-foreign', 'fetch foreign (non-distributable) layers from the URLs they list, without credentials')
    .addOption(
      new Option('--progress <mode>', 'progress on stderr: auto (a display on a terminal, else none), tty, plain, json, none').choices(
        PROGRESS_MODES,
      ),
    )
    .option('-q, --quiet', 'print nothing but errors')
    .option('--retries <n>', 'tries after the first for a failing request or layer download (default: 5)', parseRetries)
    .option('--max-wait <seconds>', 'longest wait on a rate limit (HTTP 429 Retry-After) before failing (default: 60)', parseSeconds);
}

/** These options as the API takes them; absent ones stay absent (exactOptionalPropertyTypes). */
export function transferOptions(options: TransferCommandOptions): Pick<PullOptions, 'allowForeign' | 'retries' | 'maxWaitMs'> {
  return {
    ...(options.allowForeign === true ? { allowForeign: true } : {}),
    ...(options.retries === undefined ? {} : { retries: options.retries }),
    ...(options.maxWait === undefined ? {} : { maxWaitMs: options.maxWait * 1000 }),
  };
}

/** Refuses `--quiet` with a `--progress` that shows something, before any request. */
export function checkReportingOptions(options: TransferCommandOptions): void {
  if (options.quiet === true && options.progress !== undefined && options.progress !== 'none') {
    throw new UsageError(`--quiet and --progress ${options.progress} cannot be used together`);
  }
}

/** The progress display on `io.stderr` that the options ask for. */
export function createReporter(options: TransferCommandOptions, io: CliIo): ProgressReporter {
  return createProgressReporter({
    mode: options.progress ?? 'auto',
    quiet: options.quiet === true,
    stream: io.stderr,
    env: io.env ?? process.env,
  });
}

export function parseRetries(value: string): number {
  if (/^\d{1,3}$/.test(value)) return Number(value);
  throw new InvalidArgumentError('Expected a whole number of retries, e.g. 0 or 5.');
}
