/**
 * `oci-rootfs exists <image>`: exit 0 when the image (and with --platform, that platform)
 * exists, 3 when it does not, and the status of whatever stopped the check otherwise (4
 * auth, 5 rate limited, 6 network...), so `if oci-rootfs exists ...` never mistakes "could
 * not ask" for "absent". No layer is downloaded; without --platform it is a HEAD.
 */
import type { Command } from 'commander';
import { ExitCode } from '../errors.js';
import { QuietFailure } from './errors.js';
import { addRegistryOptions, withRegistryOptions, type RegistryCommandOptions } from './registry-options.js';
import { IMAGE_ARGUMENT_HELP, writeOut, type CliIo } from './shared.js';

interface ExistsCommandOptions extends RegistryCommandOptions {
  quiet?: boolean;
}

const EXAMPLES = `
Examples:
  $ oci-rootfs exists alpine:3.20 && echo yes
  $ oci-rootfs exists --platform linux/riscv64 debian:bookworm || echo "no riscv64 build"
  $ digest=$(oci-rootfs exists ghcr.io/me/app:1.0)
  $ oci-rootfs exists oci:./layout:v2 || echo "not in the layout"

Prints the digest the reference points at (the index digest for a multi-platform tag).
Exit status: 0 exists, 3 no such image, tag or platform, else the status of the failure
(2 bad reference, 4 authentication, 5 rate limited, 6 network).
`;

export function registerExistsCommand(program: Command, io: CliIo): Command {
  const command = program
    .command('exists')
    .description('check that an image (and a platform of it) exists, without downloading it')
    .argument('<image>', IMAGE_ARGUMENT_HELP);
  addRegistryOptions(command, 'also require this platform (reads the index: a GET rather than a HEAD)')
    .option('-q, --quiet', 'print nothing; the exit status says it all')
    .addHelpText('after', EXAMPLES)
    .action(async (image: string, options: ExistsCommandOptions) => {
      await withRegistryOptions(options, io, async (registryOptions) => {
        // The query alone, not the API barrel (flattener, streams, compressors): `exists` spends
        // its time on the network.
        const { imageExists } = await import('../queries/inspect.js');
        const found = await imageExists(image, registryOptions);
        if (found === undefined) {
          if (options.quiet !== true) {
            const what = options.platform === undefined ? '' : ` for ${options.platform}`;
            io.stderr.write(`oci-rootfs: ${image}: no such image${what}\n`);
          }
          throw new QuietFailure(ExitCode.notFound);
        }
        if (options.quiet !== true) await writeOut(io, `${found.digest}\n`);
      });
    });
  return command;
}
