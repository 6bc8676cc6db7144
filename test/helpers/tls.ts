/**
 * Certificates made with `openssl` for tests (a CA and a server certificate for 127.0.0.1
 * and localhost; a self-signed ES256 certificate for a token issuer), and the distribution
 * registry started with a config the test chooses: TLS, token auth, a storage directory
 * shared with a plain registry that tests push through (the push helper speaks plain HTTP).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { findRegistryBinary, freePort, spawnRegistry, waitUntilUp } from './registry-server.js';

export interface TestCa {
  /** The CA certificate (PEM) and its file. */
  caPem: string;
  caFile: string;
  /** The server certificate (for 127.0.0.1 and localhost) and key files. */
  certFile: string;
  keyFile: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A fresh CA and a server certificate it signed, in `dir`. */
export function makeCa(dir: string): TestCa {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=oci-rootfs test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  openssl(['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1'], dir);
  execFileSync('sh', ['-c', 'printf "subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth\\n" > server.ext'], { cwd: dir });
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', 'server.pem', '-days', '2', '-extfile', 'server.ext'], dir);
  return {
    caPem: readFileSync(join(dir, 'ca.pem'), 'utf8'),
    caFile: join(dir, 'ca.pem'),
    certFile: join(dir, 'server.pem'),
    keyFile: join(dir, 'server.key'),
  };
}

export interface SigningCert {
  certPem: string;
  certFile: string;
  keyPem: string;
  /** The certificate as DER in base64, the form a JWT `x5c` header carries. */
  x5c: string;
}

/** A self-signed P-256 certificate for signing ES256 tokens. */
export function makeSigningCert(dir: string): SigningCert {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', 'token.key', '-out', 'token.pem', '-days', '2', '-subj', '/CN=oci-rootfs token issuer'], dir);
  const certPem = readFileSync(join(dir, 'token.pem'), 'utf8');
  return {
    certPem,
    certFile: join(dir, 'token.pem'),
    keyPem: readFileSync(join(dir, 'token.key'), 'utf8'),
    x5c: certPem.replace(/-----(BEGIN|END) CERTIFICATE-----|\s/g, ''),
  };
}

export interface ConfiguredRegistry {
  /** `127.0.0.1:PORT`. */
  host: string;
  stop(): Promise<void>;
}

export interface ConfiguredRegistryOptions {
  /** The storage root; share it between registries to push through a plain one. */
  storage: string;
  tls?: { certFile: string; keyFile: string; caPem: string };
  /** YAML of the `auth:` section's body (indented two spaces). */
  auth?: string;
}

/** Starts the distribution registry with `options`; waits until `/v2/` answers. */
export async function startConfiguredRegistry(options: ConfiguredRegistryOptions): Promise<ConfiguredRegistry> {
  const binary = findRegistryBinary();
  if (binary === undefined) throw new Error('the distribution registry binary is not installed; run .ci/run');
  const dir = await mkdtemp(join(tmpdir(), 'oci-rootfs-registry-cfg-'));
  const host = `127.0.0.1:${await freePort()}`;
  const config = [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${options.storage}`,
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: ${host}`,
    '  secret: oci-rootfs-test-secret',
    ...(options.tls === undefined ? [] : ['  tls:', `    certificate: ${options.tls.certFile}`, `    key: ${options.tls.keyFile}`]),
    ...(options.auth === undefined ? [] : ['auth:', options.auth]),
  ].join('\n');
  await writeFile(join(dir, 'config.yml'), `${config}\n`);
  const { child, stop, stderr } = spawnRegistry(binary, join(dir, 'config.yml'), dir);
  const dispatcher = new Agent({ connect: options.tls === undefined ? {} : { ca: options.tls.caPem } });
  const url = `${options.tls === undefined ? 'http' : 'https'}://${host}/v2/`;
  try {
    await waitUntilUp(url, child, stderr, async (target) => {
      const response = await request(target, { dispatcher });
      await response.body.dump();
      return response.statusCode;
    });
  } catch (error) {
    await stop();
    throw error;
  } finally {
    await dispatcher.close();
  }
  return { host, stop };
}
