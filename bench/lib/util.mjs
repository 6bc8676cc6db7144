// Small helpers: tool lookup, child processes with timing, statistics, formatting.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

const toolCache = new Map();
/** Whether `name` is on PATH. */
export function hasTool(name) {
  if (!toolCache.has(name)) {
    const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
    toolCache.set(name, r.status === 0 && r.stdout.trim() !== '');
  }
  return toolCache.get(name);
}

/** Children still running, killed on exit/SIGINT. */
export const children = new Set();

/**
 * Runs a command; resolves { code, seconds, stdout, stderr, rssKiB?, cpuSeconds? }. With
 * `timeV`, the command runs under `/usr/bin/time -v -o FILE`: rssKiB is its "Maximum resident
 * set size", cpuSeconds its user + system time.
 * `onStdout(chunk, secondsSinceStart)` receives stdout chunks instead of buffering them.
 */
export function run(cmd, args, { timeV = false, timeFile, onStdout, env, cwd, stdin = 'ignore' } = {}) {
  return new Promise((resolve, reject) => {
    const argv = timeV ? ['-v', '-o', timeFile, cmd, ...args] : args;
    const bin = timeV ? '/usr/bin/time' : cmd;
    const started = performance.now();
    const child = spawn(bin, argv, { stdio: [stdin, 'pipe', 'pipe'], env: env ?? process.env, cwd });
    children.add(child);
    const out = [];
    let err = '';
    child.stdout.on('data', (chunk) => {
      if (onStdout) onStdout(chunk, (performance.now() - started) / 1000);
      else out.push(chunk);
    });
    child.stderr.setEncoding('utf8').on('data', (t) => (err = (err + t).slice(-8000)));
    child.on('error', (e) => {
      children.delete(child);
      reject(e);
    });
    child.on('close', (code, signal) => {
      children.delete(child);
      const seconds = (performance.now() - started) / 1000;
      let rssKiB;
      let cpuSeconds;
      if (timeV && existsSync(timeFile)) {
        const text = readFileSync(timeFile, 'utf8');
        const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(text);
        if (m) rssKiB = Number(m[1]);
        // CPU time of every thread (libuv's pool included): far less sensitive to load than wall time.
        const user = /User time \(seconds\): ([\d.]+)/.exec(text);
        const sys = /System time \(seconds\): ([\d.]+)/.exec(text);
        if (user && sys) cpuSeconds = Number(user[1]) + Number(sys[1]);
      }
      resolve({ code: code ?? (signal ? 128 : 1), signal, seconds, stdout: Buffer.concat(out).toString('utf8'), stderr: err, rssKiB, cpuSeconds });
    });
  });
}

/** Runs a shell pipeline with pipefail; throws on failure. */
export async function sh(script, options = {}) {
  const r = await run('bash', ['-o', 'pipefail', '-c', script], options);
  if (r.code !== 0) throw new Error(`command failed (${r.code}): ${script}\n${r.stderr}`);
  return r;
}

export function median(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

export const MiB = 1024 * 1024;
export const mbps = (bytes, seconds) => (seconds > 0 ? bytes / 1e6 / seconds : undefined);

export function fmt(value, digits = 1) {
  if (value === undefined || value === null || Number.isNaN(value)) return '-';
  if (typeof value === 'string') return value;
  return value.toFixed(digits);
}

/** A plain-text table: rows of arrays, first row = header; columns in `left` align left, the others right. */
export function table(rows, left = [0]) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i] ?? '').length)));
  const line = (r) => r.map((c, i) => (left.includes(i) ? String(c ?? '').padEnd(widths[i]) : String(c ?? '').padStart(widths[i]))).join('  ').trimEnd();
  return [line(rows[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}
