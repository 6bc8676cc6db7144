/**
 * `oci-rootfs inspect <image>` and `oci-rootfs config <image>`: what an image is made of
 * and how it wants to be started, without downloading a layer. Text for people, `--json`
 * for scripts, `--raw` for the exact bytes the registry served.
 */
import type { Command } from 'commander';
import { ManifestError, UsageError } from '../errors.js';
import type { InspectResult, Platform } from '../index.js';
import { formatBytes } from './progress/format.js';
import { prettyJson } from './pull-outputs.js';
import { addRegistryOptions, withRegistryOptions, type RegistryCommandOptions } from './registry-options.js';
import { IMAGE_ARGUMENT_HELP, writeOut, type CliIo } from './shared.js';

interface InspectCommandOptions extends RegistryCommandOptions {
  json?: boolean;
  raw?: boolean;
}

const INSPECT_EXAMPLES = `
Examples:
  $ oci-rootfs inspect alpine:3.20
  $ oci-rootfs inspect --platform linux/arm64 debian:bookworm
  $ oci-rootfs inspect --json alpine | jq -r '.layers[].digest'
  $ oci-rootfs inspect --raw alpine | jq '.manifests[].platform'
  $ oci-rootfs inspect oci:./alpine-oci:latest
  $ oci-rootfs inspect docker-archive:saved.tar

--raw prints the manifest as the registry served it: the index (or manifest list) when the
tag names one, unless --platform picks a manifest from it.
`;

const CONFIG_EXAMPLES = `
Examples:
  $ oci-rootfs config alpine:3.20
  $ oci-rootfs config debian:bookworm | jq -r '.config.Cmd | join(" ")'
  $ oci-rootfs config --raw alpine | sha256sum      # the config digest
`;

export function registerInspectCommand(program: Command, io: CliIo): Command {
  const command = program
    .command('inspect')
    .description("show an image's platforms, layers and config without downloading a layer")
    .argument('<image>', IMAGE_ARGUMENT_HELP);
  addRegistryOptions(command, 'the platform to show from a multi-platform image (default: linux/<host arch>)')
    .option('--json', 'print everything as one JSON object')
    .option('--raw', 'print the manifest bytes as served (the index, when the tag names one and no --platform is given)')
    .addHelpText('after', INSPECT_EXAMPLES)
    .action(async (image: string, options: InspectCommandOptions) => {
      if (options.json === true && options.raw === true) throw new UsageError('--json and --raw cannot be used together');
      await withRegistryOptions(options, io, async (registryOptions) => {
        const { inspectImage, readManifest } = await import('../queries/inspect.js');
        if (options.raw === true && options.platform === undefined) {
          // The bytes the source names, whatever they are: no platform pick, no config read.
          await writeOut(io, (await readManifest(image, registryOptions)).bytes);
          return;
        }
        const result = await inspectImage(image, registryOptions);
        if (options.raw === true) await writeOut(io, result.manifest.bytes);
        else if (options.json === true) await writeOut(io, `${JSON.stringify(inspectJson(result), null, 2)}\n`);
        else await writeOut(io, inspectText(result));
      });
    });
  return command;
}

interface ConfigCommandOptions extends RegistryCommandOptions {
  raw?: boolean;
}

export function registerConfigCommand(program: Command, io: CliIo): Command {
  const command = program
    .command('config')
    .description('print the image config (Env, Cmd, Entrypoint, User, WorkingDir, Labels, ...) as JSON')
    .argument('<image>', IMAGE_ARGUMENT_HELP);
  addRegistryOptions(command, 'the platform whose config to print (default: linux/<host arch>)')
    .option('--raw', 'print the config blob exactly as stored (its sha256 is the config digest)')
    .addHelpText('after', CONFIG_EXAMPLES)
    .action(async (image: string, options: ConfigCommandOptions) => {
      await withRegistryOptions(options, io, async (registryOptions) => {
        const { inspectImage } = await import('../queries/inspect.js');
        const { config } = await inspectImage(image, registryOptions);
        if (config.json === undefined) {
          throw new ManifestError(`${image} is not a container image (config media type ${config.mediaType})`);
        }
        await writeOut(io, options.raw === true ? config.bytes : prettyJson(config.bytes));
      });
    });
  return command;
}

/** The JSON of `inspect --json`: the result without byte buffers, plus the config fields people start with. */
export function inspectJson(result: InspectResult): Record<string, unknown> {
  const { index, manifest, config } = result;
  return {
    reference: result.reference,
    ...(index === undefined
      ? {}
      : {
          index: {
            digest: index.digest,
            mediaType: index.mediaType,
            size: index.size,
            manifests: index.manifests,
          },
        }),
    manifest: { digest: manifest.digest, mediaType: manifest.mediaType, size: manifest.size },
    platform: result.platform ?? null,
    config: { digest: config.digest, mediaType: config.mediaType, size: config.size },
    layers: result.layers,
    // The whole `config` object of the image config (Env, Cmd, ... and whatever else it has).
    imageConfig: config.json?.config ?? null,
    created: config.json?.['created'] ?? null,
  };
}

const LABEL_WIDTH = 12;
const field = (label: string, value: string): string => `${label.padEnd(LABEL_WIDTH)}${value}\n`;

/** `inspect` for people: one field per line, lists indented under their heading. */
export function inspectText(result: InspectResult): string {
  const { index, manifest, config } = result;
  let out = field('Reference', result.reference);
  if (index !== undefined) {
    out += field('Index', `${index.digest}  ${index.mediaType}, ${index.manifests.length} entries`);
    const width = Math.max(...index.manifests.map((entry) => platformText(entry.platform).length), 8);
    for (const entry of index.manifests) {
      const selected = !entry.notAnImage && entry.digest === manifest.digest ? '  (selected)' : '';
      const note = entry.notAnImage ? '  not an image (attestation)' : '';
      out += `  ${platformText(entry.platform).padEnd(width)}  ${entry.digest}  ${formatBytes(entry.size)}${selected}${note}\n`;
    }
  }
  out += field('Manifest', `${manifest.digest}  ${manifest.mediaType}, ${formatBytes(manifest.size)}`);
  out += field('Platform', result.platform === undefined ? '(unknown)' : platformText(result.platform));
  out += field('Config', `${config.digest}  ${config.mediaType}, ${formatBytes(config.size)}`);
  const total = result.layers.reduce((sum, layer) => sum + layer.size, 0);
  out += field('Layers', `${result.layers.length}, ${formatBytes(total)} compressed (base first)`);
  const number = String(result.layers.length).length;
  result.layers.forEach((layer, i) => {
    const foreign = layer.urls === undefined ? '' : `  foreign: ${layer.urls.join(', ')}`;
    out += `  ${String(i + 1).padStart(number)}  ${layer.digest}  ${layer.mediaType}  ${formatBytes(layer.size)}${foreign}\n`;
  });
  const json = config.json;
  if (json === undefined) return `${out}${field('', `(not a container image config; nothing to run)`)}`;
  const run = json.config ?? {};
  out += list('Env', run.Env ?? []);
  out += field('Entrypoint', command(run.Entrypoint));
  out += field('Cmd', command(run.Cmd));
  out += field('User', run.User === undefined || run.User === '' ? '(not set: root)' : run.User);
  out += field('WorkingDir', run.WorkingDir === undefined || run.WorkingDir === '' ? '(not set: /)' : run.WorkingDir);
  out += list('Labels', Object.entries(run.Labels ?? {}).map(([key, value]) => `${key}=${value}`));
  if (run.ExposedPorts !== undefined && run.ExposedPorts !== null) out += field('Ports', Object.keys(run.ExposedPorts).join(' ') || '(none)');
  return out;
}

/** Exec form, as JSON: the only spelling that shows where each argument starts and ends. */
function command(value: string[] | null | undefined): string {
  return value === undefined || value === null || value.length === 0 ? '(not set)' : JSON.stringify(value);
}

function list(label: string, items: readonly string[]): string {
  if (items.length === 0) return field(label, '(none)');
  return `${label}\n${items.map((item) => `  ${item}\n`).join('')}`;
}

function platformText(platform: Platform | undefined): string {
  if (platform === undefined) return '(no platform)';
  return [platform.os, platform.architecture, platform.variant].filter((part) => part !== undefined).join('/');
}
