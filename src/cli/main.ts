#!/usr/bin/env node
/**
 * The `oci-rootfs` command on the process: its streams, its exit status. The program
 * itself is `program.ts`.
 */
import { runCli } from './program.js';

// A reader that closed the pipe (`| head`) makes later stdout writes fail with EPIPE,
// possibly after the pull settled; without a listener that would crash the process.
// The pull reports EPIPE itself while it runs (writeToStdout).
process.stdout.on('error', () => {});
// exitCode, not exit(): stdout may still be flushing the bytes already written.
process.exitCode = await runCli(process.argv, {
  stdin: process.stdin,
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
});
