import { describe, expect, it } from 'vitest';
import { PassthroughCheck } from '../../src/pull/passthrough-check.js';
import { readTar } from '../../src/streams/tar/reader.js';
import { buildTar, type FixtureEntry } from '../helpers/tar-fixture.js';

/** The check's verdict on a tar: undefined when it may pass through, else the reason. */
async function judge(tar: Buffer): Promise<string | undefined> {
  const check = new PassthroughCheck();
  const entries = readTar(
    (async function* () {
      yield tar;
    })(),
    { onWarning: (w) => check.warning(w), onHeader: (flag, payload) => check.header(flag, payload) },
  );
  for await (const entry of entries) if (!check.entry(entry.header)) break;
  return check.reason;
}

const BASE: FixtureEntry[] = [
  { name: './', type: 'dir' },
  { name: 'usr/', type: 'dir' },
  { name: 'usr/bin/', type: 'dir' },
  { name: 'usr/bin/env', type: 'file', content: 'env' },
];

describe('PassthroughCheck', () => {
  it('accepts a plain layer with links, devices, long PAX names and xattrs', async () => {
    const long = `usr/${'n'.repeat(150)}`;
    const reason = await judge(
      buildTar([
        ...BASE,
        { name: 'usr/bin/printenv', type: 'link', linkname: 'usr/bin/env' },
        { name: 'usr/bin/sh', type: 'symlink', linkname: '../../bin/busybox' },
        { name: 'usr/null', type: 'char', devmajor: 1, devminor: 3 },
        { name: long, type: 'file', content: 'x', pax: { path: long, 'SCHILY.xattr.user.a': 'b' } },
      ]),
    );
    expect(reason).toBeUndefined();
  });

  it.each<[string, FixtureEntry[], RegExp]>([
    ['a hardlink to a later entry', [{ name: 'usr/bin/a', type: 'link', linkname: 'usr/bin/b' }, { name: 'usr/bin/b', type: 'file' }], /hardlink/],
    ['a hardlink to a directory', [{ name: 'usr/bin/a', type: 'link', linkname: 'usr/bin' }], /hardlink/],
    ['a hardlink with .. in its target', [{ name: 'usr/bin/a', type: 'link', linkname: 'usr/../usr/bin/env' }], /hardlink/],
    ['a GNU dumpdir', [{ name: 'usr/d', type: 'dir', rawTypeflag: 'D' }], /type "D"/],
    ['a PAX 0.1 sparse file', [{ name: 'usr/s', type: 'file', content: 'ab', pax: { 'GNU.sparse.size': '2', 'GNU.sparse.numblocks': '1', 'GNU.sparse.map': '0,2' } }], /sparse/],
    ['a contiguous file', [{ name: 'usr/c', type: 'file', rawTypeflag: '7' }], /type "7"/],
    ['a PAX hdrcharset record', [{ name: 'usr/h', type: 'file', pax: { hdrcharset: 'BINARY' } }], /hdrcharset/],
    ['a uid beyond the ustar field', [{ name: 'usr/u', type: 'file', uid: 2 ** 22, pax: { uid: String(2 ** 22) } }], /id or device/],
    ['a second root entry', [{ name: '.', type: 'dir' }], /two root/],
    ['a doubled slash', [{ name: 'usr//bin/x', type: 'file' }], /needs cleaning/],
    ['a file over a directory', [{ name: 'usr/bin', type: 'file' }], /twice/],
    ['a name that is not UTF-8', [{ name: Buffer.from('usr/caf\xe9', 'latin1'), type: 'file' }], /not UTF-8/],
    ['a v7-style directory (a regular-file entry whose name ends in /)', [{ name: 'usr/v7dir/', type: 'file', rawTypeflag: '0' }], /written as a regular-file entry/],
  ])('refuses %s', async (_what, extra, reason) => {
    expect(await judge(buildTar([...BASE, ...extra]))).toMatch(reason);
  });

  it('refuses a root entry that is not a directory', async () => {
    expect(await judge(buildTar([{ name: '.', type: 'symlink', linkname: 'x' }]))).toMatch(/root entry/);
  });
});
