/**
 * A pass-through that hashes and counts the bytes flowing by and, at EOF, fails unless
 * they match the descriptor (go-containerregistry's `verify.ReadCloser`). Too many bytes
 * fail at once, without waiting for EOF: a registry that streams forever must not win.
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { DigestMismatchError, ManifestError, SizeMismatchError } from '../errors.js';

export interface DigestVerifierOptions {
  /** `algorithm:hex` (sha256, sha384 or sha512). */
  digest: string;
  /** Expected byte count; unchecked when absent. */
  size?: number;
  /** What the bytes are, for error messages (default: the digest). */
  what?: string;
  /**
   * A stage upstream that already hashes exactly the bytes this verifier sees (e.g. the
   * resumable blob, which keeps a running sha256 for its restart check). When its algorithm
   * is the digest's, the verifier takes its digest at EOF instead of hashing every byte
   * again; sizes are still counted and checked here.
   */
  upstream?: { readonly hashAlgorithm: string; digestSoFar(): string };
}

const ALGORITHMS = new Set(['sha256', 'sha384', 'sha512']);

export class DigestVerifier extends Transform {
  readonly expectedDigest: string;
  readonly expectedSize: number | undefined;
  private readonly hash: Hash | undefined;
  private readonly upstream: DigestVerifierOptions['upstream'];
  private readonly algorithm: string;
  private readonly what: string;
  private count = 0;
  private actual: string | undefined;

  constructor(options: DigestVerifierOptions) {
    super();
    const colon = options.digest.indexOf(':');
    this.algorithm = colon === -1 ? '' : options.digest.slice(0, colon);
    if (!ALGORITHMS.has(this.algorithm)) {
      throw new ManifestError(`cannot verify the digest "${options.digest}"`);
    }
    this.expectedDigest = options.digest;
    this.expectedSize = options.size;
    this.what = options.what ?? options.digest;
    this.upstream = options.upstream?.hashAlgorithm === this.algorithm ? options.upstream : undefined;
    this.hash = this.upstream ? undefined : createHash(this.algorithm);
  }

  /** Bytes seen so far. */
  get bytes(): number {
    return this.count;
  }

  /** The digest of what passed, once the stream has ended. */
  get actualDigest(): string | undefined {
    return this.actual;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.count += chunk.length;
    if (this.expectedSize !== undefined && this.count > this.expectedSize) {
      callback(new SizeMismatchError(this.what, this.expectedSize, this.count));
      return;
    }
    this.hash?.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    if (this.expectedSize !== undefined && this.count !== this.expectedSize) {
      callback(new SizeMismatchError(this.what, this.expectedSize, this.count));
      return;
    }
    this.actual = `${this.algorithm}:${this.upstream ? this.upstream.digestSoFar() : (this.hash as Hash).digest('hex')}`;
    if (this.actual !== this.expectedDigest) {
      callback(new DigestMismatchError(this.what, this.expectedDigest, this.actual, this.count));
      return;
    }
    callback();
  }
}

/**
 * A {@link DigestVerifier} for `descriptor`; pipe the bytes through it. It passes them on
 * unchanged and fails at EOF (a {@link DigestMismatchError} or {@link SizeMismatchError})
 * unless they hashed to the digest and had the size.
 *
 * @example
 * ```ts
 * await pipeline(createReadStream(blobFile), verifyDigestStream({ digest, size, what: 'layer 0' }), sink);
 * ```
 */
export function verifyDigestStream(options: DigestVerifierOptions): DigestVerifier {
  return new DigestVerifier(options);
}
