/**
 * What each progress mode prints, as pure functions of the state: the frame a terminal
 * redraws (`renderFrame`), the line `--progress plain` prints per event (`plainLine`), and
 * the summary after a pull (`summaryLine`). Writing and redrawing live in `display.ts`.
 */
import type { PullEvent } from '../../index.js';
import { formatBytes, formatDuration, formatRate, shortDigest } from './format.js';
import type { LayerProgress, PullProgress } from './state.js';

export interface FrameOptions {
  /** Terminal width: every line is cut to fit, because a wrapped line breaks the redraw. */
  columns: number;
  /** Terminal height: with more layers than fit, finished and waiting ones are summed up. */
  rows: number;
  color: boolean;
}

type Style = 'dim' | 'bold' | 'green' | 'cyan' | 'yellow';
type Segment = string | { text: string; style: Style };

const SGR: Readonly<Record<Style, string>> = {
  dim: '\x1b[2m',
  bold: '\x1b[1m',
  green: '\x1b[32m',
  cyan: '\x1b[36m',
  yellow: '\x1b[33m',
};
const RESET = '\x1b[0m';

const BAR_WIDTH = 20;

/**
 * The lines of one frame: a header, one line per layer (base first, as the manifest lists
 * them), and the total. Lines never hold a newline and never exceed `columns - 1`
 * characters (the last column would wrap on some terminals).
 */
export function renderFrame(progress: PullProgress, options: FrameOptions): string[] {
  const lines: Segment[][] = [];
  const resolved = progress.resolved;
  if (resolved === undefined) {
    lines.push([`Resolving… `, { text: formatDuration(progress.elapsedMs() / 1000), style: 'dim' }]);
    return lines.map((line) => fit(line, options));
  }
  lines.push([
    'Pulling ',
    { text: resolved.reference, style: 'bold' },
    ` (${platformText(resolved.platform)}) `,
    { text: shortDigest(resolved.manifestDigest), style: 'dim' },
  ]);
  const count = progress.layers.length;
  const room = Math.max(1, options.rows - 3);
  const shown = visibleLayers(progress.layers, room);
  const hidden = progress.layers.filter((layer) => !shown.includes(layer));
  for (const layer of shown) lines.push(layerLine(progress, layer, count));
  if (hidden.length > 0) {
    const done = hidden.filter((layer) => layer.state === 'done').length;
    lines.push([{ text: `  … ${hidden.length} more layers (${done} done, ${hidden.length - done} waiting)`, style: 'dim' }]);
  }
  lines.push(totalLine(progress));
  return lines.map((line) => fit(line, options));
}

/** The layers that fit in `room` lines: every active one, then the next waiting, then the last done. */
function visibleLayers(layers: readonly LayerProgress[], room: number): LayerProgress[] {
  if (layers.length <= room) return [...layers];
  const budget = Math.max(1, room - 1); // one line says what was left out
  const picked = new Set<LayerProgress>();
  const take = (candidates: readonly LayerProgress[]): void => {
    for (const layer of candidates) if (picked.size < budget) picked.add(layer);
  };
  take(layers.filter((layer) => layer.state === 'active'));
  take(layers.filter((layer) => layer.state === 'waiting').reverse()); // the flattener reads top-down
  take(layers.filter((layer) => layer.state === 'done'));
  return layers.filter((layer) => picked.has(layer));
}

function layerLine(progress: PullProgress, layer: LayerProgress, count: number): Segment[] {
  const number = `${String(layer.index + 1).padStart(String(count).length)}/${count}`;
  const head: Segment[] = ['  ', number, ' ', { text: shortDigest(layer.digest), style: 'dim' }, '  '];
  switch (layer.state) {
    case 'waiting':
      return [...head, { text: 'waiting', style: 'dim' }, `  ${formatBytes(layer.size)}`];
    case 'done': {
      const entries = layer.entriesWritten === undefined ? '' : `  ${plural(layer.entriesWritten, 'entry', 'entries')}`;
      return [...head, { text: 'done', style: 'green' }, `     ${formatBytes(layer.size)}${entries}`];
    }
    case 'active': {
      const eta = progress.layerEta(layer);
      return [
        ...head,
        { text: bar(layer.bytes, layer.size), style: 'cyan' },
        ` ${percent(layer.bytes, layer.size)}  ${formatBytes(layer.bytes)} / ${formatBytes(layer.size)}`,
        `  ${formatRate(progress.layerRate(layer))}`,
        eta === undefined ? '' : `  ETA ${formatDuration(eta)}`,
      ];
    }
  }
}

function totalLine(progress: PullProgress): Segment[] {
  const total = progress.totalBytes();
  const done = progress.doneBytes();
  const finished = progress.layers.every((layer) => layer.state === 'done');
  const eta = progress.eta();
  return [
    { text: 'total', style: 'bold' },
    `${' '.repeat(Math.max(1, shortDigest('sha256:').length + 6 - 'total'.length))}`,
    { text: bar(done, total), style: finished ? 'green' : 'cyan' },
    ` ${percent(done, total)}  ${formatBytes(done)} / ${formatBytes(total)}  ${formatRate(progress.rate())}`,
    finished || eta === undefined ? '' : `  ETA ${formatDuration(eta)}`,
    `  elapsed ${formatDuration(progress.elapsedMs() / 1000)}`,
  ];
}

function bar(done: number, total: number): string {
  const fraction = total <= 0 ? 1 : Math.min(1, done / total);
  const filled = Math.floor(fraction * BAR_WIDTH);
  const head = filled < BAR_WIDTH && fraction > 0 ? '>' : '';
  return `[${'='.repeat(filled)}${head}${' '.repeat(BAR_WIDTH - filled - head.length)}]`;
}

function percent(done: number, total: number): string {
  const value = total <= 0 ? 100 : Math.min(100, Math.floor((done * 100) / total));
  return `${String(value).padStart(3)}%`;
}

/** Joins segments, cut to the width; styles only when colour is on, and never cut mid-escape. */
function fit(segments: readonly Segment[], options: FrameOptions): string {
  let room = Math.max(1, options.columns - 1);
  let out = '';
  for (const segment of segments) {
    if (room <= 0) break;
    const text = typeof segment === 'string' ? segment : segment.text;
    const cut = text.length > room ? text.slice(0, room) : text;
    room -= cut.length;
    out += typeof segment === 'string' || !options.color || cut === '' ? cut : `${SGR[segment.style]}${cut}${RESET}`;
  }
  return out;
}

function platformText(platform: { os: string; architecture: string; variant?: string }): string {
  return [platform.os, platform.architecture, platform.variant].filter((part) => part !== undefined).join('/');
}

/**
 * The line `--progress plain` prints for an event, or undefined for the events it leaves
 * out (`progress` is what the terminal display is for; `done` is the summary's).
 */
export function plainLine(event: PullEvent, progress: PullProgress): string | undefined {
  const count = progress.layers.length;
  const layerName = (index: number): string => {
    const layer = progress.layers[index];
    return `layer ${index + 1}/${count}${layer === undefined ? '' : ` ${shortDigest(layer.digest)} (${formatBytes(layer.size)})`}`;
  };
  switch (event.type) {
    case 'resolved': {
      const total = event.layers.reduce((sum, layer) => sum + layer.size, 0);
      const index = event.indexDigest === undefined ? '' : ` from index ${event.indexDigest}`;
      return `resolved ${event.reference} to ${event.manifestDigest}${index} (${platformText(event.platform)}): ${plural(event.layers.length, 'layer')}, ${formatBytes(total)}`;
    }
    case 'layer-start':
      return `${layerName(event.index)}: started`;
    case 'layer-done':
      return `${layerName(event.index)}: done, ${plural(event.entriesWritten, 'entry', 'entries')} written, ${event.entriesSkipped} skipped`;
    case 'retry':
      return `retrying ${event.what} (attempt ${event.attempt}) in ${formatDuration(event.delayMs / 1000)}: ${event.reason}`;
    case 'resume':
      return `${layerName(event.index)}: resuming at byte ${event.offset}`;
    case 'rate-limit': {
      const parts = [
        event.limit === undefined ? undefined : `limit ${event.limit}`,
        event.remaining === undefined ? undefined : `remaining ${event.remaining}`,
        event.retryAfterSeconds === undefined ? undefined : `retry after ${event.retryAfterSeconds}s`,
      ].filter((part): part is string => part !== undefined);
      return `rate limited by the registry${parts.length === 0 ? '' : ` (${parts.join(', ')})`}`;
    }
    case 'warning':
      return `warning: ${event.message}`;
    case 'progress':
    case 'done':
      return undefined;
  }
}

/** What the summary line reports besides the events. */
export interface SummaryFacts {
  /** Bytes written to the file or stdout (compressed when the output is). */
  bytesWritten: number;
  /** `-o` as given, or undefined for stdout. */
  output: string | undefined;
  format: string;
  seconds: number;
}

/**
 * One line after a successful pull: the image digest and platform, layers, bytes in
 * (compressed layers received), bytes out (the tar, and what was written when compressed),
 * where it went and how long it took.
 */
export function summaryLine(progress: PullProgress, facts: SummaryFacts): string {
  const resolved = progress.resolved;
  const done = progress.done;
  const digest = resolved?.manifestDigest ?? done?.manifestDigest ?? 'unknown digest';
  const platform = resolved === undefined ? '' : ` (${platformText(resolved.platform)})`;
  const layers = resolved === undefined ? '' : `${plural(resolved.layers.length, 'layer')}, `;
  const bytesIn = formatBytes(done?.bytesIn ?? progress.received);
  const tarBytes = done?.bytesOut;
  const out =
    facts.format === 'tar' || tarBytes === undefined
      ? `${formatBytes(facts.bytesWritten)} out`
      : `${formatBytes(facts.bytesWritten)} out (${facts.format} of ${formatBytes(tarBytes)} tar)`;
  const where = facts.output === undefined ? 'stdout' : facts.output;
  return `pulled ${resolved?.reference ?? 'image'}@${digest}${platform}: ${layers}${bytesIn} in, ${out} to ${where} in ${formatDuration(facts.seconds)}`;
}

/** `1 layer`, `3 layers`. */
export function plural(count: number, one: string, many = `${one}s`): string {
  return `${count} ${count === 1 ? one : many}`;
}
