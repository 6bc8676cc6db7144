/**
 * What our tar writer produces, extracted by the tools people use on a rootfs tar: GNU tar (as
 * root and as an unprivileged user), bsdtar, busybox, Python's tarfile, Go's archive/tar and
 * tar2sqfs. Each must give the same tree (names as bytes, types, modes, owners, sizes, content
 * hashes, link targets, devices, xattrs, holes, as far as the tool keeps them) and print
 * nothing on stderr: a warning on our output is a defect of our output.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  closeSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readSync,
  readdirSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bodyLength, encodeHeader, END_OF_ARCHIVE, paddingFor, paxKey, readTar } from '../../src/streams/tar/index.js';
import type { TarHeader } from '../../src/streams/tar/index.js';
import { tarHeader } from '../helpers/tar-fixture.js';

const work = mkdtempSync(join(tmpdir(), 'tar-consumers-'));
// The unprivileged extraction must reach the archive.
chmodSync(work, 0o755);
afterAll(() => rmSync(work, { recursive: true, force: true }));

const MTIME = 1_700_000_000;
const l1 = (text: string): Buffer => Buffer.from(text, 'latin1');
const hex = (data: Buffer): string => data.toString('hex');
/**
 * A PAX key as TarHeader.pax spells it: the one line to change when keys become bytes
 * (contract A: `paxKey` from pax-key.ts).
 */
const key = (text: string): TarHeader['pax'][number][0] => paxKey(text);

/**
 * A digest of content that skips zeros cheaply: sha256 over each non-zero 64 KiB chunk with its
 * offset, then the size. Hashing a gigabyte of holes with sha256 took 9 s on a loaded machine;
 * comparing zeros is memcmp. The Go reader below computes the same.
 */
class ContentDigest {
  private readonly hash = createHash('sha256');
  private readonly chunk = Buffer.alloc(CHUNK);
  private filled = 0;
  private at = 0;

  update(data: Buffer): this {
    for (let pos = 0; pos < data.length; ) {
      if (this.filled === 0 && data.length - pos >= CHUNK) {
        this.add(data.subarray(pos, pos + CHUNK));
        pos += CHUNK;
        continue;
      }
      const n = Math.min(CHUNK - this.filled, data.length - pos);
      data.copy(this.chunk, this.filled, pos, pos + n);
      this.filled += n;
      pos += n;
      if (this.filled === CHUNK) this.flush();
    }
    return this;
  }

  digest(): string {
    this.flush();
    this.hash.update(offsetBytes(this.at));
    return this.hash.digest('hex');
  }

  private flush(): void {
    this.add(this.chunk.subarray(0, this.filled));
    this.filled = 0;
  }

  private add(chunk: Buffer): void {
    if (!chunk.equals(ZERO_CHUNK.subarray(0, chunk.length))) this.hash.update(offsetBytes(this.at)).update(chunk);
    this.at += chunk.length;
  }
}
const CHUNK = 64 * 1024;
const ZERO_CHUNK = Buffer.alloc(CHUNK);
function offsetBytes(offset: number): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(BigInt(offset));
  return out;
}
const digestOf = (data: Buffer): string => new ContentDigest().update(data).digest();

function digestFile(path: Buffer): string {
  const digest = new ContentDigest();
  const buffer = Buffer.alloc(16 * CHUNK);
  const fd = openSync(path, 'r');
  try {
    for (let n; (n = readSync(fd, buffer, 0, buffer.length, null)) > 0; ) digest.update(buffer.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return digest.digest();
}

function header(fields: Partial<TarHeader> & { name: Buffer }): TarHeader {
  return tarHeader({ mtime: MTIME, ...fields });
}

// ---------------------------------------------------------------------------------------------
// The tree

const capability = Buffer.from('0100000200040000ffffffff0000000000000000', 'hex');
const latin1Short = l1('root/caf\xe9');
const latin1Long = l1(`root/${'d\xe9j\xe0-'.repeat(25)}`); // one 125-byte component: GNU 'L'
const latin1Dir = l1(`root/${'\xe9'.repeat(80)}`);
const latin1Split = l1(`root/${'\xe9'.repeat(80)}/${'\xe0'.repeat(90)}`); // prefix + name
const utf8Long = Buffer.from(`root/${'ünï-'.repeat(25)}`); // PAX path
const longTarget = Buffer.from('a/'.repeat(150)); // PAX linkpath
const latin1Target = l1('t\xe9'.repeat(100)); // GNU 'K'
/**
 * 256 MiB of holes: every extracted copy is read back in full (the kernel fills holes with
 * zeros at about 1 GiB/s on this loaded machine), so a gigabyte would cost seconds per tool.
 */
const SPARSE_SIZE = 256 * 1024 ** 2;
const sparseSegments: Array<[number, number]> = [
  [4096, 4096],
  [128 * 1024 ** 2, 10_240], // all but the last segment are whole blocks, as isBlockAligned wants
  [250_000_000, 12_345],
]; // and a hole at the end
const pattern = (length: number, seed: number): Buffer => {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return out;
};
const sparseData = sparseSegments.map(([, length], i) => pattern(length, i + 1));

interface Entry {
  header: TarHeader;
  /** What the archive stores after the header (a sparse file: its segments only). */
  stored?: Buffer;
}

const file = (name: Buffer, content: string | Buffer, extra: Partial<TarHeader> = {}): Entry => {
  const body = typeof content === 'string' ? Buffer.from(content) : content;
  return { header: header({ name, size: body.length, ...extra }), stored: body };
};

/**
 * A hardlink entry carries its target's owner and mode, as tar writers record them: Python's
 * tarfile applies them to the shared inode.
 */
function hardlink(name: Buffer, target: Entry): Entry {
  return { header: { ...target.header, name, type: 'link', linkname: target.header.name, size: 0, pax: [] } };
}

function tree(): Entry[] {
  // A non-UTF-8 name in the ustar field, with a PAX header for something else.
  const short = file(latin1Short, 'latin-1 name', { pax: [[key('SCHILY.xattr.user.short'), Buffer.from('s')]] });
  // A GNU long name and a PAX header for the same entry.
  const long = file(latin1Long, 'long latin-1 name', {
    uid: 3_000_000,
    gid: 3_000_000,
    pax: [[key('SCHILY.xattr.user.latin'), l1('\xe9t\xe9')]],
  });
  return [
    { header: header({ name: l1('root'), type: 'directory', mode: 0o755 }) },
    short,
    long,
    { header: header({ name: latin1Dir, type: 'directory', mode: 0o750 }) },
    file(latin1Split, 'split latin-1 name', { mode: 0o600 }),
    file(utf8Long, 'long UTF-8 name'),
    { header: header({ name: l1('root/long-target'), type: 'symlink', mode: 0o777, linkname: longTarget }) },
    { header: header({ name: l1('root/latin1-target'), type: 'symlink', mode: 0o777, linkname: latin1Target }) },
    { header: header({ name: l1('root/short-latin1-target'), type: 'symlink', mode: 0o777, linkname: l1('caf\xe9') }) },
    hardlink(l1('root/hard'), short),
    hardlink(l1('root/hard-long'), long),
    file(l1('root/big-ids'), 'owned by 3000000', { uid: 3_000_000, gid: 3_000_001 }),
    file(l1('root/owner-names'), 'numeric ids win', { uid: 1000, gid: 100, uname: l1('us\xe9r'), gname: Buffer.from('grüppe') }),
    file(l1('root/setuid'), 'setuid', { mode: 0o4755 }),
    file(l1('root/cap'), 'ping', {
      mode: 0o755,
      pax: [
        [key('SCHILY.xattr.security.capability'), capability],
        [key('SCHILY.xattr.user.note'), Buffer.from('a note')],
      ],
    }),
    { header: header({ name: l1('root/null'), type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3 }) },
    { header: header({ name: l1('root/loop9'), type: 'block-device', mode: 0o660, devmajor: 7, devminor: 9 }) },
    { header: header({ name: l1('root/fifo'), type: 'fifo', mode: 0o600 }) },
    {
      header: header({ name: l1('root/sparse'), size: SPARSE_SIZE, sparse: { segments: sparseSegments } }),
      stored: Buffer.concat(sparseData),
    },
  ];
}

function archive(entries: Entry[]): Buffer {
  const parts: Buffer[] = [];
  for (const { header: h, stored } of entries) {
    parts.push(encodeHeader(h));
    const length = bodyLength(h);
    expect(stored?.length ?? 0).toBe(length);
    if (stored !== undefined) parts.push(stored, paddingFor(length));
  }
  parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}

/** The digest of the sparse file's full content, without holding a gigabyte. */
function sparseDigest(): string {
  const digest = new ContentDigest();
  const zeros = Buffer.alloc(1024 * 1024);
  let at = 0;
  const fill = (to: number): void => {
    for (; at < to; at += Math.min(zeros.length, to - at)) digest.update(zeros.subarray(0, Math.min(zeros.length, to - at)));
  };
  sparseSegments.forEach(([offset, length], i) => {
    fill(offset);
    digest.update(sparseData[i]!);
    at += length;
  });
  fill(SPARSE_SIZE);
  return digest.digest();
}

// ---------------------------------------------------------------------------------------------
// Trees on disk, described the same way as the expected one

interface Node {
  type: string;
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  content?: string;
  target?: string;
  rdev?: number;
  mtime?: number;
}

/** Path (latin1, so bytes map to chars one to one) → node; `sparse` is checked separately. */
type Tree = Map<string, Node>;

function expectedTree(): Tree {
  const out: Tree = new Map();
  for (const { header: h, stored } of tree()) {
    const path = h.name.toString('latin1');
    const owner = { mode: h.mode, uid: h.uid, gid: h.gid };
    switch (h.type) {
      case 'directory':
        out.set(path, { type: 'directory', ...owner });
        break;
      case 'file':
        out.set(path, {
          type: 'file',
          ...owner,
          size: h.size,
          content: h.sparse === undefined ? digestOf(stored!) : SPARSE_DIGEST,
          mtime: MTIME,
        });
        break;
      case 'link': {
        const target = out.get(h.linkname.toString('latin1'))!;
        out.set(path, { ...target });
        break;
      }
      case 'symlink':
        out.set(path, { type: 'symlink', uid: h.uid, gid: h.gid, target: h.linkname.toString('latin1') });
        break;
      case 'character-device':
      case 'block-device':
        out.set(path, { type: h.type, ...owner, rdev: h.devmajor * 256 + h.devminor });
        break;
      case 'fifo':
        out.set(path, { type: 'fifo', ...owner });
        break;
    }
  }
  return out;
}

async function readTree(root: string): Promise<{ tree: Tree; inodes: Map<string, number>; blocks: Map<string, number> }> {
  const tree: Tree = new Map();
  const inodes = new Map<string, number>();
  const blocks = new Map<string, number>();
  const walk = async (dir: Buffer, rel: string): Promise<void> => {
    for (const name of readdirSync(dir, { encoding: 'buffer' })) {
      const path = Buffer.concat([dir, l1('/'), name]);
      const relPath = rel === '' ? name.toString('latin1') : `${rel}/${name.toString('latin1')}`;
      const stat = lstatSync(path);
      const base = { mode: stat.mode & 0o7777, uid: stat.uid, gid: stat.gid };
      inodes.set(relPath, stat.ino);
      if (stat.isDirectory()) {
        tree.set(relPath, { type: 'directory', ...base });
        await walk(path, relPath);
      } else if (stat.isFile()) {
        blocks.set(relPath, stat.blocks);
        tree.set(relPath, { type: 'file', ...base, size: stat.size, content: digestFile(path), mtime: Math.floor(stat.mtimeMs / 1000) });
      } else if (stat.isSymbolicLink()) {
        tree.set(relPath, { type: 'symlink', uid: stat.uid, gid: stat.gid, target: readlinkSync(path, { encoding: 'buffer' }).toString('latin1') });
      } else if (stat.isCharacterDevice() || stat.isBlockDevice()) {
        tree.set(relPath, { type: stat.isCharacterDevice() ? 'character-device' : 'block-device', ...base, rdev: stat.rdev });
      } else if (stat.isFIFO()) {
        tree.set(relPath, { type: 'fifo', ...base });
      }
    }
  };
  await walk(l1(root), '');
  return { tree, inodes, blocks };
}

interface Expectations {
  /** Whether the tool restores owners (root) or leaves the extracting user's. */
  owners: number | 'kept';
  /** Paths the tool is not asked to extract (devices, for an unprivileged user). */
  without?: string[];
  /** busybox knows no sparse files: it extracts GNU's fallback instead. */
  sparseFallback?: boolean;
}

const SPARSE_DIGEST = sparseDigest();

async function expectTree(root: string, what: Expectations): Promise<void> {
  const expected = expectedTree();
  for (const path of what.without ?? []) expected.delete(path);
  if (what.sparseFallback === true) {
    const sparse = expected.get('root/sparse')!;
    expected.delete('root/sparse');
    const stored = encodeHeader(tree().at(-1)!.header);
    const map = stored.subarray(stored.length - 512);
    const content = Buffer.concat([map, ...sparseData]);
    expected.set('root/GNUSparseFile.0', { type: 'directory' });
    expected.set('root/GNUSparseFile.0/sparse', { ...sparse, size: content.length, content: digestOf(content) });
  }
  const owners = what.owners;
  if (owners !== 'kept') {
    for (const node of expected.values()) if (node.uid !== undefined) Object.assign(node, { uid: owners, gid: owners });
  }
  const { tree: actual, inodes, blocks } = await readTree(root);
  const compared = new Map<string, Node>();
  for (const [path, node] of actual) {
    const want = expected.get(path);
    const shown: Node = { ...node };
    if (want?.mode === undefined) delete shown.mode;
    if (want === undefined || want.uid === undefined) {
      delete shown.uid;
      delete shown.gid;
    }
    if (node.type === 'directory') delete shown.mtime;
    compared.set(path, shown);
  }
  expect(new Map([...compared].sort())).toEqual(new Map([...expected].sort()));
  expect(inodes.get('root/hard')).toBe(inodes.get(latin1Short.toString('latin1')));
  expect(inodes.get('root/hard-long')).toBe(inodes.get(latin1Long.toString('latin1')));
  if (what.sparseFallback !== true) {
    // Holes stay holes: a few data blocks allocated for a gigabyte.
    expect(blocks.get('root/sparse')! * 512).toBeLessThan(4 * 1024 * 1024);
  }
}

function xattrsOf(path: string): Record<string, string> {
  const out = execFileSync('getfattr', ['-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', path]).toString();
  const attrs: Record<string, string> = {};
  for (const line of out.split('\n')) {
    const match = /^([^#=][^=]*)=0x([0-9a-f]*)$/.exec(line);
    if (match !== null) attrs[match[1]!] = match[2]!;
  }
  return attrs;
}

const CAP_XATTRS = { 'security.capability': hex(capability), 'user.note': hex(Buffer.from('a note')) };
const LATIN_XATTRS = { 'user.latin': hex(l1('\xe9t\xe9')) };

function expectXattrs(root: string): void {
  expect(xattrsOf(join(root, 'root/cap'))).toEqual(CAP_XATTRS);
  // Its hardlink, whose ASCII name a command line can carry (Node passes arguments as UTF-8).
  expect(xattrsOf(join(root, 'root/hard-long'))).toEqual(LATIN_XATTRS);
  expect(xattrsOf(join(root, 'root/hard'))).toEqual({ 'user.short': hex(Buffer.from('s')) });
}

/** Runs a tool; its stderr must be empty and its exit status 0. */
function run(command: string, args: string[], options: { cwd?: string; input?: Buffer } = {}): string {
  const result = spawnSync(command, args, {
    cwd: options.cwd,
    input: options.input,
    env: { ...process.env, LC_ALL: 'C.UTF-8' },
    maxBuffer: 64 * 1024 * 1024,
  });
  expect({ command, status: result.status, stderr: result.stderr.toString('latin1') }).toEqual({ command, status: 0, stderr: '' });
  return result.stdout.toString('latin1');
}

let tarPath: string;
let count = 0;
function outDir(): string {
  const dir = join(work, `out${count++}`);
  mkdirSync(dir);
  return dir;
}

beforeAll(() => {
  tarPath = join(work, 'tree.tar');
  writeFileSync(tarPath, archive(tree()));
});

// ---------------------------------------------------------------------------------------------

describe('our output, extracted by other tools', () => {
  it('is extracted by GNU tar as root with every name, owner, mode, link, device, xattr and hole', async () => {
    const out = outDir();
    run('/usr/bin/tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-xpf', tarPath, '-C', out]);
    await expectTree(out, { owners: 'kept' });
    expectXattrs(out);
  });

  it('is extracted by GNU tar as an unprivileged user, every name, mode, link and hole intact', async () => {
    const out = outDir();
    chownSync(out, 65534, 65534);
    run('setpriv', [
      '--reuid=65534',
      '--regid=65534',
      '--clear-groups',
      '/usr/bin/tar',
      '-xpf',
      tarPath,
      '-C',
      out,
      // Only root may create device nodes.
      '--exclude=root/null',
      '--exclude=root/loop9',
    ]);
    await expectTree(out, { owners: 65534, without: ['root/null', 'root/loop9'] });
  });

  it('is extracted by bsdtar with every name, owner, mode, link, device, xattr and hole', async () => {
    const out = outDir();
    run('/usr/bin/bsdtar', ['--xattrs', '--numeric-owner', '-xpf', tarPath, '-C', out]);
    await expectTree(out, { owners: 'kept' });
    expectXattrs(out);
  });

  it('is extracted by busybox with every name, owner (base-256), mode, link and device; a sparse file as GNU fallback', async () => {
    const out = outDir();
    run('busybox', ['tar', '--numeric-owner', '-xf', tarPath, '-C', out]);
    await expectTree(out, { owners: 'kept', sparseFallback: true });
  });

  it("is extracted by Python's tarfile with every name, owner, mode, link, device and hole", async () => {
    const out = outDir();
    const script = [
      'import sys, tarfile',
      'with tarfile.open(sys.argv[1]) as t:',
      "    t.extractall(sys.argv[2], numeric_owner=True, filter='fully_trusted')",
    ].join('\n');
    run('python3', ['-W', 'error', '-c', script, tarPath, out]);
    await expectTree(out, { owners: 'kept' });
  });

  it('is packed by tar2sqfs and extracted by unsquashfs with every name, owner, mode, link, device, xattr and hole', async () => {
    const out = outDir();
    const image = join(out, 'tree.sqfs');
    run('tar2sqfs', ['-q', '-c', 'gzip', image], { input: archive(tree()) });
    const listing = run('unsquashfs', ['-lln', image]);
    expect(listing).toContain('root/big-ids');
    expect(listing).toMatch(/-rw-r--r-- 3000000\/3000001 +16 /);
    run('unsquashfs', ['-q', '-n', '-d', join(out, 'x'), image]);
    await expectTree(join(out, 'x'), { owners: 'kept' });
    expectXattrs(join(out, 'x'));
  });

  it("is read by Go's archive/tar with every name, owner, size, link target, device, xattr and byte", async () => {
    const dir = outDir();
    writeFileSync(join(dir, 'main.go'), GO_READER);
    run('go', ['build', '-o', join(dir, 'reader'), join(dir, 'main.go')]);
    const lines = run(join(dir, 'reader'), [tarPath]).trim().split('\n');
    const seen = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    const expected = tree().map(({ header: h, stored }) => ({
      name: hex(Buffer.concat([h.name, l1(h.type === 'directory' ? '/' : '')])),
      type: { file: '0', link: '1', symlink: '2', 'character-device': '3', 'block-device': '4', directory: '5', fifo: '6' }[h.type],
      mode: h.mode,
      uid: h.uid,
      gid: h.gid,
      size: h.type === 'file' ? h.size : 0,
      content: h.sparse !== undefined ? SPARSE_DIGEST : digestOf(stored ?? Buffer.alloc(0)),
      link: hex(h.linkname),
      major: h.devmajor,
      minor: h.devminor,
      uname: hex(h.uname),
      gname: hex(h.gname),
      mtime: h.mtime,
      xattrs: Object.fromEntries(h.pax.map(([k, v]) => [Buffer.from(k).toString('latin1').replace('SCHILY.xattr.', ''), hex(v)])),
    }));
    expect(seen).toEqual(expected);
  });
});

// Reads a tar on stdin and prints one JSON line per entry; any error goes to stderr.
const GO_READER = `package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func main() {
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tr := tar.NewReader(f)
	out := json.NewEncoder(os.Stdout)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		sum := sha256.New()
		chunk := make([]byte, 64*1024)
		var at uint64
		offset := make([]byte, 8)
		for {
			n, err := io.ReadFull(tr, chunk)
			if n > 0 && !allZero(chunk[:n]) {
				binary.BigEndian.PutUint64(offset, at)
				sum.Write(offset)
				sum.Write(chunk[:n])
			}
			at += uint64(n)
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		binary.BigEndian.PutUint64(offset, at)
		sum.Write(offset)
		xattrs := map[string]string{}
		for k, v := range h.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") {
				xattrs[strings.TrimPrefix(k, "SCHILY.xattr.")] = hex.EncodeToString([]byte(v))
			}
		}
		out.Encode(map[string]any{
			"name": hex.EncodeToString([]byte(h.Name)), "type": string(rune(h.Typeflag)), "mode": h.Mode,
			"uid": h.Uid, "gid": h.Gid, "size": h.Size, "content": hex.EncodeToString(sum.Sum(nil)),
			"link": hex.EncodeToString([]byte(h.Linkname)), "major": h.Devmajor, "minor": h.Devminor,
			"uname": hex.EncodeToString([]byte(h.Uname)), "gname": hex.EncodeToString([]byte(h.Gname)),
			"mtime": h.ModTime.Unix(), "xattrs": xattrs,
		})
	}
}
`;

describe('numbers beyond ustar, streamed', () => {
  it('lets busybox read an 8 GiB size and the entry after it (base-256 in the ustar field)', async () => {
    const size = 8 * 1024 ** 3;
    async function* stream(): AsyncGenerator<Buffer> {
      yield encodeHeader(header({ name: l1('big'), size, uid: 3_000_000 }));
      const zeros = Buffer.alloc(1024 * 1024);
      for (let left = size; left > 0; left -= zeros.length) yield zeros;
      yield encodeHeader(header({ name: l1('after'), size: 5 }));
      yield Buffer.from('after');
      yield paddingFor(5);
      yield END_OF_ARCHIVE;
    }
    const child = spawn('busybox', ['tar', '-tv'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('latin1')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('latin1')));
    const exit = new Promise<number | null>((resolve) => child.on('close', resolve));
    await pipeline(Readable.from(stream()), child.stdin);
    expect({ status: await exit, stderr }).toEqual({ status: 0, stderr: '' });
    expect(stdout).toMatch(/^-rw-r--r-- 3000000\/0 +8589934592 .* big\n/);
    expect(stdout).toMatch(/\n-rw-r--r-- 0\/0 +5 .* after\n$/);
  }, 60_000);
});

describe('our own reader', () => {
  it('reads the whole tree back, the sparse file expanded to the same bytes', async () => {
    const data = archive(tree());
    const seen: Array<[string, string, number]> = [];
    async function* chunks(): AsyncGenerator<Buffer> {
      for (let i = 0; i < data.length; i += 65536) yield data.subarray(i, i + 65536);
    }
    for await (const entry of readTar(chunks())) {
      const digest = new ContentDigest();
      for await (const piece of entry.body()) digest.update(piece);
      seen.push([entry.header.name.toString('latin1'), digest.digest(), entry.header.size]);
    }
    expect(seen).toEqual(
      tree().map(({ header: h, stored }) => [
        h.name.toString('latin1'),
        h.sparse !== undefined ? SPARSE_DIGEST : digestOf(h.type === 'file' ? stored! : Buffer.alloc(0)),
        h.type === 'file' ? h.size : 0,
      ]),
    );
  });
});
