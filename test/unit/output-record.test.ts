/**
 * The --if-changed record (src/cli/pull-outputs.ts): the gzip engine is one of the options
 * that change the output bytes, so a record made with another engine never matches.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readRecord, recordMatches, writeRecord, type OutputRecord, type RecordedOptions } from '../../src/cli/pull-outputs.js';

const dir = await mkdtemp(join(tmpdir(), 'oci-rootfs-output-record-'));
afterAll(async () => rm(dir, { recursive: true, force: true }));

const digest = `sha256:${'a'.repeat(64)}`;

async function outputWithRecord(name: string, options: Omit<RecordedOptions, 'gzipEngine'> & { gzipEngine?: string | null }): Promise<{ file: string; record: OutputRecord }> {
  const file = join(dir, name);
  await writeFile(file, Buffer.alloc(100));
  const record: OutputRecord = { version: 1, reference: 'r/x:1', digest, manifestDigest: digest, platform: 'linux/amd64', options, output: { bytes: 100 } };
  await writeRecord(file, record);
  return { file, record: (await readRecord(file)) as OutputRecord };
}

describe('the --if-changed record', () => {
  it('matches the same gzip engine and refuses another one', async () => {
    const { file, record } = await outputWithRecord('a.tar.gz', { platform: null, format: 'gzip', level: 6, gzipEngine: 'native' });
    expect(record.options.gzipEngine).toBe('native');
    expect(await recordMatches(record, file, { platform: null, format: 'gzip', level: 6, gzipEngine: 'native' })).toBe(true);
    expect(await recordMatches(record, file, { platform: null, format: 'gzip', level: 6, gzipEngine: 'zlib' })).toBe(false);
  });

  it('never matches a gzip output with a record from before engines were recorded', async () => {
    const { file, record } = await outputWithRecord('old.tar.gz', { platform: null, format: 'gzip', level: 6 });
    expect(await recordMatches(record, file, { platform: null, format: 'gzip', level: 6, gzipEngine: 'zlib' })).toBe(false);
  });

  it('still matches a tar output with a record from before engines were recorded', async () => {
    const { file, record } = await outputWithRecord('old.tar', { platform: null, format: 'tar', level: null });
    expect(await recordMatches(record, file, { platform: null, format: 'tar', level: null, gzipEngine: null })).toBe(true);
  });
});
