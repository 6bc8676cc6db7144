// A TCP proxy that shapes the registry → client direction to a fixed rate, so the bench can
// measure on a link of realistic speed as well as on loopback (where a blob downloads at
// ~700 MB/s, faster than any inflate). One token bucket is shared by every connection: it is
// one link, as a host's uplink is, not a per-connection cap. Requests (client → registry) pass
// unshaped: they are a few hundred bytes. Latency is not emulated, only bandwidth.
//
// It runs as its own process so its CPU time can be read apart from the pull's and the
// bench's (/proc/PID/stat): a proxy that ate a core would make every row over the link
// pessimistic, and the report shows its CPU beside each row.
//
//   node bench/lib/throttle-proxy.mjs TARGET_HOST:PORT MB_PER_S   → prints "listening PORT"
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { children } from './util.mjs';

/** Serves on a free 127.0.0.1 port; resolves the port. */
function serve(targetHost, targetPort, bytesPerSecond) {
  // Burst: 50 ms of traffic (5 MB at 100 MB/s), at least 256 KiB. A paused connection waits
  // until half of it is back, so each wake-up moves ~25 ms of traffic and a timer that fires
  // late (milliseconds, at load 5-6 on 2 cores) only lets the bucket fill further instead of
  // losing time. Waking at every 64 KiB read reached 43 MB/s of 100; a 20 ms bucket 85-88;
  // this one 94 at load 6 (the download row reports the rate reached, and is the ratio's
  // denominator, so the rows over the link compare like with like either way).
  const burst = Math.max(256 * 1024, bytesPerSecond * 0.05);
  const resumeAt = burst / 2;
  let tokens = burst;
  let last = performance.now();
  const refill = () => {
    const now = performance.now();
    tokens = Math.min(burst, tokens + ((now - last) / 1000) * bytesPerSecond);
    last = now;
  };
  const waiting = new Set(); // upstream sockets paused for tokens
  let timer;
  const schedule = () => {
    if (timer !== undefined) return;
    const ms = Math.max(1, Math.ceil(((resumeAt - tokens) / bytesPerSecond) * 1000));
    timer = setTimeout(() => {
      timer = undefined;
      refill();
      if (tokens < resumeAt) return schedule();
      for (const s of waiting) {
        waiting.delete(s);
        if (!s.drainWait) s.resume();
      }
    }, ms);
  };

  const server = createServer({ noDelay: true }, (client) => {
    const upstream = createConnection({ host: targetHost, port: targetPort, noDelay: true });
    const kill = () => {
      waiting.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', kill);
    upstream.on('error', kill);
    client.on('close', kill);
    upstream.on('close', kill);
    client.pipe(upstream);
    upstream.on('data', (chunk) => {
      refill();
      tokens -= chunk.length;
      if (!client.write(chunk)) {
        upstream.pause();
        upstream.drainWait = true;
        client.once('drain', () => {
          upstream.drainWait = false;
          if (!waiting.has(upstream)) upstream.resume();
        });
      }
      if (tokens < 0) {
        upstream.pause();
        waiting.add(upstream);
        schedule();
      }
    });
    upstream.on('end', () => client.end());
  });
  return new Promise((resolve, reject) => {
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server.address().port));
  });
}

/** User + system CPU seconds of a process so far, from /proc (Linux). */
export function processCpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the ")" that closes the command name: utime and stime are the 12th and 13th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ: 100 on Linux
  } catch {
    return undefined;
  }
}

/**
 * Starts the proxy in a child process in front of `target` (`host:port`), shaping downloads
 * to `megabytesPerSecond` (10^6 B/s). Resolves { host, pid, mbps, cpuSeconds(), stop() }.
 */
export async function startThrottleProxy(target, megabytesPerSecond) {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), target, String(megabytesPerSecond)], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  const exited = new Promise((resolve) => child.once('exit', () => { children.delete(child); resolve(); }));
  const port = await new Promise((resolve, reject) => {
    let text = '';
    child.stdout.setEncoding('utf8').on('data', (t) => {
      text += t;
      const m = /listening (\d+)/.exec(text);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`throttle proxy exited (${code}) before listening`)));
  });
  return {
    host: `127.0.0.1:${port}`,
    pid: child.pid,
    mbps: megabytesPerSecond,
    cpuSeconds: () => processCpuSeconds(child.pid),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [target, rate] = process.argv.slice(2);
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const bytesPerSecond = Number(rate) * 1e6;
  if (!host || !port || !(bytesPerSecond > 0)) {
    process.stderr.write('usage: throttle-proxy.mjs HOST:PORT MB_PER_S\n');
    process.exit(2);
  }
  const listening = await serve(host, port, bytesPerSecond);
  process.stdout.write(`listening ${listening}\n`);
  process.on('SIGTERM', () => process.exit(0));
}
