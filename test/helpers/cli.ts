/**
 * The CLI run in this process through `runCli` (what `dist/cli/main.js` runs on the
 * process), with streams of our own: the same program, parsing and exit statuses, without
 * the cost of a node start per call. Spawned runs stay for what needs a process: exit
 * codes of the binary, a terminal, signals.
 */
import { PassThrough, Readable, Writable } from 'node:stream';
import { runCli } from '../../src/cli/program.js';

export interface CliRun {
  code: number;
  stdout: Buffer;
  stderr: string;
}

export interface InProcessOptions {
  /** The working directory for relative paths (the process's is changed for the run). */
  cwd?: string;
  /** What stdin holds. */
  stdin?: string;
  /** Extra environment variables for the run (restored afterwards). */
  env?: Record<string, string | undefined>;
}

let queue: Promise<unknown> = Promise.resolve();

/** Runs `oci-rootfs <args>` in-process; runs are serialised (they share cwd and env). */
export function runInProcess(args: string[], options: InProcessOptions = {}): Promise<CliRun> {
  const run = queue.then(() => runNow(args, options));
  queue = run.catch(() => undefined);
  return run;
}

async function runNow(args: string[], options: InProcessOptions): Promise<CliRun> {
  const stdoutChunks: Buffer[] = [];
  let stderr = '';
  const stdout = new Writable({
    write: (chunk: Buffer, _encoding, callback) => {
      stdoutChunks.push(Buffer.from(chunk));
      callback();
    },
  });
  const stderrStream = new Writable({
    write: (chunk: Buffer, _encoding, callback) => {
      stderr += chunk.toString('utf8');
      callback();
    },
  });
  const stdin = options.stdin === undefined ? new PassThrough().end() : Readable.from([Buffer.from(options.stdin)]);
  const previousCwd = process.cwd();
  const previousEnv = new Map<string, string | undefined>();
  for (const [key, value] of Object.entries(options.env ?? {})) {
    previousEnv.set(key, process.env[key]);
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
  if (options.cwd !== undefined) process.chdir(options.cwd);
  try {
    const code = await runCli(['node', 'oci-rootfs', ...args], { stdin, stdout, stderr: stderrStream, env: process.env });
    return { code, stdout: Buffer.concat(stdoutChunks), stderr };
  } finally {
    process.chdir(previousCwd);
    for (const [key, value] of previousEnv) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
}
