/**
 * `oci-rootfs unpack <image> <dir>`: the pull, written as a directory tree instead of a tar
 * (unpackRootfs$). Same sources, platform, credential, network, progress and --config-out
 * options as `pull`; the registry ones are declared once in registry-options.ts.
 */
import type { Command } from 'commander';
import type { PullEvent, ResolvedImage } from '../index.js';
import { reportWarning } from './errors.js';
import { prettyJson, writeText } from './pull-outputs.js';
import { addRegistryOptions, withRegistryOptions, type RegistryCommandOptions } from './registry-options.js';
import { IMAGE_ARGUMENT_HELP, type CliIo } from './shared.js';
import { addTransferOptions, checkReportingOptions, createReporter, transferOptions, type TransferCommandOptions } from './transfer-options.js';

export interface UnpackCommandOptions extends RegistryCommandOptions, TransferCommandOptions {
  rootless?: boolean;
  configOut?: string;
}

const EXAMPLES = `
Examples:
  $ oci-rootfs unpack debian:bookworm /var/lib/machines/debian && systemd-nspawn -D /var/lib/machines/debian
  $ oci-rootfs unpack alpine:3.20 ./alpine && sudo chroot ./alpine /bin/sh
  $ oci-rootfs unpack --rootless alpine ./alpine --config-out alpine.json
  $ oci-rootfs unpack oci:./layout:latest ./rootfs && mksquashfs ./rootfs rootfs.sqfs

DIR must not exist or be empty. The tree is built in DIR.partial-* beside it and renamed
to DIR only when everything succeeded; on failure or Ctrl-C nothing is left.

As root, owners (numeric), every mode bit, mtimes, xattrs (file capabilities included),
device nodes and fifos are kept. As any other user (or with --rootless) the files are
yours, device nodes become empty files, security.* and trusted.* xattrs are left out, and
each entry's original owner is kept in the user.rootlesscontainers xattr, as umoci does.
Extended attributes, device nodes and fifos are made through python3.

Linux only: elsewhere use "oci-rootfs pull IMAGE -o rootfs.tar" (Windows: wsl --import).
`;

export function registerUnpackCommand(program: Command, io: CliIo): Command {
  const command = program
    .command('unpack')
    .description('pull an image and write its flattened root filesystem as a directory')
    .argument('<image>', IMAGE_ARGUMENT_HELP)
    .argument('<dir>', 'the directory to create (must not exist, or be empty)');
  return addTransferOptions(addRegistryOptions(command, 'the platform to pick from a multi-platform image (default: linux/<host arch>)'))
    .option('--rootless', 'unpack as an unprivileged user would, even as root (files owned by you, devices as empty files)')
    .option('--config-out <file>', 'also write the image config (JSON) to FILE, once the unpack succeeded')
    .addHelpText('after', EXAMPLES)
    .action(async (image: string, dir: string, options: UnpackCommandOptions) => {
      await runUnpack(image, dir, options, io);
    });
}

export async function runUnpack(reference: string, dir: string, options: UnpackCommandOptions, io: CliIo): Promise<void> {
  checkReportingOptions(options);
  // Loaded here so --help and usage errors do not pay for rxjs and the registry client.
  const { checkUnpackSupported, unpackRootfs } = await import('../index.js');
  checkUnpackSupported();
  await withRegistryOptions(options, io, async (registryOptions) => {
    const started = performance.now();
    const reporter = createReporter(options, io);
    const pullOptions = { ...registryOptions, ...transferOptions(options) };
    // The resolved image carries its config: --config-out needs no second request.
    let image: ResolvedImage | undefined;
    let bytesOut = 0;
    const onEvent = (event: PullEvent): void => {
      reporter.event(event);
      if (event.type === 'done') bytesOut = event.bytesOut;
      // Without a display the losses of a rootless unpack would go unsaid.
      if (event.type === 'warning' && reporter.mode === 'none' && options.quiet !== true) reportWarning(event.message, io.stderr);
    };
    try {
      await unpackRootfs(reference, {
        ...pullOptions,
        dir,
        ...(options.rootless === true ? { rootless: true } : {}),
        onEvent,
        onResolved: (resolved) => (image = resolved),
      });
      if (options.configOut !== undefined && image !== undefined) await writeText(options.configOut, prettyJson(image.config.bytes));
    } catch (error) {
      reporter.abandon();
      throw error;
    }
    reporter.finish({ bytesWritten: bytesOut, output: dir, format: 'tar', seconds: (performance.now() - started) / 1000 });
  });
}
