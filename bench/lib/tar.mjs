// A tiny ustar writer for the bench's generated layers. Independent of the tar codec under
// test (src/streams/tar), so the bench does not measure our reader against our own writer.
// Supports what the generator emits: files, directories, symlinks, hardlinks; names up to
// 255 bytes via the ustar prefix field.

const BLOCK = 512;
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);
const ZEROS = Buffer.alloc(BLOCK);

const TYPEFLAG = { file: '0', link: '1', symlink: '2', dir: '5' };

function octal(block, offset, width, value) {
  const text = value.toString(8).padStart(width - 1, '0');
  if (text.length > width - 1) throw new Error(`tar: value ${value} does not fit ${width} bytes`);
  block.write(text, offset, width - 1, 'latin1');
  block[offset + width - 1] = 0;
}

function splitName(name) {
  if (Buffer.byteLength(name) <= 100) return { name, prefix: '' };
  for (let i = name.length - 1; i > 0; i--) {
    if (name[i] !== '/') continue;
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(rest) <= 100 && rest.length > 0) {
      return { name: rest, prefix };
    }
  }
  throw new Error(`tar: name too long for ustar: ${name}`);
}

/**
 * One ustar header block. `entry`: { path, type: 'file'|'dir'|'symlink'|'link', mode, size,
 * linkname, mtime, uid, gid }.
 */
export function header(entry) {
  const block = Buffer.alloc(BLOCK);
  const path = entry.type === 'dir' ? `${entry.path}/` : entry.path;
  const { name, prefix } = splitName(path);
  block.write(name, 0, 100, 'latin1');
  octal(block, 100, 8, entry.mode & 0o7777);
  octal(block, 108, 8, entry.uid ?? 0);
  octal(block, 116, 8, entry.gid ?? 0);
  octal(block, 124, 12, entry.type === 'file' ? entry.size : 0);
  octal(block, 136, 12, entry.mtime ?? 0);
  block.fill(0x20, 148, 156);
  block.write(TYPEFLAG[entry.type], 156, 1, 'latin1');
  if (entry.linkname) {
    if (Buffer.byteLength(entry.linkname) > 100) throw new Error(`tar: link target too long: ${entry.linkname}`);
    block.write(entry.linkname, 157, 100, 'latin1');
  }
  block.write('ustar\u000000', 257, 8, 'latin1');
  block.write(entry.uname ?? 'root', 265, 32, 'latin1');
  block.write(entry.gname ?? 'root', 297, 32, 'latin1');
  octal(block, 329, 8, 0);
  octal(block, 337, 8, 0);
  if (prefix) block.write(prefix, 345, 155, 'latin1');
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += block[i];
  const text = sum.toString(8).padStart(6, '0');
  block.write(text, 148, 6, 'latin1');
  block[154] = 0;
  block[155] = 0x20;
  return block;
}

export function padding(size) {
  return ZEROS.subarray(0, (BLOCK - (size % BLOCK)) % BLOCK);
}
