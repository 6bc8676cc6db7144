/**
 * What the built CLI loads before it does its work (issue 10, start-up): `--version` only
 * itself and the compressors (it names the engines), `--help` commander and the command definitions, `exists` the registry client
 * and its query but not the flattener, the compressors or rxjs. Recorded with a module
 * resolve hook in the spawned process, so a heavy static import added later shows up here.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { makeTar, pushImage } from '../helpers/push.js';

const registry = inject('registry');
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = join(ROOT, 'dist/cli/main.js');
const work = await mkdtemp(join(tmpdir(), 'oci-rootfs-startup-'));
const hooks = join(work, 'hooks.mjs');
const register = join(work, 'register.mjs');
let reference: string;

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (\`npm test\` does)`);
  // Every resolved module URL, appended to the file named by LOADED_LOG.
  await writeFile(
    hooks,
    `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  appendFileSync(process.env.LOADED_LOG, result.url + '\\n');
  return result;
}
`,
  );
  await writeFile(register, `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`);
  const repo = `e2e-startup/exists-${randomBytes(4).toString('hex')}`;
  await pushImage(registry, repo, 'v1', { layers: [{ tar: await makeTar([{ name: 'etc/hostname', content: 'x\n' }]), compression: 'gzip' }] });
  reference = `${registry}/${repo}:v1`;
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Runs the binary with `args`; resolves its exit status and the modules it loaded, relative to the package. */
function loaded(args: string[]): Promise<{ code: number | null; modules: string[] }> {
  const log = join(work, `loaded-${randomBytes(4).toString('hex')}.log`);
  return new Promise((done) => {
    execFile(
      process.execPath,
      ['--import', register, CLI, ...args],
      { env: { ...process.env, LOADED_LOG: log, DOCKER_CONFIG: work }, timeout: 60_000 },
      (error) => {
        void readFile(log, 'utf8').then((text) => {
          const rootUrl = pathToFileURL(ROOT).href;
          const modules = [...new Set(text.split('\n').filter((url) => url.startsWith('file:')))].map((url) =>
            url.replace(`${rootUrl}/`, '').replace(/^file:\/\/.*\/node_modules\//, 'node_modules/'),
          );
          done({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : null, modules });
        });
      },
    );
  });
}

describe('start-up', () => {
  it('answers --version having loaded the entry point and the compressors (to name the engines), not commander or the commands', async () => {
    const run = await loaded(['--version']);
    expect(run.code).toBe(0);
    expect(run.modules).toContain('dist/cli/version.js');
    expect(run.modules).toContain('dist/streams/compress.js');
    expect(run.modules.filter((m) => /commander|undici|rxjs|dist\/cli\/(program|.*-command)\.js|dist\/(pull|flatten|registry|stores)\//.test(m))).toEqual([]);
  });

  it('prints --help without loading undici, rxjs, the pull, the flattener or the streams', async () => {
    const run = await loaded(['--help']);
    expect(run.code).toBe(0);
    expect(run.modules).toContain('dist/cli/program.js');
    // The engine names for --gzip-engine's choices come from a module of their own.
    expect(run.modules.filter((m) => /undici|rxjs|pako|dist\/(pull|flatten|registry|stores)\/|dist\/streams\/(?!compressor-engines\.js)/.test(m))).toEqual([]);
  });

  it('checks exists with the registry client, without the flattener, the compressors or rxjs', async () => {
    const run = await loaded(['exists', '--plain-http', reference]);
    expect(run.code).toBe(0);
    expect(run.modules).toContain('dist/registry/client.js');
    expect(run.modules.filter((m) => /rxjs|zstd|pako|dist\/(pull|flatten)\/|dist\/streams\/(compress\.js|native-deflate|parallel-gzip|tar\/)/.test(m))).toEqual([]);
  });
});
