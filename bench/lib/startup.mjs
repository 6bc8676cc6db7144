// Start-up cost of the CLI (issue 10): `--version`, `--help`, `pull --help` and `exists`
// against a registry, each beside a bare `node -e 0` and a `curl -I` of the manifest, run
// interleaved (one of each per round, so a load spike hits them all) and reported as medians
// of wall and CPU time. The network alone is also timed in-process (undici, a fresh
// connection per round, the requests `exists` makes: GET /v2/ then HEAD of the manifest), so
// the report can split `exists` into network and everything else (Node, imports, work).
// Targets: `--version` ≤ 1.5× `node -e 0`; `exists` spends its time on the network, not on
// imports, read as: exists minus its network time ≤ 1.5× `node -e 0` (the allowance of
// `--version`; on loopback the network is a millisecond or two, so all the rest is ours).
import { spawn } from 'node:child_process';
import { loadavg } from 'node:os';
import { Agent, request } from 'undici';
import { fmt, median, table } from './util.mjs';

export const STARTUP_TARGET = 1.5;

const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

/**
 * Runs argv once; wall seconds from here to the exit, `answer` seconds to the first byte on
 * stdout (a process can linger after it has answered), CPU seconds of the child from
 * getrusage via /usr/bin/time.
 */
function once(argv, env) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn('/usr/bin/time', ['-f', '%U %S', ...argv], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let answer;
    let stderr = '';
    child.stdout.on('data', () => (answer ??= (performance.now() - started) / 1000));
    child.stderr.setEncoding('utf8').on('data', (t) => (stderr += t));
    child.on('error', reject);
    child.on('close', (code) => {
      const wall = (performance.now() - started) / 1000;
      const times = stderr.trim().split('\n').pop().split(' ').map(Number);
      resolve({ wall, answer, cpu: times[0] + times[1], code, stderr });
    });
  });
}

/** The network part of `exists`, in this process: a fresh connection, GET /v2/, HEAD manifest. */
async function rawHead(host, repo, tag) {
  const dispatcher = new Agent({ pipelining: 0 });
  const started = performance.now();
  try {
    const ping = await request(`http://${host}/v2/`, { dispatcher });
    await ping.body.dump();
    const head = await request(`http://${host}/v2/${repo}/manifests/${tag}`, { method: 'HEAD', headers: { accept: MANIFEST_ACCEPT }, dispatcher });
    await head.body.dump();
    if (head.statusCode !== 200) throw new Error(`HEAD manifest: HTTP ${head.statusCode}`);
    return (performance.now() - started) / 1000;
  } finally {
    await dispatcher.close();
  }
}

/**
 * Measures the start-up rows against `host/repo:tag` (plain HTTP). Returns
 * { rounds, rows: [{ label, wall, cpu, wallRatio, cpuRatio }], networkSeconds, versionRatio,
 *   existsBeyondNetworkRatio, existsNetworkShare, loadBefore, loadAfter } (seconds).
 */
export async function measureStartup({ cli, host, repo, tag = 'v1', rounds = 20, dockerConfig }) {
  const ref = `${host}/${repo}:${tag}`;
  const manifestUrl = `http://${host}/v2/${repo}/manifests/${tag}`;
  const cases = [
    ['node -e 0', [process.execPath, '-e', '0']],
    ['oci-rootfs --version', [process.execPath, cli, '--version']],
    ['oci-rootfs --help', [process.execPath, cli, '--help']],
    ['oci-rootfs pull --help', [process.execPath, cli, 'pull', '--help']],
    ['oci-rootfs exists (local registry)', [process.execPath, cli, 'exists', '--plain-http', ref]],
    ['curl -I of the manifest (a raw HEAD, process)', ['curl', '-sfI', '-o', '/dev/null', '-H', `Accept: ${MANIFEST_ACCEPT}`, manifestUrl]],
  ];
  // No credential helpers or config files: DOCKER_CONFIG points at a directory that does not exist.
  const env = { DOCKER_CONFIG: dockerConfig };
  const samples = cases.map(() => []);
  const network = [];
  const loadBefore = loadavg()[0];
  for (let round = 0; round < rounds + 1; round++) {
    for (let i = 0; i < cases.length; i++) {
      const [label, argv] = cases[i];
      const r = await once(argv, env);
      if (r.code !== 0) throw new Error(`${label} exited ${r.code}: ${r.stderr.slice(-500)}`);
      if (round > 0) samples[i].push(r); // round 0 warms the page cache
    }
    const n = await rawHead(host, repo, tag);
    if (round > 0) network.push(n);
  }
  const loadAfter = loadavg()[0];
  const med = (i, key) => median(samples[i].map((r) => r[key]));
  const base = { wall: med(0, 'wall'), cpu: med(0, 'cpu') };
  const rows = cases.map(([label], i) => {
    const wall = med(i, 'wall');
    const cpu = med(i, 'cpu');
    return { label, wall, cpu, answer: med(i, 'answer'), wallRatio: wall / base.wall, cpuRatio: cpu / base.cpu };
  });
  const networkSeconds = median(network);
  const exists = rows[4].wall;
  return {
    rounds,
    rows,
    networkSeconds,
    base,
    versionRatio: rows[1].wall / base.wall,
    existsBeyondNetworkRatio: (exists - networkSeconds) / base.wall,
    existsNetworkShare: networkSeconds / exists,
    existsOverVersionSeconds: exists - rows[1].wall,
    loadBefore,
    loadAfter,
  };
}

/** The start-up table as text. */
export function startupTable(s) {
  const ms = (x) => fmt(x * 1000, 0);
  return [
    table([
      [`start-up (median of ${s.rounds} interleaved rounds)`, 'wall ms', 'CPU ms', '× node -e 0 wall', '× node -e 0 CPU', 'answer at ms'],
      ...s.rows.map((r) => [r.label, ms(r.wall), ms(r.cpu), fmt(r.wallRatio, 2), fmt(r.cpuRatio, 2), r.answer === undefined ? '' : ms(r.answer)]),
      ['network of exists alone (in-process: GET /v2/ + HEAD manifest, fresh connection)', ms(s.networkSeconds), '', fmt(s.networkSeconds / s.base.wall, 2), '', ''],
    ]),
    `exists: ${ms(s.rows[4].wall)} ms = ${ms(s.networkSeconds)} ms network (${fmt(s.existsNetworkShare * 100, 1)} %) + ${ms(s.rows[4].wall - s.networkSeconds)} ms Node start-up, imports and work; ${ms(s.existsOverVersionSeconds)} ms more than --version; answer printed at ${ms(s.rows[4].answer)} ms, exit ${ms(s.rows[4].wall - s.rows[4].answer)} ms later (--version: ${ms(s.rows[1].wall - s.rows[1].answer)} ms later)`,
  ].join('\n');
}
