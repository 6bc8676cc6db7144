/**
 * One error base with a stable `code`, one subclass per failure. The CLI maps
 * `exitCode` straight to the process exit status (DESIGN.md §6).
 */

/** Exit codes of the CLI, one per failure family. */
export const ExitCode = {
  ok: 0,
  other: 1,
  usage: 2,
  notFound: 3,
  auth: 4,
  rateLimited: 5,
  network: 6,
  integrity: 7,
  unsafe: 8,
  interrupted: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export type ErrorCode =
  | 'ERR_OCI_ROOTFS'
  | 'ERR_USAGE'
  | 'ERR_INVALID_REFERENCE'
  | 'ERR_AUTH'
  | 'ERR_REGISTRY'
  | 'ERR_NOT_FOUND'
  | 'ERR_MANIFEST'
  | 'ERR_PLATFORM_NOT_FOUND'
  | 'ERR_DIGEST_MISMATCH'
  | 'ERR_SIZE_MISMATCH'
  | 'ERR_UNSAFE_ENTRY'
  | 'ERR_MALFORMED_ARCHIVE'
  | 'ERR_HARDLINK_TARGET'
  | 'ERR_RATE_LIMITED'
  | 'ERR_NETWORK'
  | 'ERR_ABORTED'
  | 'ERR_ENGINE_UNAVAILABLE';

export interface OciRootfsErrorOptions {
  cause?: unknown;
}

export class OciRootfsError extends Error {
  readonly code: ErrorCode = 'ERR_OCI_ROOTFS';
  readonly exitCode: ExitCode = ExitCode.other;

  constructor(message: string, options?: OciRootfsErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
  }
}

/** Bad command-line usage or option values. */
export class UsageError extends OciRootfsError {
  override readonly code = 'ERR_USAGE';
  override readonly exitCode = ExitCode.usage;
}

/** An image reference that does not follow the distribution grammar. */
export class InvalidReferenceError extends OciRootfsError {
  override readonly code = 'ERR_INVALID_REFERENCE';
  override readonly exitCode = ExitCode.usage;
  constructor(
    readonly reference: string,
    reason: string,
  ) {
    super(`invalid image reference "${reference}": ${reason}`);
  }
}

/** Credentials missing, refused, or a token that could not be had. */
export class AuthError extends OciRootfsError {
  override readonly code = 'ERR_AUTH';
  override readonly exitCode = ExitCode.auth;
}

/** One entry of the registry's error envelope (`{"errors":[{code,message,detail}]}`). */
export interface RegistryErrorDetail {
  code: string;
  message: string;
  detail?: unknown;
}

export interface RegistryErrorInit {
  status: number;
  method: string;
  url: string;
  errors?: RegistryErrorDetail[];
  retryable?: boolean;
  cause?: unknown;
}

/** A registry answered with an unexpected HTTP status. */
export class RegistryError extends OciRootfsError {
  override readonly code: ErrorCode = 'ERR_REGISTRY';
  override readonly exitCode: ExitCode = ExitCode.other;
  readonly status: number;
  readonly method: string;
  readonly url: string;
  readonly errors: RegistryErrorDetail[];
  readonly retryable: boolean;

  constructor(message: string, init: RegistryErrorInit) {
    super(message, { cause: init.cause });
    this.status = init.status;
    this.method = init.method;
    this.url = init.url;
    this.errors = init.errors ?? [];
    this.retryable = init.retryable ?? false;
  }
}

export interface NotFoundErrorInit {
  /** The HTTP answer, when a server said so. */
  status?: number;
  method?: string;
  url?: string;
  errors?: RegistryErrorDetail[];
  /** The file that was looked for, when a local source (an OCI layout, an archive) lacks it. */
  path?: string;
  cause?: unknown;
}

/**
 * The image, tag, or blob does not exist: a registry answered 404 (MANIFEST_UNKNOWN,
 * NAME_UNKNOWN), or a local source does not hold it. Only the former has an HTTP status.
 */
export class NotFoundError extends OciRootfsError {
  override readonly code = 'ERR_NOT_FOUND';
  override readonly exitCode = ExitCode.notFound;
  readonly status: number | undefined;
  readonly method: string | undefined;
  readonly url: string | undefined;
  readonly errors: RegistryErrorDetail[];
  readonly path: string | undefined;

  constructor(message: string, init: NotFoundErrorInit = {}) {
    super(message, { cause: init.cause });
    this.status = init.status;
    this.method = init.method;
    this.url = init.url;
    this.errors = init.errors ?? [];
    this.path = init.path;
  }
}

/** A manifest or config that cannot be understood. */
export class ManifestError extends OciRootfsError {
  override readonly code = 'ERR_MANIFEST';
  override readonly exitCode = ExitCode.unsafe;
}

/** No manifest in the index matches the requested platform. */
export class PlatformNotFoundError extends OciRootfsError {
  override readonly code = 'ERR_PLATFORM_NOT_FOUND';
  override readonly exitCode = ExitCode.notFound;
  constructor(
    readonly wanted: string,
    readonly available: string[],
  ) {
    super(
      `no manifest for platform ${wanted}; available: ${available.length > 0 ? available.join(', ') : 'none'}`,
    );
  }
}

/**
 * Bytes whose sha256 is not the one the descriptor promised. With a `reason` (e.g. a layer
 * that failed to decompress, read on to its end: "corrupted in transit…"), the message says
 * why it matters and `cause` is the failure the damaged bytes caused first.
 */
export class DigestMismatchError extends OciRootfsError {
  override readonly code = 'ERR_DIGEST_MISMATCH';
  override readonly exitCode = ExitCode.integrity;
  constructor(
    readonly what: string,
    readonly expected: string,
    readonly actual: string,
    readonly bytes: number,
    options?: OciRootfsErrorOptions & { reason?: string },
  ) {
    super(
      options?.reason === undefined
        ? `${what}: digest mismatch: expected ${expected}, got ${actual} after ${bytes} bytes`
        : `${what} does not match its digest: ${options.reason} (expected ${expected}, got ${actual} after ${bytes} bytes)`,
      options,
    );
  }
}

/** Bytes whose count is not the one the descriptor promised. */
export class SizeMismatchError extends OciRootfsError {
  override readonly code = 'ERR_SIZE_MISMATCH';
  override readonly exitCode = ExitCode.integrity;
  constructor(
    readonly what: string,
    readonly expected: number,
    readonly actual: number,
    options?: OciRootfsErrorOptions,
  ) {
    super(`${what}: size mismatch: expected ${expected} bytes, got ${actual}`, options);
  }
}

/** A tar entry that would land outside the root or is otherwise refused. */
export class UnsafeEntryError extends OciRootfsError {
  override readonly code = 'ERR_UNSAFE_ENTRY';
  override readonly exitCode = ExitCode.unsafe;
}

/** A tar or compressed stream that is truncated or malformed. */
export class MalformedArchiveError extends OciRootfsError {
  override readonly code = 'ERR_MALFORMED_ARCHIVE';
  override readonly exitCode = ExitCode.unsafe;
}

/** A hardlink whose target does not exist at that point of the layer stack. */
export class HardlinkTargetError extends OciRootfsError {
  override readonly code = 'ERR_HARDLINK_TARGET';
  override readonly exitCode = ExitCode.unsafe;
}

/** HTTP 429 that outlasted the wait we are allowed. */
export class RateLimitError extends RegistryError {
  override readonly code = 'ERR_RATE_LIMITED';
  override readonly exitCode = ExitCode.rateLimited;
  readonly retryAfterSeconds: number | undefined;
  readonly limit: string | undefined;
  readonly remaining: string | undefined;
  constructor(
    message: string,
    init: RegistryErrorInit & { retryAfterSeconds?: number; limit?: string; remaining?: string },
  ) {
    super(message, { ...init, retryable: true });
    this.retryAfterSeconds = init.retryAfterSeconds;
    this.limit = init.limit;
    this.remaining = init.remaining;
  }
}

/** The network failed after every retry. */
export class NetworkError extends OciRootfsError {
  override readonly code = 'ERR_NETWORK';
  override readonly exitCode = ExitCode.network;
}

/** The caller aborted the pull. */
export class AbortError extends OciRootfsError {
  override readonly code = 'ERR_ABORTED';
  override readonly exitCode = ExitCode.interrupted;
  constructor(options?: OciRootfsErrorOptions) {
    super('the pull was aborted', options);
  }
}

/**
 * A compression engine this runtime does not have: `--gzip-engine native` without the
 * libdeflate addon, or zstd on a Node.js without zstd in node:zlib and without zstd-napi.
 * The message names the fix.
 */
export class EngineUnavailableError extends OciRootfsError {
  override readonly code = 'ERR_ENGINE_UNAVAILABLE';
  override readonly exitCode = ExitCode.other;
}

/** Turns whatever was thrown into an error with a code and exit code. */
export function toOciRootfsError(error: unknown): OciRootfsError {
  if (error instanceof OciRootfsError) return error;
  if (error instanceof Error && error.name === 'AbortError') return new AbortError({ cause: error });
  if (error instanceof Error) return new OciRootfsError(error.message, { cause: error });
  return new OciRootfsError(String(error));
}

/** Throws the signal's reason as an {@link AbortError} when the signal is aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortError({ cause: signal.reason });
}
