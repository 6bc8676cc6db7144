/**
 * Single gzip layer pass-through (DESIGN.md §8): an image of one gzip layer, pulled to a
 * gzip file, is written as the blob's own bytes while a check on the side (stored digest,
 * diffID, {@link PassthroughCheck}) decides whether the flattener would change anything.
 * If it would, or the bytes were damaged on the way, the caller starts the file over on the
 * normal path. Only for an output that can start over: never stdout.
 */
import { Transform, type Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { AbortError, ExitCode, OciRootfsError } from '../errors.js';
import type { LayerDescriptor } from '../image/types.js';
import type { LayerSourceOptions } from '../stores/layer-sources.js';
import type { ImageStore } from '../stores/store.js';
import { createByteMeter } from '../streams/byte-meter.js';
import { checkedLayer } from '../streams/checked-layer.js';
import { StrictGunzip } from '../streams/decompress.js';
import { verifyDigestStream } from '../streams/digest-verifier.js';
import { readTar } from '../streams/tar/reader.js';
import type { RestartableOutput } from './flatten-to.js';
import { PassthroughCheck } from './passthrough-check.js';

/**
 * A {@link RestartableOutput} that can also take the stored (compressed) bytes as they are:
 * a gzip file. `createAtomicFile()` behind the CLI's compressor is one.
 */
export interface PassthroughOutput extends RestartableOutput {
  /**
   * Like `open`, but the stream takes the final bytes as they are, with none of the stages
   * (a compressor) that `open` puts in front. Attempt numbers are shared with `open`.
   */
  openStored(attempt: number): Writable | Promise<Writable>;
}

export type PassthroughOutcome =
  | { passed: true; entries: number; tarBytes: number }
  /** The flattener would change something, or the content is malformed: flatten instead. */
  | { passed: false; reason: string }
  /**
   * The bytes did not match their digest (damaged on the way): try the pass-through once
   * more, as the normal path fetches a damaged layer once more, so that the output does not
   * depend on the network.
   */
  | { passed: false; damaged: unknown; reason: string };

/** The layer to pass through, when the image and the output allow it. */
export function passthroughLayer(
  layers: readonly LayerDescriptor[],
  output: Writable | RestartableOutput,
  options: { passthrough?: boolean; filter?: unknown; expandSparse?: boolean },
): LayerDescriptor | undefined {
  if (options.passthrough === false || options.filter !== undefined) return undefined;
  if (typeof (output as Partial<PassthroughOutput>).openStored !== 'function') return undefined;
  const [layer] = layers;
  if (layers.length !== 1 || layer === undefined || layer.compression !== 'gzip') return undefined;
  // Foreign layers and schema 1 (no diffID) take the normal path.
  if (layer.urls !== undefined || layer.diffId === undefined) return undefined;
  return layer;
}

/**
 * Writes `layer`'s stored bytes to attempt `attempt` (default 0) of `output` while checking
 * them. Resolves `passed` once the bytes are complete and verified (the stream ended), or
 * `passed: false` with the reason when the flattener would change something, the content
 * is malformed, or (`damaged`) the bytes did not match their digest; the stream of that
 * attempt is then destroyed and the caller goes on with the next. Fails for what the normal
 * path could not do better (network, auth, abort).
 */
export async function passThrough(
  store: ImageStore,
  layer: LayerDescriptor,
  output: PassthroughOutput,
  options: { signal: AbortSignal; counters: LayerSourceOptions; attempt?: number },
): Promise<PassthroughOutcome> {
  const { signal, counters } = options;
  const attempt = options.attempt ?? 0;
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(signal.reason);
  if (signal.aborted) throw new AbortError({ cause: signal.reason });
  signal.addEventListener('abort', onAbort, { once: true });
  let sink: Writable | undefined;
  try {
    sink = await output.openStored(attempt);
    const file = sink;
    let fileError: Error | undefined;
    file.on('error', (error) => {
      fileError ??= error;
      controller.abort(error);
    });
    const stored = await store.openLayer(layer, 0, controller.signal, { onResume: (offset) => counters.onResume?.(0, offset) });
    // The file takes each stored chunk before the digest stage sees it; nothing is kept
    // unless the whole stream passes.
    const tee = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        if (file.write(chunk)) callback(null, chunk);
        else file.once('drain', () => callback(null, chunk));
      },
    });
    const what = `layer 0 (${layer.digest})`;
    let last = 0;
    const meter = createByteMeter({
      onProgress: (bytes) => {
        counters.onBytes?.(0, bytes - last);
        last = bytes;
        counters.onProgress?.(0, bytes, layer.size);
      },
    });
    const gunzip = new StrictGunzip();
    const checked = checkedLayer({
      raw: stored.body,
      stored: [
        tee,
        meter,
        verifyDigestStream({
          digest: layer.digest,
          size: layer.size,
          what,
          ...(stored.hashed === undefined ? {} : { upstream: stored.hashed }),
        }),
      ],
      verifies: true,
      inflate: gunzip,
      ...(layer.diffId === undefined ? {} : { diffId: verifyDigestStream({ digest: layer.diffId, what: `${what} uncompressed, diffID` }) }),
      signal: controller.signal,
      ...(counters.checkTimeoutMs === undefined ? {} : { checkTimeoutMs: counters.checkTimeoutMs }),
    });
    const check = new PassthroughCheck();
    let tarBytes = 0;
    async function* counted(): AsyncGenerator<Buffer> {
      for await (const chunk of checked.tar as AsyncIterable<Buffer>) {
        tarBytes += chunk.length;
        yield chunk;
      }
    }
    try {
      const entries = readTar(counted(), {
        signal: controller.signal,
        onWarning: (warning) => check.warning(warning),
        onHeader: (flag, payload) => check.header(flag, payload),
      });
      for await (const entry of entries) {
        if (!check.entry(entry.header)) break;
      }
    } catch (error) {
      // The file failed (disk full): that, not the abort it caused, is the story.
      if (fileError !== undefined) throw fileError;
      const reported = await checked.explain(error);
      const message = reported instanceof Error ? reported.message : String(reported);
      if (signal.aborted || reported instanceof AbortError) throw reported;
      if (reported instanceof OciRootfsError && reported.exitCode === ExitCode.integrity) {
        return { passed: false, damaged: reported, reason: message };
      }
      // Malformed content: the normal path reads it with the same reader and says so.
      if (reported instanceof OciRootfsError && reported.exitCode !== ExitCode.unsafe) throw reported;
      return { passed: false, reason: `pass-through failed: ${message}` };
    }
    if (check.reason === undefined && gunzip.padded) check.reason = 'bytes after the last gzip member';
    if (check.reason !== undefined) return { passed: false, reason: `pass-through not possible: ${check.reason}` };
    file.end();
    await finished(file);
    sink = undefined;
    return { passed: true, entries: check.entries, tarBytes };
  } finally {
    signal.removeEventListener('abort', onAbort);
    controller.abort();
    // Not passed: what attempt 0 wrote is dropped by the next open().
    if (sink !== undefined && !sink.destroyed) sink.destroy();
  }
}

