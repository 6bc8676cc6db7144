/**
 * We read layers as Go's archive/tar (what Docker and containerd use) and libarchive do.
 *
 * Every tar here was written by ANOTHER implementation, at test time: GNU tar (gnu, oldgnu, v7,
 * ustar, posix; sparse files in every GNU form; incremental dumpdirs; global headers; volume
 * labels; absolute names; a duplicated path), bsdtar (ustar, pax, restricted pax, gnutar, v7),
 * Python's tarfile (ustar, GNU, PAX, from disk and from headers built in code), busybox tar,
 * git archive and Go's archive/tar Writer; plus Go's own test vectors. Each is pushed as a one-layer image, pulled by us (in process), and
 * our output is compared with the tree Go's reader makes of the same tar and, for the tars of
 * the source tree, with what bsdtar extracts from it: path bytes, type, mode, owner, size,
 * content, link target, hardlink groups, device numbers, xattrs, mtimes; and Go must read
 * our output back to the same tree (what Docker would import from it). Vectors Go refuses
 * must be refused too (exit 8), leaving no output file.
 *
 * The only normalisations (docs/tar-dialects.md lists them): leading `./` and `/` stripped,
 * global headers dropped, implicit parents added (0755 root:root, mtime 0), a root entry `.`
 * added, sparse files compared by content (and ours must still be sparse).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { pullRootfs } from '../../src/pull/pull-rootfs.js';
import type { PullEvent } from '../../src/pull/events.js';
import { writeAtomically } from '../../src/streams/output-file.js';
import { diffTrees, showName, treeOfListing, type TreeEntry } from '../helpers/listing.js';
import {
  buildGoPeer,
  GO_TESTDATA,
  GO_VECTORS,
  buildPeerTars,
  extractWithBsdtar,
  goListing,
  listOurTar,
  missingPeerTools,
  normaliseName,
  planPeerTars,
  readWithGo,
  type GoView,
  type OurEntry,
  type PeerTar,
} from '../helpers/peer-tars.js';
import { pushImage } from '../helpers/push.js';

const registry = inject('registry');
const CLI = join(resolve(dirname(fileURLToPath(import.meta.url)), '../..'), 'dist/cli/main.js');

const missing = missingPeerTools();
if (missing.length > 0) throw new Error(`peer-tars.test.ts needs ${missing.join(', ')} (.ci/run installs them)`);
if (process.getuid?.() !== 0) throw new Error('peer-tars.test.ts must run as root (the source tree has owners, a device node, xattrs)');

/** What one case produced; settled in beforeAll's background work, awaited by its test. */
type Outcome =
  | {
      kind: 'pulled';
      bytes: Buffer;
      warnings: Array<{ code: string; message: string }>;
      ours: OurEntry[];
      /** Go's reading of our output: Docker must see in it what we meant. */
      goOfOurs: GoView;
      bsdtar: TreeEntry[] | undefined;
    }
  | { kind: 'refused'; error: unknown; leftovers: string[] }
  | { kind: 'failed'; error: unknown };

// The cases are listed before anything is built (vitest collects tests before beforeAll).
const PLAN = planPeerTars();
const VALID = PLAN.filter((plan) => plan.expect === 'valid');
const BROKEN = PLAN.filter((plan) => plan.expect === 'broken');

let work: string;
let goPeer: string;
let tars: PeerTar[] = [];
const goViews = new Map<string, GoView>();
const references = new Map<string, string>();
const outcomes = new Map<string, Promise<Outcome>>();

/** Our pull of `reference`, in process, as bytes and warning events. A hung pull is aborted. */
async function pull(reference: string): Promise<{ bytes: Buffer; warnings: Array<{ code: string; message: string }> }> {
  const warnings: Array<{ code: string; message: string }> = [];
  const chunks: Buffer[] = [];
  const stream = pullRootfs(reference, {
    plainHttp: true,
    dockerConfigDir: work,
    signal: AbortSignal.timeout(40_000),
    onEvent: (event: PullEvent) => {
      if (event.type === 'warning') warnings.push({ code: event.code, message: event.message });
    },
  });
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return { bytes: Buffer.concat(chunks), warnings };
}

async function runCase(tar: PeerTar): Promise<Outcome> {
  const reference = references.get(tar.name)!;
  if (tar.expect === 'broken') {
    const dir = await mkdtemp(join(work, 'out-'));
    try {
      await writeAtomically(pullRootfs(reference, { plainHttp: true, dockerConfigDir: work, signal: AbortSignal.timeout(40_000) }), join(dir, 'rootfs.tar'));
      return { kind: 'failed', error: new Error('the pull succeeded') };
    } catch (error) {
      return { kind: 'refused', error, leftovers: await readdir(dir) };
    }
  }
  try {
    const { bytes, warnings } = await pull(reference);
    const ours = await listOurTar(bytes);
    const ourFile = `${tar.file}.ours`;
    await writeFile(ourFile, bytes);
    const [goOfOurs] = await readWithGo(goPeer, [ourFile]);
    const bsdtar = tar.bsdtarOracle ? await extractWithBsdtar(tar.file, work) : undefined;
    return { kind: 'pulled', bytes, warnings, ours, goOfOurs: goOfOurs!, bsdtar };
  } catch (error) {
    return { kind: 'failed', error };
  }
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'oci-rootfs-peer-tars-'));
  goPeer = await buildGoPeer(work);
  const scratch = join(work, 'build');
  await mkdir(scratch);
  tars = await buildPeerTars(PLAN, scratch, goPeer);
  // Each case is pushed then pulled in the background, four at a time; each test awaits its
  // own outcome, so the first tests run while later cases are still being pulled.
  const run = randomBytes(4).toString('hex');
  const gates: Array<() => void> = [];
  let running = 0;
  const slot = async (): Promise<void> => {
    if (running < 4) {
      running++;
      return;
    }
    await new Promise<void>((go) => gates.push(go));
  };
  const release = (): void => {
    const next = gates.shift();
    if (next) next();
    else running--;
  };
  tars.forEach((tar, index) => {
    const outcome = slot().then(async (): Promise<Outcome> => {
      try {
        const repo = `peer-tars-${run}/case-${index}`;
        await pushImage(registry, repo, 'v1', { layers: [{ tar: await readFile(tar.file), compression: tar.compression }] });
        references.set(tar.name, `${registry}/${repo}:v1`);
        return await runCase(tar);
      } catch (error) {
        return { kind: 'failed', error };
      } finally {
        release();
      }
    });
    outcomes.set(tar.name, outcome);
  });
  for (const view of await readWithGo(goPeer, tars.map((tar) => tar.file))) goViews.set(view.file, view);
}, 180_000);

afterAll(async () => {
  await Promise.allSettled(outcomes.values());
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});


function tarNamed(name: string): PeerTar {
  const tar = tars.find((t) => t.name === name);
  if (tar === undefined) throw new Error(`no tar was built for ${name}`);
  return tar;
}

/** Directory mtimes, which diffTrees leaves out (extractors touch them; Go's view does not). */
function dirMtimeDiffs(ours: readonly TreeEntry[], theirs: readonly TreeEntry[]): string[] {
  const byPath = new Map(theirs.map((e) => [e.path, e]));
  return ours
    .filter((e) => e.type === 'dir' && byPath.get(e.path)?.type === 'dir' && byPath.get(e.path)!.mtime !== e.mtime)
    .map((e) => `${e.path}: directory mtime ${e.mtime} != ${byPath.get(e.path)!.mtime} (ours vs Go)`);
}

describe('peer tars: our pull reads what other implementations wrote as Go and bsdtar do', () => {
  it('built at least 60 tars with other implementations at test time, plus Go\'s vectors', () => {
    const written = tars.filter((t) => t.writer !== 'Go test vector');
    expect(written.length).toBeGreaterThanOrEqual(60);
    expect(new Set(written.map((t) => t.writer))).toEqual(new Set(['GNU tar', 'bsdtar', 'Python tarfile', 'busybox tar', 'git archive', 'Go archive/tar']));
    // Every archive among Go's test data is a case (small*.txt are the files they hold).
    const testdata = readdirSync(GO_TESTDATA).filter((base) => /\.tar(\.bz2)?$/.test(base));
    expect(Object.keys(GO_VECTORS).sort()).toEqual(testdata.sort());
    expect(tars.filter((t) => t.writer === 'Go test vector').map((t) => t.name.slice('Go test vector '.length))).toEqual(Object.keys(GO_VECTORS));
  });

  it.each(VALID.map((plan) => plan.name))('%s: our output is the tree Go (and bsdtar) read from it', async (name) => {
    const tar = tarNamed(name);
    const view = goViews.get(tar.file)!;
    expect(view.error, "Go's reader accepts it").toBeNull();
    const outcome = await outcomes.get(name)!;
    if (outcome.kind !== 'pulled') throw outcome.kind === 'failed' ? outcome.error : new Error('refused');

    const ourTree = treeOfListing(outcome.ours);
    const goTree = treeOfListing(goListing(view));
    // Not vacuous: Go sees entries (pax-path-hdr.tar alone is an empty archive to Go).
    if (!tar.name.endsWith('pax-path-hdr.tar')) expect(goTree.filter((e) => e.path !== '.').length).toBeGreaterThan(0);
    if (tar.sparse) expect(view.entries.some((e) => e.sparse), 'the writer stored sparse files').toBe(true);

    // Every difference at once, so one failure does not hide the others.
    const problems = [...diffTrees(ourTree, goTree, ['ours', 'Go']), ...dirMtimeDiffs(ourTree, goTree)];
    if (outcome.bsdtar !== undefined) {
      problems.push(...diffTrees(ourTree.filter((e) => e.path !== '.'), outcome.bsdtar, ['ours', 'bsdtar']));
    }
    // Sparse files stay sparse: every entry Go saw stored sparse is sparse in our output.
    for (const e of view.entries.filter((entry) => entry.sparse)) {
      const path = showName(normaliseName(Buffer.from(e.name, 'hex')));
      if (outcome.ours.find((entry) => entry.path === path)?.sparse === undefined) problems.push(`${path}: stored sparse, written dense`);
    }
    // Our output as Go reads it (what Docker would import) is what our reader reads in it.
    if (outcome.goOfOurs.error !== null) problems.push(`Go cannot read our output: ${outcome.goOfOurs.error}`);
    else problems.push(...diffTrees(ourTree, treeOfListing(goListing(outcome.goOfOurs)), ['ours', 'Go reading ours']));
    if (outcome.bsdtar !== undefined && outcome.bsdtar.length === 0) problems.push('bsdtar extracted nothing');
    // A tar written by a correct writer needs no excuse, unless it holds what the README says we
    // skip or deduplicate with a warning.
    if (tar.writer !== 'Go test vector') {
      const wanted = tar.warnings ?? [];
      problems.push(...outcome.warnings.filter((w) => !wanted.includes(w.code)).map((w) => `unexpected warning ${w.code}: ${w.message}`));
      problems.push(...wanted.filter((code) => !outcome.warnings.some((w) => w.code === code)).map((code) => `no ${code} warning`));
    }
    expect(problems, `differences:\n${problems.join('\n')}\n`).toEqual([]);
  }, 120_000);

  it.each(BROKEN.map((plan) => plan.name))('%s: refused as malformed (exit 8), no output file left', async (name) => {
    const tar = tarNamed(name);
    expect(goViews.get(tar.file)!.error, "Go's reader refuses it").not.toBeNull();
    const outcome = await outcomes.get(name)!;
    if (outcome.kind === 'failed') throw outcome.error;
    expect(outcome.kind).toBe('refused');
    if (outcome.kind !== 'refused') return;
    expect(outcome.error).toMatchObject({ exitCode: 8 });
    expect(outcome.leftovers).toEqual([]);
  }, 120_000);
});

describe('peer tars through the CLI', () => {
  /** `oci-rootfs pull --plain-http REFERENCE -o DIR/out.tar`. */
  async function cli(reference: string): Promise<{ code: number | null; stderr: string; dir: string }> {
    const dir = await mkdtemp(join(work, 'cli-'));
    const child = spawn(process.execPath, [CLI, 'pull', '--plain-http', reference, '-o', join(dir, 'out.tar')], {
      env: { ...process.env, DOCKER_CONFIG: work },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    const code = await new Promise<number | null>((done) => child.once('exit', (status) => done(status)));
    return { code, stderr, dir };
  }

  it('writes the same bytes as the in-process pull for a GNU tar posix layer with xattrs', async () => {
    expect(existsSync(CLI), `${CLI} (npm run build)`).toBe(true);
    const name = VALID.find((c) => c.name.startsWith('GNU tar --format=posix --xattrs (./'))!.name;
    const outcome = await outcomes.get(name)!;
    if (outcome.kind !== 'pulled') throw outcome.kind === 'failed' ? outcome.error : new Error('refused');
    const run = await cli(references.get(name)!);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect((await readFile(join(run.dir, 'out.tar'))).equals(outcome.bytes)).toBe(true);
  });

  it("exits 8 with one line on stderr and no file for Go's neg-size.tar", async () => {
    expect(existsSync(CLI), `${CLI} (npm run build)`).toBe(true);
    const name = 'Go test vector neg-size.tar';
    const outcome = await outcomes.get(name)!;
    if (outcome.kind === 'failed') throw outcome.error;
    const run = await cli(references.get(name)!);
    expect(run.code).toBe(8);
    expect(run.stderr).toMatch(/^oci-rootfs: [^\n]+\n$/);
    expect(await readdir(run.dir)).toEqual([]);
  });
});
