/**
 * What Node's fs cannot do: set extended attributes (binary names and values, on the link
 * itself), create device nodes and fifos. Our own addon (native/oci_fs.c, built at install
 * wherever a C compiler is) does these as direct syscalls. Without it, one `python3`
 * process, started on first use and kept for the whole unpack, does them through its `os`
 * module (lsetxattr, mknod, mkfifo); requests and answers are length-framed bytes on its
 * stdin/stdout, so paths, names and values that are not UTF-8 pass unchanged.
 *
 * Why python3 as the fallback: `setfattr`/`mknod` per call cost a process each and take
 * argv, which Node can only pass as UTF-8. Python 3 is on nearly every Linux system that
 * builds root filesystems, and most images need it for a handful of entries at most (file
 * capabilities, `/dev` nodes), so a round trip per request is cheap.
 *
 * Every path given here is one the disk writer has just created in a directory that only it
 * can enter (the 0700 partial directory), with every parent checked to be a real directory.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { nativeDisabled } from '../native-addon.js';
import { loadNativeFs, type NativeFsBinding } from './native-fs.js';

const OP_SETXATTR = 1;
const OP_MKNOD = 2;
const OP_MKFIFO = 3;
const OP_REMOVEXATTR = 4;

/**
 * The Python side: a loop that reads one framed request, does it, answers the errno (0 for
 * success). `-I` isolates it from the user's environment and site packages.
 */
const SCRIPT = `
import os, struct, sys
os.umask(0)
r = sys.stdin.buffer
w = sys.stdout.buffer
def take(n):
    data = r.read(n)
    if len(data) != n:
        sys.exit(0)
    return data
while True:
    (n,) = struct.unpack('<I', take(4))
    msg = take(n)
    op = msg[0]
    fields = []
    i = 1
    while i < len(msg):
        (size,) = struct.unpack_from('<I', msg, i)
        i += 4
        fields.append(msg[i:i + size])
        i += size
    try:
        if op == ${OP_SETXATTR}:
            os.setxattr(fields[0], fields[1], fields[2], follow_symlinks=False)
        elif op == ${OP_MKNOD}:
            os.mknod(fields[0], int(fields[1]), os.makedev(int(fields[2]), int(fields[3])))
        elif op == ${OP_MKFIFO}:
            os.mkfifo(fields[0], int(fields[1]))
        elif op == ${OP_REMOVEXATTR}:
            os.removexattr(fields[0], fields[1], follow_symlinks=False)
        err = 0
    except OSError as e:
        err = e.errno or 5
    w.write(struct.pack('<I', err))
    w.flush()
`;

/** A failed request: `code` is the errno name (`EPERM`, `ENOTSUP`, ...). */
export class SpecialFileError extends Error {
  constructor(
    readonly code: string,
    readonly errno: number,
    operation: string,
  ) {
    super(`${operation}: ${code}`);
    this.name = 'SpecialFileError';
  }
}

const ERRNO_NAMES = new Map<number, string>(
  Object.entries(osConstants.errno).map(([name, value]) => [value, name] as [number, string]),
);

type Helper = ChildProcessByStdio<Writable, Readable, null>;

export class SpecialFiles {
  #child: Helper | undefined;
  #failure: Error | undefined;
  #pending: Array<{ resolve: (errno: number) => void; reject: (error: Error) => void }> = [];
  #answers: Buffer = Buffer.alloc(0);
  readonly #python: string;
  readonly #native: NativeFsBinding | undefined;

  /**
   * `native`: the addon to use, `null` for the python3 helper only; by default the addon
   * when it loads ({@link loadNativeFs}).
   */
  constructor(options: { python?: string; native?: NativeFsBinding | null } = {}) {
    this.#python = options.python ?? 'python3';
    this.#native = options.native === undefined ? loadNativeFs() : (options.native ?? undefined);
  }

  /** Which engine does the work: `native` (the addon) or `python3` (the helper process). */
  get engine(): 'native' | 'python3' {
    return this.#native === undefined ? 'python3' : 'native';
  }

  /** lsetxattr(2): never follows a symlink at `path`. */
  async setXattr(path: Buffer, name: Buffer, value: Buffer): Promise<void> {
    const native = this.#native;
    if (native !== undefined) return nativeCall(() => native.lsetxattr(path, name, value), () => `setxattr ${name.toString('latin1')}`);
    await this.#call(OP_SETXATTR, [path, name, value], () => `setxattr ${name.toString('latin1')}`);
  }

  /** lremovexattr(2). */
  async removeXattr(path: Buffer, name: Buffer): Promise<void> {
    const native = this.#native;
    if (native !== undefined) return nativeCall(() => native.lremovexattr(path, name), () => `removexattr ${name.toString('latin1')}`);
    await this.#call(OP_REMOVEXATTR, [path, name], () => `removexattr ${name.toString('latin1')}`);
  }

  /** mknod(2) with `mode` holding the file type bits (S_IFCHR or S_IFBLK) and permissions. */
  async mknod(path: Buffer, mode: number, major: number, minor: number): Promise<void> {
    const native = this.#native;
    if (native !== undefined) return nativeCall(() => native.mknod(path, mode, major, minor), () => 'mknod');
    await this.#call(OP_MKNOD, [path, text(mode), text(major), text(minor)], () => 'mknod');
  }

  async mkfifo(path: Buffer, mode: number): Promise<void> {
    const native = this.#native;
    if (native !== undefined) return nativeCall(() => native.mkfifo(path, mode), () => 'mkfifo');
    await this.#call(OP_MKFIFO, [path, text(mode)], () => 'mkfifo');
  }

  /** Ends the helper process, if one was started. */
  close(): void {
    const child = this.#child;
    this.#child = undefined;
    if (child === undefined) return;
    child.stdin.end();
    // A helper stuck in a syscall must not keep the process alive.
    child.kill();
  }

  async #call(op: number, fields: Buffer[], describe: () => string): Promise<void> {
    const child = this.#start();
    const frame = Buffer.alloc(5 + fields.reduce((sum, field) => sum + 4 + field.length, 0));
    frame.writeUInt32LE(frame.length - 4, 0);
    frame[4] = op;
    let at = 5;
    for (const field of fields) {
      frame.writeUInt32LE(field.length, at);
      field.copy(frame, at + 4);
      at += 4 + field.length;
    }
    const answer = new Promise<number>((resolve, reject) => this.#pending.push({ resolve, reject }));
    child.stdin.write(frame);
    const errno = await answer;
    if (errno !== 0) throw new SpecialFileError(ERRNO_NAMES.get(errno) ?? `errno ${errno}`, errno, describe());
  }

  #start(): Helper {
    if (this.#failure !== undefined) throw this.#failure;
    if (this.#child !== undefined) return this.#child;
    const child = spawn(this.#python, ['-I', '-c', SCRIPT], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.#child = child;
    const fail = (error: Error): void => {
      this.#failure = error;
      for (const waiter of this.#pending.splice(0)) waiter.reject(error);
    };
    child.on('error', (error: NodeJS.ErrnoException) => {
      fail(
        error.code === 'ENOENT'
          ? new Error(
              `${this.#python} is needed to set extended attributes and create device nodes and fifos, and was not found: ` +
                `install python3, or build oci-rootfs's native addon with a C compiler (\`node native/install.mjs\` in the package)` +
                (nativeDisabled() ? ', and leave OCI_ROOTFS_NATIVE unset' : ''),
              { cause: error },
            )
          : error,
      );
    });
    child.on('exit', (code, signal) => {
      if (this.#child === child) fail(new Error(`the ${this.#python} helper exited (${signal ?? `status ${code}`})`));
    });
    child.stdin.on('error', () => {});
    child.stdout.on('data', (chunk: Buffer) => {
      this.#answers = this.#answers.length === 0 ? chunk : Buffer.concat([this.#answers, chunk]);
      while (this.#answers.length >= 4) {
        const errno = this.#answers.readUInt32LE(0);
        this.#answers = this.#answers.subarray(4);
        this.#pending.shift()?.resolve(errno);
      }
    });
    return child;
  }
}

/** One synchronous addon call; its errno error as a {@link SpecialFileError}, like the helper's. */
function nativeCall(call: () => void, describe: () => string): Promise<void> {
  try {
    call();
    return Promise.resolve();
  } catch (error) {
    const { code, errno } = error as NodeJS.ErrnoException;
    if (typeof code !== 'string' || typeof errno !== 'number') return Promise.reject(error as Error);
    return Promise.reject(new SpecialFileError(code, Math.abs(errno), describe()));
  }
}

function text(value: number): Buffer {
  return Buffer.from(String(value), 'latin1');
}
