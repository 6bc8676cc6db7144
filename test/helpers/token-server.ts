/**
 * A distribution token server in the test process (the "docker registry v2 token auth"
 * spec): `GET /token?service=&scope=…` with optional Basic credentials, and the OAuth2
 * `POST /token` with `grant_type=refresh_token`. It signs ES256 JWTs whose `x5c` header
 * carries the issuer certificate, which the real registry checks against its
 * `rootcertbundle`. What each user may do is the test's `grant` function.
 */
import { randomBytes, sign } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { SigningCert } from './tls.js';

export const TOKEN_SERVICE = 'oci-rootfs-test-registry';
export const TOKEN_ISSUER = 'oci-rootfs-test-issuer';

export interface TokenRequestLog {
  method: 'GET' | 'POST';
  /** The user the request authenticated as; undefined when anonymous. */
  user: string | undefined;
  grantType: 'basic' | 'anonymous' | 'refresh_token';
  scopes: string[];
  service: string | undefined;
  clientId: string | undefined;
  status: number;
}

export interface TokenServerOptions {
  cert: SigningCert;
  /** user → password for Basic. */
  users: Record<string, string>;
  /** refresh token → user, for `grant_type=refresh_token`. */
  refreshTokens?: Record<string, string>;
  /** The actions `user` (undefined: anonymous) gets on repository `name`. */
  grant: (user: string | undefined, name: string, actions: string[]) => string[];
  /** Seconds the `exp` claim is from now (default 300); negative makes an expired token. */
  lifetime?: (requestNumber: number) => number;
}

export interface TokenServer {
  /** `http://127.0.0.1:PORT/token`. */
  realm: string;
  requests: TokenRequestLog[];
  close(): Promise<void>;
}

const b64url = (data: Buffer | string): string => Buffer.from(data).toString('base64url');

/** An ES256 JWT as distribution 2.8 checks it. */
export function signToken(cert: SigningCert, claims: Record<string, unknown>): string {
  const header = b64url(JSON.stringify({ typ: 'JWT', alg: 'ES256', x5c: [cert.x5c] }));
  const payload = b64url(JSON.stringify(claims));
  // JOSE wants r||s, not the DER that node signs by default.
  const signature = sign('sha256', Buffer.from(`${header}.${payload}`), { key: cert.keyPem, dsaEncoding: 'ieee-p1363' });
  return `${header}.${payload}.${b64url(signature)}`;
}

export async function startTokenServer(options: TokenServerOptions): Promise<TokenServer> {
  const requests: TokenRequestLog[] = [];
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://token.invalid');
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    let user: string | undefined;
    let grantType: TokenRequestLog['grantType'] = 'anonymous';
    let scopes: string[];
    let service: string | undefined;
    let clientId: string | undefined;
    let newRefresh: string | undefined;
    const fail = (status: number): void => {
      requests.push({ method: req.method === 'POST' ? 'POST' : 'GET', user, grantType, scopes, service, clientId, status });
      res.writeHead(status, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAUTHORIZED","message":"no"}]}');
    };
    if (req.method === 'POST') {
      const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      grantType = 'refresh_token';
      scopes = (form.get('scope') ?? '').split(' ').filter((s) => s !== '');
      service = form.get('service') ?? undefined;
      clientId = form.get('client_id') ?? undefined;
      const token = form.get('refresh_token') ?? '';
      user = options.refreshTokens?.[token];
      if (form.get('grant_type') !== 'refresh_token' || user === undefined || clientId === undefined) return fail(401);
      newRefresh = token; // handed back, as an OAuth2 server may (rotation would be a new one)
    } else {
      scopes = url.searchParams.getAll('scope');
      service = url.searchParams.get('service') ?? undefined;
      const authorization = req.headers.authorization;
      if (authorization !== undefined) {
        const [name = '', ...rest] = Buffer.from(authorization.replace(/^Basic /, ''), 'base64').toString('utf8').split(':');
        if (options.users[name] !== rest.join(':')) {
          user = name;
          grantType = 'basic';
          return fail(401);
        }
        user = name;
        grantType = 'basic';
      }
    }
    const number = requests.length + 1;
    const access = scopes.flatMap((scope) => {
      const [type, name, actions] = scope.split(':');
      if (type !== 'repository' || name === undefined || actions === undefined) return [];
      const granted = options.grant(user, name, actions.split(','));
      return granted.length === 0 ? [] : [{ type: 'repository', name, actions: granted }];
    });
    const now = Math.floor(Date.now() / 1000);
    const lifetime = options.lifetime?.(number) ?? 300;
    const token = signToken(options.cert, {
      iss: TOKEN_ISSUER,
      sub: user ?? '',
      aud: service ?? TOKEN_SERVICE,
      exp: now + lifetime,
      nbf: now - 600,
      iat: now - 600,
      jti: randomBytes(8).toString('hex'),
      access,
    });
    requests.push({ method: req.method === 'POST' ? 'POST' : 'GET', user, grantType, scopes, service, clientId, status: 200 });
    const body = req.method === 'POST'
      ? { access_token: token, expires_in: 300, ...(newRefresh === undefined ? {} : { refresh_token: newRefresh }) }
      : { token, expires_in: 300 };
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => res.destroy(error instanceof Error ? error : new Error(String(error))));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The registry's `auth:` section for this token server. */
export function tokenAuthConfig(realm: string, rootCertFile: string): string {
  return [
    '  token:',
    `    realm: ${realm}`,
    `    service: ${TOKEN_SERVICE}`,
    `    issuer: ${TOKEN_ISSUER}`,
    `    rootcertbundle: ${rootCertFile}`,
  ].join('\n');
}
