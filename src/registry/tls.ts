/**
 * TLS trust for registry connections: extra CA certificates (`--ca-file`, on top of the
 * trusted roots, not instead of them) and `--insecure`, and telling a certificate failure
 * apart from a network failure: a certificate will not become trusted by trying again, so
 * it is reported at once, naming the problem and the way out.
 */
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { UsageError } from '../errors.js';

export interface RegistryTlsOptions {
  /** PEM files of CA certificates to trust besides the default roots (`--ca-file`). */
  caFiles?: readonly string[];
  /** Do not verify registry certificates at all (`--insecure`). Man-in-the-middle-able. */
  insecure?: boolean;
}

/** What undici's `connect` / `requestTls` options take from us. */
export interface TlsConnectOptions {
  ca?: string[];
  rejectUnauthorized?: boolean;
}

/**
 * The TLS options for connections to registries. Passing `ca` replaces Node's default
 * store, so the bundled roots and `NODE_EXTRA_CA_CERTS` (which Node reads only at startup,
 * into that default store) are added back explicitly.
 */
export function tlsConnectOptions(options: RegistryTlsOptions, env: Readonly<Record<string, string | undefined>> = process.env): TlsConnectOptions {
  const result: TlsConnectOptions = {};
  if (options.insecure === true) result.rejectUnauthorized = false;
  const files = options.caFiles ?? [];
  if (files.length > 0) {
    const extra = env['NODE_EXTRA_CA_CERTS'];
    const ca = [...rootCertificates];
    if (extra !== undefined && extra !== '') {
      try {
        ca.push(readFileSync(extra, 'utf8'));
      } catch {
        // Node itself only warns about an unreadable NODE_EXTRA_CA_CERTS; so do we (by not failing).
      }
    }
    for (const file of files) ca.push(readCaFile(file));
    result.ca = ca;
  }
  return result;
}

function readCaFile(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new UsageError(`CA file ${file}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  if (!text.includes('-----BEGIN CERTIFICATE-----')) {
    throw new UsageError(`CA file ${file}: no PEM certificate ("-----BEGIN CERTIFICATE-----") in it`);
  }
  return text;
}

/** OpenSSL's verification failures as Node names them, with what they mean for a user. */
const CERTIFICATE_PROBLEMS = new Map<string, string>([
  ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'the certificate is not signed by a trusted CA'],
  ['UNABLE_TO_GET_ISSUER_CERT', 'the certificate is not signed by a trusted CA'],
  ['UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'the certificate is not signed by a trusted CA'],
  ['SELF_SIGNED_CERT_IN_CHAIN', 'the certificate chain ends in an untrusted self-signed CA'],
  ['DEPTH_ZERO_SELF_SIGNED_CERT', 'the certificate is self-signed and not trusted'],
  ['CERT_HAS_EXPIRED', 'the certificate has expired'],
  ['CERT_NOT_YET_VALID', 'the certificate is not valid yet'],
  ['ERR_TLS_CERT_ALTNAME_INVALID', 'the certificate is for another host name'],
  ['HOSTNAME_MISMATCH', 'the certificate is for another host name'],
  ['CERT_SIGNATURE_FAILURE', 'the certificate signature is invalid'],
  ['CERT_REVOKED', 'the certificate was revoked'],
  ['CERT_UNTRUSTED', 'the certificate is not trusted'],
  ['CERT_REJECTED', 'the certificate was rejected'],
  ['INVALID_CA', 'a CA certificate in the chain is invalid'],
  ['INVALID_PURPOSE', 'the certificate is not for TLS servers'],
]);

/** The certificate problem somewhere in `error`'s cause chain, in words, if it is one. */
export function certificateProblem(error: unknown): string | undefined {
  const seen = new Set<unknown>();
  for (let current = error; current instanceof Error && !seen.has(current); current = current.cause) {
    seen.add(current);
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') {
      const problem = CERTIFICATE_PROBLEMS.get(code);
      if (problem !== undefined) return `${problem} (${code})`;
    }
  }
  return undefined;
}

/** What to do about a certificate problem, for the end of the message. */
export const CERTIFICATE_HINT =
  'trust its CA (the caFiles option, or NODE_EXTRA_CA_CERTS), or skip verification (the insecure option)';
