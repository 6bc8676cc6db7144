/**
 * The progress reporters of `oci-rootfs pull`, one per `--progress` mode, behind one
 * interface: the pull hands every `PullEvent` to `event()`, says `finish()` when the
 * output is complete (or `abandon()` on failure), and the reporter owns stderr until then.
 */
import type { Writable } from 'node:stream';
import type { PullEvent } from '../../index.js';
import { plainLine, renderFrame, summaryLine, type SummaryFacts } from './render.js';
import { PullProgress } from './state.js';

/** `--progress`: `auto` is `tty` on a terminal (`plain` on a dumb one), else `none`. */
export type ProgressMode = 'auto' | 'tty' | 'plain' | 'json' | 'none';
export const PROGRESS_MODES: readonly ProgressMode[] = ['auto', 'tty', 'plain', 'json', 'none'];

/** stderr, or anything shaped like it. */
export type ProgressStream = Writable & { isTTY?: boolean | undefined; columns?: number; rows?: number };

export interface ProgressReporter {
  /** What `auto` (and `--quiet`) came to. */
  readonly mode: Exclude<ProgressMode, 'auto'>;
  event(event: PullEvent): void;
  /** A line of our own (a warning) that must not tear the display. */
  note(line: string): void;
  /** The pull and its output completed: the last frame, then the summary (where the mode has one). */
  finish(facts: SummaryFacts): void;
  /** The pull failed: leave the display as it is, with the cursor on a fresh line for the error. */
  abandon(): void;
}

export interface ReporterOptions {
  mode: ProgressMode;
  quiet?: boolean;
  stream: ProgressStream;
  env?: NodeJS.ProcessEnv;
  /** Milliseconds; injected by tests. */
  now?: () => number;
  /** Minimum time between two redraws of the terminal display. */
  redrawIntervalMs?: number;
}

/** What `auto` stands for on this stream. */
export function effectiveMode(mode: ProgressMode, stream: ProgressStream, env: NodeJS.ProcessEnv): Exclude<ProgressMode, 'auto'> {
  if (mode !== 'auto') return mode;
  if (stream.isTTY !== true) return 'none';
  // A dumb terminal cannot move the cursor: show the events line by line instead.
  return env['TERM'] === 'dumb' ? 'plain' : 'tty';
}

/** NO_COLOR (https://no-color.org): present and not empty turns colour off. */
export function colorAllowed(env: NodeJS.ProcessEnv): boolean {
  const noColor = env['NO_COLOR'];
  return noColor === undefined || noColor === '';
}

export function createProgressReporter(options: ReporterOptions): ProgressReporter {
  const env = options.env ?? process.env;
  const mode = options.quiet === true ? 'none' : effectiveMode(options.mode, options.stream, env);
  const progress = new PullProgress(options.now);
  const write = (text: string): void => void options.stream.write(text);
  switch (mode) {
    case 'none':
      return {
        mode,
        event: (event) => progress.apply(event),
        note: () => {},
        finish: () => {},
        abandon: () => {},
      };
    case 'json':
      // Exactly the PullEvents, one per line (NDJSON), for scripts: no summary, no notes.
      return {
        mode,
        event: (event) => {
          progress.apply(event);
          write(`${JSON.stringify(event)}\n`);
        },
        note: () => {},
        finish: () => {},
        abandon: () => {},
      };
    case 'plain':
      return {
        mode,
        event: (event) => {
          progress.apply(event);
          const line = plainLine(event, progress);
          if (line !== undefined) write(`${line}\n`);
        },
        note: (line) => write(`${line}\n`),
        finish: (facts) => write(`${summaryLine(progress, facts)}\n`),
        abandon: () => {},
      };
    case 'tty':
      return new TerminalDisplay(progress, options.stream, colorAllowed(env), options.redrawIntervalMs ?? 100);
  }
}

/** Up `n` lines (CUU) and back to column 1: the frame is redrawn over itself. */
const cursorUp = (n: number): string => (n > 0 ? `\x1b[${n}A\r` : '\r');
const ERASE_DOWN = '\x1b[J';
const ERASE_LINE = '\x1b[2K';

/**
 * The terminal display: one frame (header, a line per layer, the total) redrawn in place
 * with ANSI cursor moves, at most every `intervalMs` and once a second while nothing
 * arrives (so rate, ETA and elapsed time move during a stall).
 */
class TerminalDisplay implements ProgressReporter {
  readonly mode = 'tty';
  #linesOnScreen = 0;
  #lastDraw = Number.NEGATIVE_INFINITY;
  #pending: NodeJS.Timeout | undefined;
  readonly #ticker: NodeJS.Timeout;
  #closed = false;

  constructor(
    private readonly progress: PullProgress,
    private readonly stream: ProgressStream,
    private readonly color: boolean,
    private readonly intervalMs: number,
  ) {
    // unref: the display must never keep a finished process alive.
    this.#ticker = setInterval(() => this.#draw(), 1000).unref();
  }

  event(event: PullEvent): void {
    if (this.#closed) return;
    this.progress.apply(event);
    if (event.type === 'retry' || event.type === 'resume' || event.type === 'rate-limit' || event.type === 'warning') {
      this.note(plainLine(event, this.progress) ?? event.type);
      return;
    }
    // The first frame and the last layer's completion are drawn at once; the rest throttled.
    if (event.type === 'resolved' || event.type === 'layer-done') this.#draw();
    else this.#schedule();
  }

  note(line: string): void {
    if (this.#closed) {
      this.stream.write(`${line}\n`);
      return;
    }
    // Above the frame: erase it, print the line, draw the frame again below.
    this.stream.write(`${cursorUp(this.#linesOnScreen)}${ERASE_DOWN}${line}\n`);
    this.#linesOnScreen = 0;
    this.#draw();
  }

  finish(facts: SummaryFacts): void {
    this.#draw();
    this.#close();
    this.stream.write(`${summaryLine(this.progress, facts)}\n`);
  }

  abandon(): void {
    this.#close();
  }

  #schedule(): void {
    if (this.#pending !== undefined) return;
    const wait = Math.max(0, this.intervalMs - (performance.now() - this.#lastDraw));
    this.#pending = setTimeout(() => {
      this.#pending = undefined;
      this.#draw();
    }, wait).unref();
  }

  #draw(): void {
    if (this.#closed) return;
    if (this.#pending !== undefined) {
      clearTimeout(this.#pending);
      this.#pending = undefined;
    }
    this.#lastDraw = performance.now();
    // A pseudo-terminal nobody sized (script(1) without a terminal of its own) reports 0.
    const { columns = 0, rows = 0 } = this.stream;
    const lines = renderFrame(this.progress, {
      columns: columns > 0 ? columns : 80,
      rows: rows > 0 ? rows : 24,
      color: this.color,
    });
    // One write per frame, so a frame never shows half drawn.
    const body = lines.map((line) => `${ERASE_LINE}${line}\n`).join('');
    this.stream.write(`${cursorUp(this.#linesOnScreen)}${body}${ERASE_DOWN}`);
    this.#linesOnScreen = lines.length;
  }

  #close(): void {
    this.#closed = true;
    clearInterval(this.#ticker);
    if (this.#pending !== undefined) clearTimeout(this.#pending);
    this.#pending = undefined;
  }
}
