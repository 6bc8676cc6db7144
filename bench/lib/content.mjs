// File contents for the generated images: text-like (source code, logs, markdown, config),
// ELF-like binaries with repeated structures, and incompressible random data. Every
// function is a pure function of (rng state, size); the pools below are fixed.
import { Rng } from './prng.mjs';

const WORDS = (
  'the of and to in is for that on with as by this be are from at or an it not which have ' +
  'data file system user value error return function string list config server client request ' +
  'response buffer stream layer image registry manifest digest index table node path name type ' +
  'size time state event handler module package version build test debug info warn default ' +
  'option param result status message key map set get put post update delete create open close ' +
  'read write start stop init load save parse format encode decode hash check verify token auth ' +
  'cache queue worker thread process memory limit count offset length block chunk header body ' +
  'source target link mode owner group root local remote network socket port host address route ' +
  'service container runtime kernel device driver mount volume network policy rule filter match ' +
  'object array number boolean null undefined class interface struct enum union pointer reference ' +
  'input output transform pipeline observable subscribe emit listen signal abort retry backoff ' +
  'alpha beta gamma delta epsilon zeta theta lambda sigma omega primary secondary tertiary ' +
  'linux debian ubuntu alpine python node java golang rust ruby perl shell bash make cmake gcc ' +
  'library binary archive compress deflate inflate gzip zstd tar entry record field schema ' +
  'when then else while until after before during between within without against toward ' +
  'should could would might must shall will can may need use make take give find keep hold'
).split(' ');

const IDENT_PARTS = WORDS.filter((w) => w.length > 2);
const LEVELS = ['DEBUG', 'INFO', 'INFO', 'INFO', 'WARN', 'ERROR'];
const COMPONENTS = ['http', 'db', 'cache', 'auth', 'worker', 'scheduler', 'api', 'registry', 'fs', 'net'];

export function ident(rng) {
  const n = rng.int(1, 3);
  let s = rng.zipf(IDENT_PARTS);
  for (let i = 1; i < n; i++) {
    const w = rng.zipf(IDENT_PARTS);
    s += rng.chance(0.5) ? `_${w}` : w[0].toUpperCase() + w.slice(1);
  }
  return s;
}

export function sentence(rng, min, max) {
  const n = rng.int(min, max);
  const words = new Array(n);
  for (let i = 0; i < n; i++) words[i] = rng.zipf(WORDS);
  return words.join(' ');
}

function sourceLine(rng, depth) {
  const pad = '    '.repeat(depth);
  switch (rng.int(0, 9)) {
    case 0:
      return `${pad}// ${sentence(rng, 4, 12)}`;
    case 1:
      return `${pad}if (${ident(rng)} ${rng.pick(['==', '!=', '<', '>=', '&&'])} ${ident(rng)}) {`;
    case 2:
      return `${pad}return ${ident(rng)}(${ident(rng)}, ${rng.int(0, 4096)});`;
    case 3:
      return `${pad}const ${ident(rng)} = ${ident(rng)}.${ident(rng)}(${ident(rng)});`;
    case 4:
      return `${pad}${ident(rng)}.${ident(rng)} = "${sentence(rng, 1, 4)}";`;
    case 5:
      return `${pad}for (let i = 0; i < ${ident(rng)}.length; i++) {`;
    case 6:
      return `${pad}}`;
    case 7:
      return `${pad}throw new Error("${sentence(rng, 3, 8)}");`;
    default:
      return `${pad}${ident(rng)}(${ident(rng)}, ${ident(rng)});`;
  }
}

function logLine(rng, state) {
  state.t += rng.int(0, 3000);
  const t = state.t;
  const s = t % 60, m = Math.floor(t / 60) % 60, h = Math.floor(t / 3600) % 24;
  const two = (n) => String(n).padStart(2, '0');
  return `2024-03-${two(1 + (Math.floor(t / 86400) % 28))}T${two(h)}:${two(m)}:${two(s)}.${String(rng.int(0, 999)).padStart(3, '0')}Z ` +
    `${rng.pick(LEVELS)} [${rng.pick(COMPONENTS)}] ${sentence(rng, 3, 14)} id=${rng.u32().toString(16)} took=${rng.int(0, 900)}ms`;
}

function markdownLine(rng) {
  switch (rng.int(0, 7)) {
    case 0:
      return `${'#'.repeat(rng.int(1, 3))} ${sentence(rng, 2, 6)}`;
    case 1:
      return `- ${sentence(rng, 3, 10)}`;
    case 2:
      return '';
    case 3:
      return `\`${ident(rng)}\` ${sentence(rng, 5, 15)}`;
    default:
      return sentence(rng, 8, 20) + '.';
  }
}

function configLine(rng) {
  return rng.chance(0.1) ? `[${ident(rng)}]` : `${ident(rng)} = ${rng.chance(0.5) ? rng.int(0, 65535) : `"${ident(rng)}"`}`;
}

function styleLines(rng, style, count, state = { depth: 0, t: rng.int(0, 86400 * 20) }) {
  const lines = new Array(count);
  for (let i = 0; i < count; i++) {
    let line;
    if (style === 'source') {
      line = sourceLine(rng, state.depth);
      if (line.endsWith('{')) state.depth = Math.min(state.depth + 1, 5);
      else if (line.endsWith('}')) state.depth = Math.max(state.depth - 1, 0);
    } else if (style === 'log') line = logLine(rng, state);
    else if (style === 'config') line = configLine(rng);
    else line = markdownLine(rng);
    lines[i] = Buffer.from(line + '\n', 'latin1');
  }
  return lines;
}

/**
 * Pools of generated lines per style. A file is assembled from runs of consecutive pool
 * lines starting at random places (so it reads like a fragment of a real file, and text
 * repeats across files at a distance, as in real images), with one line in 16 generated
 * fresh so files differ. About 10x faster than generating every line.
 */
const POOL_LINES = 60000;
const pools = new Map();
function pool(style) {
  let lines = pools.get(style);
  if (lines === undefined) {
    // Independent of the caller's rng: the pool is part of the generator, not of one image.
    lines = styleLines(new Rng(`pool:${style}`), style, POOL_LINES);
    pools.set(style, lines);
  }
  return lines;
}

export const TEXT_STYLES = ['source', 'log', 'markdown', 'config'];

/** Text of exactly `size` bytes, of one style: 'source' | 'log' | 'markdown' | 'config'. */
export function textContent(rng, size, style) {
  const lines = pool(style);
  const out = Buffer.allocUnsafe(size);
  const state = { depth: 0, t: rng.int(0, 86400 * 20) };
  let pos = 0;
  let at = rng.int(0, lines.length - 1);
  let fresh = 0;
  while (pos < size) {
    let line;
    if (++fresh === 16) {
      fresh = 0;
      line = styleLines(rng, style, 1, state)[0];
    } else {
      if (rng.chance(0.02)) at = rng.int(0, lines.length - 1);
      line = lines[at];
      at = (at + 1) % lines.length;
    }
    pos += line.copy(out, pos, 0, Math.min(line.length, size - pos));
  }
  return out;
}

// ELF-like: a fixed header, a "text" section of functions (instruction-like opcode
// sequences from a fixed dictionary, with call displacements patched in), a string table
// and a symbol table of 24-byte records. Compresses about like real binaries with gzip -6.
let OPCODES;
function opcodes() {
  if (OPCODES === undefined) {
    const rng = new Rng('pool:opcodes');
    OPCODES = [];
    for (let i = 0; i < 384; i++) {
      const len = rng.int(1, 7);
      const op = rng.bytes(len);
      // Common prefixes, as in x86-64 (REX.W, mov).
      if (i % 3 === 0) op[0] = 0x48;
      if (i % 5 === 0 && len > 1) op[1] = 0x8b;
      OPCODES.push({ op, imm: rng.chance(0.25) ? 4 : rng.chance(0.2) ? 1 : 0 });
    }
  }
  return OPCODES;
}

let FUNCTIONS;
let SYMBOLS;
function functions() {
  if (FUNCTIONS === undefined) {
    const rng = new Rng('pool:elf');
    const ops = opcodes();
    FUNCTIONS = [];
    for (let f = 0; f < 6000; f++) {
      const length = rng.logInt(24, 3000);
      const buf = Buffer.alloc(length);
      let pos = Buffer.from([0x55, 0x48, 0x89, 0xe5]).copy(buf, 0, 0, Math.min(4, length));
      while (pos < length) {
        const { op, imm } = rng.zipf(ops);
        pos += op.copy(buf, pos, 0, Math.min(op.length, length - pos));
        if (imm === 4 && pos + 4 <= length) {
          buf.writeUInt32LE(rng.chance(0.7) ? rng.int(0, 255) : rng.u32(), pos);
          pos += 4;
        } else if (imm === 1 && pos < length) buf[pos++] = rng.int(0, 255);
      }
      FUNCTIONS.push(buf);
    }
    SYMBOLS = [];
    for (let i = 0; i < 20000; i++) {
      SYMBOLS.push(Buffer.from(`${ident(rng)}${rng.chance(0.3) ? '@GLIBC_2.' + rng.int(2, 38) : ''}\0`, 'latin1'));
    }
  }
  return FUNCTIONS;
}

const ELF_HEADER = Buffer.from('7f454c4602010100000000000000000003003e0001000000' + '0'.repeat(80), 'hex');

export function elfContent(rng, size) {
  const buf = Buffer.alloc(size);
  ELF_HEADER.copy(buf, 0, 0, Math.min(ELF_HEADER.length, size));
  let pos = Math.min(64, size);
  const fns = functions();
  const textEnd = Math.floor(size * 0.7);
  const strEnd = Math.floor(size * 0.85);
  while (pos < textEnd) {
    const fn = fns[rng.int(0, fns.length - 1)];
    const start = pos;
    pos += fn.copy(buf, pos, 0, Math.min(fn.length, textEnd - pos));
    for (let k = Math.floor(fn.length / 128); k > 0; k--) {
      const at = start + rng.int(0, fn.length - 4);
      if (at + 4 <= pos) buf.writeUInt32LE(rng.u32(), at);
    }
    const aligned = Math.min((pos + 15) & ~15, textEnd);
    buf.fill(0xcc, pos, aligned);
    pos = aligned;
  }
  while (pos < strEnd) {
    const s = rng.zipf(SYMBOLS);
    pos += s.copy(buf, pos, 0, Math.min(s.length, strEnd - pos));
  }
  let name = 1;
  let value = 0x401000;
  const r = rng.u32();
  for (let i = 0; pos + 24 <= size; i++) {
    buf.writeUInt32LE(name, pos);
    buf[pos + 4] = [0x12, 0x11, 0x22, 0x02][(r >>> (i & 15)) & 3];
    buf.writeUInt16LE(14, pos + 6);
    buf.writeUInt32LE(value >>> 0, pos + 8);
    buf.writeUInt32LE(Math.imul(i, 2654435761) & 0xfff, pos + 16);
    name += 6 + ((Math.imul(i, 40503) ^ r) & 31);
    value += 16 + ((Math.imul(i, 1103515245) ^ r) & 1023);
    pos += 24;
  }
  return buf;
}

export function randomContent(rng, size) {
  return rng.bytes(size);
}
