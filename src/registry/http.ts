/**
 * HTTP plumbing shared by the client and the authenticator: bounded body reads (a registry
 * is not trusted to send a small manifest), the distribution error envelope, and the
 * mapping from statuses and transport failures to our error classes.
 */
import { Readable } from 'node:stream';
import {
  AbortError,
  AuthError,
  NetworkError,
  NotFoundError,
  OciRootfsError,
  RateLimitError,
  RegistryError,
  type RegistryErrorDetail,
} from '../errors.js';

export type ResponseHeaders = Record<string, string | string[] | undefined>;

/** Caps on bodies we buffer whole. */
export const MAX_TOKEN_BYTES = 1024 * 1024;
export const MAX_ERROR_BYTES = 64 * 1024;

/** The first value of a header, whatever undici handed us. */
export function headerValue(headers: ResponseHeaders, name: string): string | undefined {
  const value = headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Reads `body` whole, refusing more than `maxBytes` (checked against Content-Length first,
 * then while reading, so an oversized body costs at most `maxBytes` of memory).
 */
export async function readBodyCapped(
  body: Readable,
  maxBytes: number,
  tooLarge: (size: number | undefined) => OciRootfsError,
  headers?: ResponseHeaders,
): Promise<Buffer> {
  const declared = headers === undefined ? undefined : Number(headerValue(headers, 'content-length'));
  if (declared !== undefined && Number.isFinite(declared) && declared > maxBytes) {
    discardBody(body);
    throw tooLarge(declared);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of body) {
      const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
      total += buffer.length;
      if (total > maxBytes) {
        discardBody(body);
        throw tooLarge(undefined);
      }
      chunks.push(buffer);
    }
  } catch (error) {
    throw toTransportError(error);
  }
  return Buffer.concat(chunks, total);
}

/**
 * Reads a body of up to `maxBytes` into memory and hands it back as a fresh stream, so a
 * connection that breaks mid-body fails *here*, inside the request's retry. A larger body
 * is handed on as it is (what was read, then the rest), for the caller's own cap to refuse.
 */
export async function bufferBody(body: Readable, maxBytes: number, what: string): Promise<Readable> {
  const chunks: Buffer[] = [];
  let total = 0;
  const iterator = (body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  try {
    for (;;) {
      const next = await iterator.next();
      if (next.done === true) return Readable.from(chunks);
      chunks.push(next.value);
      total += next.value.length;
      if (total > maxBytes) {
        async function* rest(): AsyncGenerator<Buffer> {
          try {
            yield* chunks;
            for (let more = await iterator.next(); more.done !== true; more = await iterator.next()) yield more.value;
          } finally {
            discardBody(body); // a reader that stops early must not leave the socket open
          }
        }
        return Readable.from(rest());
      }
    }
  } catch (error) {
    discardBody(body);
    throw toTransportError(error, what);
  }
}

/** Throws a body away without letting its destruction surface as an unhandled error. */
export function discardBody(body: Readable): void {
  body.on('error', () => undefined);
  body.destroy();
}

/** Reads what a failed response says, without ever failing itself. */
export async function readErrorBody(body: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of body) {
      const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
      const room = MAX_ERROR_BYTES - total;
      chunks.push(buffer.subarray(0, Math.max(0, room)));
      total += Math.min(buffer.length, Math.max(0, room));
      if (total >= MAX_ERROR_BYTES) break; // leaving the loop destroys the body
    }
  } catch {
    // a body that dies while we read an error is still an error response
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Parses `{"errors":[{code,message,detail}]}`; anything else gives no details. */
export function parseErrorEnvelope(text: string): RegistryErrorDetail[] {
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null) return [];
    const errors = (parsed as { errors?: unknown }).errors;
    if (!Array.isArray(errors)) return [];
    return errors.flatMap((entry: unknown): RegistryErrorDetail[] => {
      if (typeof entry !== 'object' || entry === null) return [];
      const { code, message, detail } = entry as Record<string, unknown>;
      return [
        {
          code: typeof code === 'string' ? code : 'UNKNOWN',
          message: typeof message === 'string' ? message : '',
          ...(detail === undefined ? {} : { detail }),
        },
      ];
    });
  } catch {
    return [];
  }
}

export interface FailedResponse {
  status: number;
  method: string;
  url: string;
  headers: ResponseHeaders;
  body: Readable;
  /** What was being fetched, for the message ("manifest alpine:3.20"). */
  what: string;
}

/** Turns a non-2xx response into the error it stands for (consuming its body). */
export async function responseError(response: FailedResponse): Promise<OciRootfsError> {
  const text = await readErrorBody(response.body);
  const errors = parseErrorEnvelope(text);
  const { status, method, url, headers, what } = response;
  const said = errors.length > 0 ? errors.map((e) => `${e.code}: ${e.message}`).join('; ') : text.trim().slice(0, 200);
  const suffix = said === '' ? '' : ` (${said})`;
  const init = { status, method, url, errors };
  if (status === 401 || status === 403) {
    return new AuthError(
      `${what}: ${status === 401 ? 'authentication required' : 'access denied'} by ${redactUrl(url)}` +
        `${suffix}; the repository may not exist or may need credentials`,
    );
  }
  if (status === 404) return new NotFoundError(`${what}: not found${suffix}`, init);
  if (status === 429) {
    const limit = headerValue(headers, 'ratelimit-limit');
    const remaining = headerValue(headers, 'ratelimit-remaining');
    const retryAfterSeconds = parseRetryAfter(headerValue(headers, 'retry-after'));
    const details = [
      limit === undefined ? '' : `limit ${limit}`,
      remaining === undefined ? '' : `remaining ${remaining}`,
      retryAfterSeconds === undefined ? '' : `retry after ${retryAfterSeconds}s`,
    ].filter((part) => part !== '');
    return new RateLimitError(
      `${what}: rate limited by the registry${details.length > 0 ? ` (${details.join(', ')})` : ''}${suffix}`,
      {
        ...init,
        ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
        ...(limit === undefined ? {} : { limit }),
        ...(remaining === undefined ? {} : { remaining }),
      },
    );
  }
  const retryable = status >= 500 || status === 408;
  return new RegistryError(`${what}: HTTP ${status} from ${redactUrl(url)}${suffix}`, { ...init, retryable });
}

/** `Retry-After` as seconds: delta-seconds or an HTTP date. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const date = Date.parse(value);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, Math.ceil((date - now) / 1000));
}

/** Wraps a transport-level failure: aborts stay aborts, our own errors pass through. */
export function toTransportError(error: unknown, what?: string): OciRootfsError {
  if (error instanceof OciRootfsError) return error;
  if (isAbort(error)) return new AbortError({ cause: error });
  const message = TIMEOUT_MESSAGES.get(errorCode(error)) ?? (error instanceof Error ? error.message : String(error));
  return new NetworkError(`${what === undefined ? '' : `${what}: `}${message}`, { cause: error });
}

/** undici's timeout messages ("Body Timeout Error") say little; these say what stalled. */
const TIMEOUT_MESSAGES = new Map<string, string>([
  ['UND_ERR_CONNECT_TIMEOUT', 'connect timed out'],
  ['UND_ERR_HEADERS_TIMEOUT', 'timed out waiting for the response headers'],
  ['UND_ERR_BODY_TIMEOUT', 'the body stalled: no data within the timeout'],
]);

function errorCode(error: unknown): string {
  const code = error instanceof Error ? (error as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : '';
}

function isAbort(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  return error.name === 'AbortError' || code === 'UND_ERR_ABORTED' || code === 'ABORT_ERR';
}

/** Query strings of blob redirects carry signatures: keep them out of messages. */
export function redactUrl(url: string): string {
  const question = url.indexOf('?');
  return question === -1 ? url : `${url.slice(0, question)}?…`;
}
