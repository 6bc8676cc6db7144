/**
 * How the CLI reports a failure: one line a script can show to a person, an exit status a
 * script can branch on (DESIGN.md §6), and the whole story only when asked (`--debug`).
 */
import type { CommanderError } from 'commander';
import { NetworkError, RateLimitError, toOciRootfsError, UsageError, type ExitCode, type OciRootfsError } from '../errors.js';

export interface ReportErrorOptions {
  /** Also print the cause chain with stack traces. */
  debug?: boolean;
  stderr?: NodeJS.WritableStream;
}

/** Prints `oci-rootfs: <message>` (and with `debug` the chain) and returns the exit status. */
export function reportError(error: unknown, options: ReportErrorOptions = {}): ExitCode {
  const { debug = false, stderr = process.stderr } = options;
  const failure = toOciRootfsError(error);
  const hint = cliHint(failure);
  stderr.write(`oci-rootfs: ${oneLine(failure.message)}${hint === undefined ? '' : `; ${hint}`}\n`);
  // The chain starts at what was thrown, not at the wrapper toOciRootfsError may have made.
  if (debug) stderr.write(describeChain(error));
  return failure.exitCode;
}

/**
 * What a failure means in terms of the command's flags. The library names its options,
 * never our flags (its users have no command line), so the CLI adds this.
 */
function cliHint(failure: OciRootfsError): string | undefined {
  if (failure instanceof NetworkError && failure.message.includes('TLS certificate problem')) {
    return 'on the command line: --ca-file FILE trusts a CA, --insecure skips verification';
  }
  if (failure instanceof RateLimitError && failure.message.includes('(maxWaitMs)')) return '--max-wait allows a longer wait';
  if (failure.message.startsWith('CA file ')) return 'see --ca-file';
  return undefined;
}

/** Prints a warning on one line; the pull goes on. */
export function reportWarning(message: string, stderr: NodeJS.WritableStream = process.stderr): void {
  stderr.write(`oci-rootfs: warning: ${oneLine(message)}\n`);
}

/**
 * A commander parse error as ours, so it prints and exits like every other usage error.
 * Commander's messages start with "error: ", which our prefix replaces.
 */
export function usageErrorFromCommander(error: CommanderError): UsageError {
  return new UsageError(error.message.replace(/^error:\s*/, ''), { cause: error });
}

/** Registry messages and details can hold newlines; the first line must stay the only one. */
function oneLine(message: string): string {
  return message.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}

const MAX_CHAIN = 10;

/** Each error of the `cause` chain with its code and stack, indented under the summary. */
function describeChain(error: unknown): string {
  const lines: string[] = [];
  const seen = new Set<unknown>();
  let current: unknown = error;
  for (let depth = 0; current !== undefined && depth < MAX_CHAIN && !seen.has(current); depth++) {
    seen.add(current);
    const prefix = depth === 0 ? '' : 'caused by: ';
    if (current instanceof Error) {
      const code = (current as { code?: unknown }).code;
      const head = current.stack ?? `${current.name}: ${current.message}`;
      lines.push(`${prefix}${head}${typeof code === 'string' ? `\n    code: ${code}` : ''}`);
      current = current.cause;
    } else {
      lines.push(`${prefix}${String(current)}`);
      break;
    }
  }
  return `${lines.map((line) => line.replace(/^/gm, '  ')).join('\n')}\n`;
}

/**
 * Ends a command with `exitCode` and no further message: for outcomes the command already
 * reported itself (or was told to keep quiet about), such as `exists` finding nothing.
 */
export class QuietFailure extends Error {
  constructor(readonly exitCode: ExitCode) {
    super(`exit status ${exitCode}`);
    this.name = 'QuietFailure';
  }
}
