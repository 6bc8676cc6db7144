/**
 * The progress display of `oci-rootfs pull` as users meet it: in a real pseudo-terminal
 * (script(1) runs the built CLI on a pty and hands us every byte it wrote), on a pipe
 * (nothing, unless asked; run in this process through `runCli`), and as NDJSON for
 * scripts. Against the real test registry.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { PullEvent } from '../../src/pull/events.js';
import { runInProcess } from '../helpers/cli.js';
import { makeTar, pushImage } from '../helpers/push.js';

const registry = inject('registry');
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = join(ROOT, 'dist/cli/main.js');
const work = await mkdtemp(join(tmpdir(), 'oci-rootfs-cli-progress-'));
const emptyConfigDir = await mkdtemp(join(tmpdir(), 'oci-rootfs-cli-progress-noconfig-'));
let reference = '';
const LAYERS = 3;

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (\`npm test\` does)`);
  // Incompressible layers of a few MB: enough bytes for progress reports, quick to push.
  const layers = [];
  for (let i = 0; i < LAYERS; i++) {
    layers.push({ tar: await makeTar([{ name: `data/layer${i}.bin`, content: randomBytes(2 * 1024 * 1024) }]), compression: 'gzip' as const });
  }
  const repo = `e2e-cli/progress-${randomBytes(4).toString('hex')}`;
  await pushImage(registry, repo, 'v1', { layers });
  reference = `${registry}/${repo}:v1`;
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
  await rm(emptyConfigDir, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

const env = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => {
  const base: NodeJS.ProcessEnv = { ...process.env, DOCKER_CONFIG: emptyConfigDir };
  delete base['NO_COLOR'];
  return { ...base, ...extra };
};

/** The CLI on streams that are not terminals (in this process). */
async function runOnPipes(args: string[]): Promise<Run> {
  const result = await runInProcess(args, { cwd: work, env: { DOCKER_CONFIG: emptyConfigDir, NO_COLOR: undefined } });
  return { code: result.code, stdout: result.stdout.toString('utf8'), stderr: result.stderr };
}

const shellQuote = (word: string): string => `'${word.replace(/'/g, `'\\''`)}'`;

/**
 * The CLI in a pseudo-terminal of 100×30: `script -qfec CMD /dev/null` gives it a pty as
 * stdin, stdout and stderr and copies everything it writes to our pipe.
 */
function runInTerminal(args: string[], extraEnv: Record<string, string> = {}): Promise<{ code: number | null; output: string }> {
  const command = `stty cols 100 rows 30 2>/dev/null; exec ${[process.execPath, CLI, ...args].map(shellQuote).join(' ')}`;
  return new Promise((resolvePromise, reject) => {
    const child = spawn('script', ['-qfec', command, '/dev/null'], { cwd: work, env: env(extraEnv), stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, output }));
  });
}

/**
 * What a terminal shows after `output`: a small interpreter of what the display uses
 * (CR, LF, cursor up, erase line, erase below; colours dropped).
 */
function screen(output: string): string[] {
  const lines: string[] = [''];
  let row = 0;
  let col = 0;
  const put = (text: string): void => {
    const line = lines[row] ?? '';
    lines[row] = line.slice(0, col).padEnd(col) + text + line.slice(col + text.length);
    col += text.length;
  };
  const tokens = output.match(/\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]+/g) ?? [];
  for (const token of tokens) {
    if (token === '\r') col = 0;
    else if (token === '\n') {
      row++;
      col = 0;
      while (lines.length <= row) lines.push('');
    } else if (token.startsWith('\x1b[')) {
      const n = Number(token.slice(2, -1) || '1');
      const op = token.slice(-1);
      if (op === 'A') row = Math.max(0, row - n);
      else if (op === 'K') lines[row] = '';
      else if (op === 'J') {
        lines.length = row + 1;
        lines[row] = (lines[row] ?? '').slice(0, col);
      }
    } else put(token);
  }
  return lines.filter((line, i) => line !== '' || i < lines.length - 1);
}

describe('pull progress in a terminal', () => {
  it('draws one line per layer and a total, redraws them in place, and ends with a summary', async () => {
    const { code, output } = await runInTerminal(['pull', reference, '-o', 'terminal.tar']);
    expect(code, output).toBe(0);
    // Redrawn in place: the frame (header, 3 layers, total) is five lines high.
    expect(output).toContain('\x1b[5A\r');
    expect(output).toContain('\x1b[2K');
    expect(output).toMatch(/\x1b\[36m\[/); // a coloured bar: colours are on by default
    const shown = screen(output);
    const layerLines = shown.filter((line) => /^ {2}\d\/3 sha256:[0-9a-f]{12} {2}done/.test(line));
    expect(layerLines, shown.join('\n')).toHaveLength(LAYERS);
    expect(shown.some((line) => /^total +\[={20}\] 100% {2}[\d.]+ MB \/ [\d.]+ MB/.test(line))).toBe(true);
    expect(shown.some((line) => line.startsWith(`Pulling ${reference} (linux/amd64) sha256:`))).toBe(true);
    const summary = shown.find((line) => line.startsWith('pulled '));
    expect(summary).toMatch(
      new RegExp(`^pulled ${reference.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}@sha256:[0-9a-f]{64} \\(linux/amd64\\): 3 layers, [\\d.]+ MB in, [\\d.]+ MB out to terminal\\.tar in [\\d.]+s$`),
    );
    expect((await stat(join(work, 'terminal.tar'))).size).toBeGreaterThan(6 * 1024 * 1024);
  });

  it('draws no colours when NO_COLOR is set', async () => {
    const { code, output } = await runInTerminal(['pull', reference, '-o', 'nocolor.tar'], { NO_COLOR: '1' });
    expect(code, output).toBe(0);
    expect(output).not.toMatch(/\x1b\[[0-9;]*m/);
    expect(output).toContain('\x1b[5A\r');
  });

  it('prints nothing but errors with --quiet, and plain lines with --progress plain', async () => {
    const quiet = await runInTerminal(['pull', reference, '-o', 'quiet.tar', '--quiet']);
    expect(quiet.code).toBe(0);
    expect(quiet.output).toBe('');
    const plain = await runInTerminal(['pull', reference, '-o', 'plain.tar', '--progress', 'plain']);
    expect(plain.code).toBe(0);
    expect(plain.output).not.toContain('\x1b[');
    expect(plain.output.split('\r\n').filter((line) => /^layer \d\/3 .*: (started|done)/.test(line))).toHaveLength(2 * LAYERS);
  });
});

describe('pull progress when stderr is not a terminal', () => {
  it('prints nothing by default', async () => {
    const result = await runOnPipes(['pull', reference, '-o', 'pipe.tar']);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
  });

  it('prints one line per layer event and a summary with --progress plain, and no escape codes', async () => {
    const result = await runOnPipes(['pull', reference, '-o', 'plain-pipe.tar.gz', '--progress', 'plain']);
    expect(result.code).toBe(0);
    expect(result.stderr).not.toContain('\x1b');
    const lines = result.stderr.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^resolved .* to sha256:[0-9a-f]{64} \(linux\/amd64\): 3 layers, [\d.]+ MB$/);
    expect(lines.filter((line) => line.endsWith(': started'))).toHaveLength(LAYERS);
    expect(lines.filter((line) => /: done, 1 entry written, \d+ skipped$/.test(line))).toHaveLength(LAYERS);
    expect(lines.at(-1)).toMatch(/^pulled .* 3 layers, [\d.]+ MB in, [\d.]+ MB out \(gzip of [\d.]+ MB tar\) to plain-pipe\.tar\.gz in [\d.]+s$/);
  });

  it('writes every event of the pull as one JSON object per line with --progress json', async () => {
    const result = await runOnPipes(['pull', reference, '-o', 'json.tar', '--progress', 'json']);
    expect(result.code).toBe(0);
    const events = result.stderr.trimEnd().split('\n').map((line) => JSON.parse(line) as PullEvent);
    const types = new Set(events.map((event) => event.type));
    for (const type of ['resolved', 'layer-start', 'progress', 'layer-done', 'done']) {
      expect(types, `no "${type}" event among ${[...types].join(', ')}`).toContain(type);
    }
    expect(events[0]?.type).toBe('resolved');
    expect(events.at(-1)?.type).toBe('done');
    expect(events.filter((event) => event.type === 'layer-done')).toHaveLength(LAYERS);
    const done = events.at(-1);
    if (done?.type !== 'done') throw new Error('no done event');
    // The tar bytes the flattener wrote: all of the file but at most the end-of-archive blocks.
    const size = (await stat(join(work, 'json.tar'))).size;
    expect(done.bytesOut).toBeLessThanOrEqual(size);
    expect(size - done.bytesOut).toBeLessThanOrEqual(10_240);
    for (const event of events) {
      if (event.type === 'progress') expect(event.bytes).toBeLessThanOrEqual(event.total);
    }
  });

  it('refuses --quiet together with a progress mode', async () => {
    const result = await runOnPipes(['pull', reference, '-o', 'x.tar', '--quiet', '--progress', 'plain']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^oci-rootfs: --quiet and --progress plain cannot be used together\n$/);
  });
});
