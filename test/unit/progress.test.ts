/**
 * The progress display without a terminal: numbers, frames, plain lines and the summary as
 * pure functions of the events, and the redraw sequences the terminal display writes.
 */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { PullEvent, ResolvedEvent } from '../../src/pull/events.js';
import {
  colorAllowed,
  createProgressReporter,
  effectiveMode,
  type ProgressStream,
} from '../../src/cli/progress/display.js';
import { formatBytes, formatDuration, formatRate, shortDigest } from '../../src/cli/progress/format.js';
import { plainLine, renderFrame, summaryLine } from '../../src/cli/progress/render.js';
import { PullProgress } from '../../src/cli/progress/state.js';

const digest = (n: number): string => `sha256:${String(n).repeat(64).slice(0, 64)}`;

function resolved(sizes: number[]): ResolvedEvent {
  return {
    type: 'resolved',
    reference: 'registry.test/app:1',
    manifestDigest: digest(9),
    manifestMediaType: 'application/vnd.oci.image.manifest.v1+json',
    platform: { os: 'linux', architecture: 'amd64' },
    configDigest: digest(8),
    layers: sizes.map((size, index) => ({ index, digest: digest(index + 1), size, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' })),
  };
}

/** A clock the test moves by hand. */
function clock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1_000;
  return { now: () => t, advance: (ms) => (t += ms) };
}

const strip = (text: string): string => text.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');

describe('formatting numbers for a progress line', () => {
  it('shows bytes with decimal units and three significant digits', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(999)).toBe('999 B');
    expect(formatBytes(1_234)).toBe('1.23 kB');
    expect(formatBytes(45_600_000)).toBe('45.6 MB');
    expect(formatBytes(210_000_000)).toBe('210 MB');
    expect(formatBytes(1_500_000_000)).toBe('1.50 GB');
  });

  it('shows rates, durations and short digests', () => {
    expect(formatRate(undefined)).toBe('-');
    expect(formatRate(12_300_000)).toBe('12.3 MB/s');
    expect(formatDuration(0.42)).toBe('0.4s');
    expect(formatDuration(42.4)).toBe('42s');
    expect(formatDuration(185)).toBe('3m05s');
    expect(formatDuration(3_725)).toBe('1h02m');
    expect(shortDigest(digest(1))).toBe('sha256:111111111111');
  });
});

describe('the progress state', () => {
  it('counts bytes per layer, the total rate and the ETA from progress events', () => {
    const time = clock();
    const progress = new PullProgress(time.now);
    progress.apply(resolved([10_000_000, 30_000_000]));
    progress.apply({ type: 'layer-start', index: 1, digest: digest(2), size: 30_000_000 });
    time.advance(1_000);
    progress.apply({ type: 'progress', index: 1, bytes: 10_000_000, total: 30_000_000 });
    time.advance(1_000);
    progress.apply({ type: 'progress', index: 1, bytes: 20_000_000, total: 30_000_000 });
    expect(progress.doneBytes()).toBe(20_000_000);
    expect(progress.totalBytes()).toBe(40_000_000);
    expect(progress.rate()).toBeCloseTo(10_000_000, -3);
    expect(progress.eta()).toBeCloseTo(2, 1);
    const layer = progress.layers[1];
    expect(layer?.state).toBe('active');
    expect(progress.layerRate(layer!)).toBeCloseTo(10_000_000, -3);
    expect(progress.layerEta(layer!)).toBeCloseTo(1, 1);
  });

  it('counts the bytes of a second pass over a layer in the rate but not twice in the total', () => {
    const progress = new PullProgress(clock().now);
    progress.apply(resolved([1_000]));
    progress.apply({ type: 'progress', index: 0, bytes: 1_000, total: 1_000 });
    progress.apply({ type: 'progress', index: 0, bytes: 400, total: 1_000 });
    expect(progress.received).toBe(1_400);
    expect(progress.doneBytes()).toBe(400);
    progress.apply({ type: 'layer-done', index: 0, bytesIn: 2_000, bytesOut: 5_120, entriesWritten: 3, entriesSkipped: 1 });
    expect(progress.doneBytes()).toBe(1_000);
  });

  it('shows a falling rate while nothing arrives', () => {
    const time = clock();
    const progress = new PullProgress(time.now);
    progress.apply(resolved([100_000_000]));
    time.advance(1_000);
    progress.apply({ type: 'progress', index: 0, bytes: 10_000_000, total: 100_000_000 });
    const before = progress.rate() ?? 0;
    time.advance(2_000);
    expect(progress.rate() ?? 0).toBeLessThan(before);
  });
});

describe('a terminal frame', () => {
  it('has a header, one line per layer (base first) and a total line', () => {
    const time = clock();
    const progress = new PullProgress(time.now);
    progress.apply(resolved([5_000_000, 7_000_000, 9_000_000]));
    progress.apply({ type: 'layer-start', index: 2, digest: digest(3), size: 9_000_000 });
    progress.apply({ type: 'layer-done', index: 2, bytesIn: 9_000_000, bytesOut: 20_000_000, entriesWritten: 12, entriesSkipped: 0 });
    progress.apply({ type: 'layer-start', index: 1, digest: digest(2), size: 7_000_000 });
    time.advance(1_000);
    progress.apply({ type: 'progress', index: 1, bytes: 3_500_000, total: 7_000_000 });
    const lines = renderFrame(progress, { columns: 200, rows: 40, color: false });
    expect(lines).toHaveLength(5);
    expect(lines[0]).toBe('Pulling registry.test/app:1 (linux/amd64) sha256:999999999999');
    expect(lines[1]).toMatch(/^ {2}1\/3 sha256:111111111111 {2}waiting {2}5\.00 MB$/);
    expect(lines[2]).toMatch(/^ {2}2\/3 sha256:222222222222 {2}\[={10}> {9}\] {2}50% {2}3\.50 MB \/ 7\.00 MB {2}\S+ MB\/s {2}ETA /);
    expect(lines[3]).toMatch(/^ {2}3\/3 sha256:333333333333 {2}done {5}9\.00 MB {2}12 entries$/);
    expect(lines[4]).toMatch(/^total +\[.*\] {2}59% {2}12\.5 MB \/ 21\.0 MB {2}.* {2}elapsed 1\.0s$/);
  });

  it('cuts every line to the terminal width, colour codes not counted', () => {
    const progress = new PullProgress(clock().now);
    progress.apply(resolved([5_000_000, 7_000_000]));
    progress.apply({ type: 'progress', index: 1, bytes: 1_000, total: 7_000_000 });
    for (const color of [false, true]) {
      const lines = renderFrame(progress, { columns: 40, rows: 40, color });
      for (const line of lines) expect(strip(line).length).toBeLessThanOrEqual(39);
      expect(lines.some((line) => line.includes('\x1b['))).toBe(color);
    }
  });

  it('sums up the layers that do not fit the terminal height in one line', () => {
    const progress = new PullProgress(clock().now);
    progress.apply(resolved(Array.from({ length: 30 }, () => 1_000)));
    for (let i = 29; i >= 10; i--) progress.apply({ type: 'layer-done', index: i, bytesIn: 0, bytesOut: 0, entriesWritten: 1, entriesSkipped: 0 });
    progress.apply({ type: 'layer-start', index: 9, digest: digest(1), size: 1_000 });
    const lines = renderFrame(progress, { columns: 120, rows: 10, color: false });
    expect(lines.length).toBeLessThanOrEqual(10);
    expect(lines.some((line) => line.includes('10/30') && line.includes('['))).toBe(true);
    expect(lines.some((line) => /… \d+ more layers \(\d+ done, \d+ waiting\)/.test(line))).toBe(true);
  });
});

describe('plain lines and the summary', () => {
  it('prints one line per layer event and none for progress and done', () => {
    const progress = new PullProgress(clock().now);
    const events: PullEvent[] = [
      resolved([2_000, 3_000]),
      { type: 'layer-start', index: 1, digest: digest(2), size: 3_000 },
      { type: 'progress', index: 1, bytes: 100, total: 3_000 },
      { type: 'layer-done', index: 1, bytesIn: 3_000, bytesOut: 10_240, entriesWritten: 1, entriesSkipped: 2 },
      { type: 'retry', what: 'blob x', attempt: 2, reason: 'ECONNRESET', delayMs: 1_500 },
      { type: 'done', manifestDigest: digest(9), bytesIn: 5_000, bytesOut: 20_480, entries: 3, seconds: 1, path: 'flatten' },
    ];
    const lines = events.map((event) => {
      progress.apply(event);
      return plainLine(event, progress);
    });
    expect(lines).toEqual([
      `resolved registry.test/app:1 to ${digest(9)} (linux/amd64): 2 layers, 5.00 kB`,
      'layer 2/2 sha256:222222222222 (3.00 kB): started',
      undefined,
      'layer 2/2 sha256:222222222222 (3.00 kB): done, 1 entry written, 2 skipped',
      'retrying blob x (attempt 2) in 1.5s: ECONNRESET',
      undefined,
    ]);
    expect(summaryLine(progress, { bytesWritten: 4_000, output: 'app.tar.gz', format: 'gzip', seconds: 2.5 })).toBe(
      `pulled registry.test/app:1@${digest(9)} (linux/amd64): 2 layers, 5.00 kB in, 4.00 kB out (gzip of 20.5 kB tar) to app.tar.gz in 2.5s`,
    );
  });
});

describe('choosing and running a reporter', () => {
  const terminal = (): ProgressStream & { text: () => string } => {
    const stream = Object.assign(new PassThrough(), { isTTY: true, columns: 100, rows: 30 });
    let text = '';
    stream.on('data', (chunk: Buffer) => (text += chunk.toString()));
    return Object.assign(stream, { text: () => text });
  };

  it('is a display on a terminal, plain on a dumb one, and nothing elsewhere unless asked', () => {
    const tty = Object.assign(new PassThrough(), { isTTY: true });
    const pipe = new PassThrough();
    expect(effectiveMode('auto', tty, {})).toBe('tty');
    expect(effectiveMode('auto', tty, { TERM: 'dumb' })).toBe('plain');
    expect(effectiveMode('auto', pipe, {})).toBe('none');
    expect(effectiveMode('json', pipe, {})).toBe('json');
    expect(colorAllowed({})).toBe(true);
    expect(colorAllowed({ NO_COLOR: '1' })).toBe(false);
    expect(colorAllowed({ NO_COLOR: '' })).toBe(true);
  });

  it('redraws the frame in place with cursor moves and ends with the summary', () => {
    const stream = terminal();
    const reporter = createProgressReporter({ mode: 'auto', stream, env: { NO_COLOR: '1' } });
    expect(reporter.mode).toBe('tty');
    reporter.event(resolved([1_000, 2_000]));
    reporter.event({ type: 'layer-start', index: 1, digest: digest(2), size: 2_000 });
    reporter.event({ type: 'layer-done', index: 1, bytesIn: 2_000, bytesOut: 4_096, entriesWritten: 2, entriesSkipped: 0 });
    reporter.event({ type: 'warning', code: 'W', message: 'something odd' });
    reporter.event({ type: 'layer-done', index: 0, bytesIn: 3_000, bytesOut: 8_192, entriesWritten: 1, entriesSkipped: 0 });
    reporter.event({ type: 'done', manifestDigest: digest(9), bytesIn: 3_000, bytesOut: 8_192, entries: 3, seconds: 1, path: 'flatten' });
    reporter.finish({ bytesWritten: 8_192, output: 'out.tar', format: 'tar', seconds: 1 });
    const text = stream.text();
    // Four lines per frame (header, two layers, total): each redraw goes up four lines.
    expect(text).toContain('\x1b[4A\r');
    expect(text).toContain('\x1b[2K');
    expect(text).not.toMatch(/\x1b\[[0-9;]*m/); // NO_COLOR
    expect(text).toContain('warning: something odd\n');
    expect(text.endsWith(`pulled registry.test/app:1@${digest(9)} (linux/amd64): 2 layers, 3.00 kB in, 8.19 kB out to out.tar in 1.0s\n`)).toBe(true);
  });

  it('uses colour on a terminal unless NO_COLOR is set', () => {
    const stream = terminal();
    const reporter = createProgressReporter({ mode: 'tty', stream, env: {} });
    reporter.event(resolved([1_000]));
    reporter.abandon();
    expect(stream.text()).toMatch(/\x1b\[1m/);
  });

  it('writes every event as one JSON line in json mode, and nothing in none or quiet', () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (chunk: Buffer) => (text += chunk.toString()));
    const events: PullEvent[] = [resolved([1]), { type: 'progress', index: 0, bytes: 1, total: 1 }];
    const json = createProgressReporter({ mode: 'json', stream: out, env: {} });
    for (const event of events) json.event(event);
    json.finish({ bytesWritten: 1, output: undefined, format: 'tar', seconds: 0 });
    expect(text.trimEnd().split('\n').map((line) => JSON.parse(line) as unknown)).toEqual(events);
    text = '';
    for (const reporter of [
      createProgressReporter({ mode: 'none', stream: out, env: {} }),
      createProgressReporter({ mode: 'plain', quiet: true, stream: out, env: {} }),
    ]) {
      for (const event of events) reporter.event(event);
      reporter.finish({ bytesWritten: 1, output: undefined, format: 'tar', seconds: 0 });
    }
    expect(text).toBe('');
  });
});
