#!/usr/bin/env node
/**
 * The `oci-rootfs` command on the process: its streams, its exit status. The program
 * itself is `program.ts`.
 */
import { setFlagsFromString } from 'node:v8';
import { asksForVersionOnly, versionText } from './version.js';

// A reader that closed the pipe (`| head`) makes later stdout writes fail with EPIPE,
// possibly after the pull settled; without a listener that would crash the process.
// The pull reports EPIPE itself while it runs (writeToStdout).
process.stdout.on('error', () => {});
// `--version` alone answers before the program and its commands are loaded (only the
// compressors, to name the engines); everything else loads them, and each command loads
// what it needs when it runs.
if (asksForVersionOnly(process.argv.slice(2))) {
  process.stdout.write(`${await versionText()}\n`);
} else {
  // undici parses HTTP with WebAssembly that V8 would also optimise on a background thread,
  // and a process cannot exit before that job ends: `exists` sat 0.2-0.3 s after its answer.
  // The baseline compiler's code is plenty for headers and for length-delimited bodies, which
  // the parser hands on without looking at their bytes. Set before undici is loaded.
  setFlagsFromString('--liftoff-only');
  const { runCli } = await import('./program.js');
  // exitCode, not exit(): stdout may still be flushing the bytes already written.
  process.exitCode = await runCli(process.argv, {
    stdin: process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
  });
}
