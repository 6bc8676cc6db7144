/**
 * A fault-injecting HTTP proxy in front of the real registry (DESIGN.md §7): an in-process
 * server on 127.0.0.1 that forwards every request and, for requests matching a rule, cuts
 * the body, stalls, resets the connection, flips a byte, answers 429/5xx/401 itself, or
 * answers a Range request with the whole blob. It logs every request and counts the body
 * bytes it served and the client sockets still open, so tests can assert on what the client
 * really did (how many tries, how far apart, what was downloaded twice, nothing left open).
 *
 * With `bearer`, it also plays a token server in front of the anonymous registry: `/v2/`
 * challenges, `/token` hands out `t1`, `t2`, …, and an `unauthorized` fault revokes every
 * token handed out so far, as a registry does when a token expires mid-pull.
 */
import { Agent, createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type Fault =
  /** Send the headers and `afterBytes` bytes of the body, then destroy the socket. */
  | { type: 'cut'; afterBytes: number }
  /**
   * Stop sending for `ms` (forever when absent): before the headers when `afterBytes` is
   * absent, else after that many body bytes.
   */
  | { type: 'stall'; afterBytes?: number; ms?: number }
  /** Reset the connection (TCP RST): before answering, or after `afterBytes` body bytes. */
  | { type: 'reset'; afterBytes?: number }
  /** Flip (xor 0xff) the body byte at `offset` of this response. */
  | { type: 'corrupt'; offset: number }
  /** Answer with this status and a registry error envelope, without asking the registry. */
  | { type: 'status'; status: number; headers?: Record<string, string> }
  /** 429 with `Retry-After` (seconds or an HTTP date) and the rate-limit headers. */
  | { type: 'rate-limit'; retryAfter?: string; limit?: string; remaining?: string }
  /** Drop the `Range` header: the registry answers 200 with the whole blob. */
  | { type: 'ignore-range' }
  /** 401 with a bearer challenge; in `bearer` mode every token handed out so far is revoked. */
  | { type: 'unauthorized' };

export interface FaultRule {
  /** Matched against the request path (query included). */
  path: RegExp;
  method?: string;
  /** Several faults apply to the same response, e.g. corrupt a byte, then cut. */
  fault: Fault | readonly Fault[];
  /** Let this many matching requests through untouched first (default 0). */
  skip?: number;
  /** Then apply the fault to this many (default 1; `Infinity` for all). */
  times?: number;
}

export interface ProxyRequest {
  method: string;
  path: string;
  range: string | undefined;
  authorization: string | undefined;
  /** Milliseconds since the proxy started, when the request arrived. */
  at: number;
  /** The status sent, or undefined when no headers were sent. */
  status: number | undefined;
  /** Body bytes sent. */
  bytes: number;
  faults: Array<Fault['type']>;
}

export interface FaultProxyOptions {
  /** `host:port` of the registry to forward to. */
  upstream: string;
  /** Play a bearer token server (tokens live `expiresIn` seconds, default 300). */
  bearer?: { expiresIn?: number };
}

export interface FaultProxy {
  /** `127.0.0.1:PORT`. */
  host: string;
  add(...rules: FaultRule[]): void;
  /** Drops the rules (the log stays). */
  clearRules(): void;
  /** Every request so far, in arrival order; with `path`, those matching it. */
  requests(path?: RegExp): ProxyRequest[];
  /** Faults injected so far. */
  readonly faultsInjected: number;
  /** Body bytes sent to clients so far (optionally for paths matching `path`). */
  bytesServed(path?: RegExp): number;
  /** Client connections open right now. */
  openSockets(): number;
  /** Resolves once no client connection is open, or rejects after `timeoutMs`. */
  waitForNoSockets(timeoutMs?: number): Promise<void>;
  /** Tokens handed out (bearer mode). */
  readonly tokensIssued: number;
  /** Forgets the log and the counters. */
  reset(): void;
  close(): Promise<void>;
}

/** Paths of the distribution API, for rules. */
export const BLOBS = /\/blobs\/sha256:/;
export const MANIFESTS = /\/manifests\//;
export const TOKEN = /^\/token/;

export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const [upstreamHost, upstreamPort] = splitHost(options.upstream);
  const upstreamAgent = new Agent({ keepAlive: true });
  const rules: Array<{ rule: FaultRule; seen: number }> = [];
  const sockets = new Set<Socket>();
  const validTokens = new Set<string>();
  let log: ProxyRequest[] = [];
  let faults = 0;
  let tokens = 0;
  const started = performance.now();

  const server = createServer((req, res) => {
    const entry: ProxyRequest = {
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      range: header(req, 'range'),
      authorization: header(req, 'authorization'),
      at: performance.now() - started,
      status: undefined,
      bytes: 0,
      faults: [],
    };
    log.push(entry);
    const picked = pickFaults(entry);
    entry.faults = picked.map((fault) => fault.type);
    if (picked.length > 0) faults++;
    handle(req, res, entry, picked);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  // A client that resets mid-request is part of the job, not a crash.
  server.on('clientError', (_error, socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const host = `127.0.0.1:${port}`;

  /** The faults of the first rule that matches and still has some to give. */
  function pickFaults(entry: ProxyRequest): readonly Fault[] {
    for (const slot of rules) {
      const { rule } = slot;
      if (rule.method !== undefined && rule.method !== entry.method) continue;
      if (!rule.path.test(entry.path)) continue;
      slot.seen++;
      const skip = rule.skip ?? 0;
      if (slot.seen > skip && slot.seen <= skip + (rule.times ?? 1)) return Array.isArray(rule.fault) ? rule.fault : [rule.fault as Fault];
    }
    return [];
  }

  const challenge = (): string => `Bearer realm="http://${host}/token",service="fault-proxy"`;

  function handle(req: IncomingMessage, res: ServerResponse, entry: ProxyRequest, faults: readonly Fault[]): void {
    // The faults that decide the answer before any body byte; the rest shape the body.
    const fault = faults.find((f) => f.type !== 'corrupt' && f.type !== 'ignore-range' && !('afterBytes' in f && f.afterBytes !== undefined));
    const send = (status: number, headers: Record<string, string>, body: string): void => {
      entry.status = status;
      entry.bytes += Buffer.byteLength(body);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...headers });
      res.end(body);
    };
    const envelope = (code: string, message: string): string => JSON.stringify({ errors: [{ code, message }] });

    switch (fault?.type) {
      case 'reset':
        if (fault.afterBytes === undefined) {
          req.socket.resetAndDestroy();
          return;
        }
        break;
      case 'stall':
        if (fault.afterBytes === undefined) {
          // Nothing at all until the stall is over; forever means until the client gives up.
          if (fault.ms !== undefined) {
            const timer = setTimeout(() => handle(req, res, entry, faults.filter((f) => f !== fault)), fault.ms);
            res.on('close', () => clearTimeout(timer));
          }
          return;
        }
        break;
      case 'status':
        send(fault.status, fault.headers ?? {}, envelope(fault.status >= 500 ? 'UNAVAILABLE' : 'ERROR', `injected ${fault.status}`));
        return;
      case 'rate-limit': {
        const headers: Record<string, string> = {};
        if (fault.retryAfter !== undefined) headers['retry-after'] = fault.retryAfter;
        if (fault.limit !== undefined) headers['ratelimit-limit'] = fault.limit;
        if (fault.remaining !== undefined) headers['ratelimit-remaining'] = fault.remaining;
        send(429, headers, envelope('TOOMANYREQUESTS', 'You have reached your pull rate limit.'));
        return;
      }
      case 'unauthorized':
        validTokens.clear();
        send(401, { 'www-authenticate': challenge() }, envelope('UNAUTHORIZED', 'token expired'));
        return;
      default:
        break;
    }

    if (options.bearer !== undefined) {
      const url = new URL(entry.path, 'http://proxy');
      if (url.pathname === '/token') {
        const token = `t${++tokens}`;
        validTokens.add(token);
        send(200, {}, JSON.stringify({ token, expires_in: options.bearer.expiresIn ?? 300 }));
        return;
      }
      const presented = /^Bearer (.+)$/.exec(entry.authorization ?? '')?.[1];
      if (presented === undefined || !validTokens.has(presented)) {
        send(401, { 'www-authenticate': challenge() }, envelope('UNAUTHORIZED', 'authentication required'));
        return;
      }
    }
    forward(req, res, entry, faults);
  }

  function forward(req: IncomingMessage, res: ServerResponse, entry: ProxyRequest, faults: readonly Fault[]): void {
    const headers = { ...req.headers };
    delete headers.host;
    delete headers.connection;
    delete headers.authorization; // the registry behind is anonymous
    if (faults.some((f) => f.type === 'ignore-range')) delete headers.range;
    const upstream = httpRequest({
      host: upstreamHost,
      port: upstreamPort,
      method: req.method,
      path: entry.path,
      headers,
      agent: upstreamAgent,
    });
    // The client went away (or we cut it): stop fetching for it.
    res.on('close', () => upstream.destroy());
    upstream.on('error', () => res.destroy());
    upstream.on('response', (answer) => {
      const outHeaders = { ...answer.headers };
      delete outHeaders.connection;
      delete outHeaders['keep-alive'];
      entry.status = answer.statusCode ?? 502;
      res.writeHead(entry.status, outHeaders);
      const corrupt = faults.find((f): f is Extract<Fault, { type: 'corrupt' }> => f.type === 'corrupt');
      const breaker = faults.find(
        (f): f is Extract<Fault, { type: 'cut' | 'reset' | 'stall' }> =>
          f.type === 'cut' || ((f.type === 'reset' || f.type === 'stall') && f.afterBytes !== undefined),
      );
      pump(answer, res, entry, corrupt?.offset, breaker);
    });
    req.pipe(upstream);
  }

  /** Copies the registry's body to the client, applying the body faults on the way. */
  function pump(
    answer: IncomingMessage,
    res: ServerResponse,
    entry: ProxyRequest,
    corruptAt: number | undefined,
    fault: Extract<Fault, { type: 'cut' | 'reset' | 'stall' }> | undefined,
  ): void {
    const limit = fault?.afterBytes;
    let sent = 0;
    let limitReached = false;
    let stalled = false;
    let broken = false;

    const write = (data: Buffer): void => {
      entry.bytes += data.length;
      sent += data.length;
      if (!res.write(data)) {
        answer.pause();
        res.once('drain', () => {
          if (!stalled && !broken) answer.resume();
        });
      }
    };
    /**
     * A cut sends what was written, then closes (FIN): the client sees a body that ends
     * short. A reset throws away whatever is still queued and sends RST.
     */
    const breakConnection = (): void => {
      broken = true;
      answer.destroy();
      const socket = res.socket;
      if (socket === null) return;
      if (fault?.type !== 'reset') {
        socket.destroySoon();
        return;
      }
      // Give what was written a moment to reach the client, or the RST throws it away
      // unread and the reset is not "in the middle of a body" after all.
      socket.write(Buffer.alloc(0), () => setTimeout(() => socket.resetAndDestroy(), 20));
    };
    const stall = (): void => {
      stalled = true;
      answer.pause();
      if (fault?.type !== 'stall' || fault.ms === undefined) return;
      const timer = setTimeout(() => {
        stalled = false;
        answer.resume();
      }, fault.ms);
      res.on('close', () => clearTimeout(timer));
    };

    if (limit === 0) {
      res.flushHeaders();
      limitReached = true;
      if (fault?.type === 'stall') stall();
      else {
        breakConnection();
        return;
      }
    }
    answer.on('data', (chunk: Buffer) => {
      if (broken) return;
      let data = chunk;
      if (corruptAt !== undefined && corruptAt >= sent && corruptAt < sent + data.length) {
        data = Buffer.from(data);
        const at = corruptAt - sent;
        data[at] = (data[at] ?? 0) ^ 0xff;
      }
      if (limit !== undefined && !limitReached && sent + data.length >= limit) {
        limitReached = true;
        const head = data.subarray(0, limit - sent);
        const tail = data.subarray(limit - sent);
        if (head.length > 0) write(head);
        if (fault?.type === 'stall') {
          stall();
          if (tail.length > 0) answer.unshift(tail);
        } else {
          breakConnection();
        }
        return;
      }
      write(data);
    });
    answer.on('end', () => {
      if (!broken) res.end();
    });
    answer.on('error', () => res.destroy());
  }

  return {
    host,
    add: (...added) => rules.push(...added.map((rule) => ({ rule, seen: 0 }))),
    clearRules: () => void rules.splice(0),
    requests: (path) => (path === undefined ? [...log] : log.filter((entry) => path.test(entry.path))),
    get faultsInjected() {
      return faults;
    },
    bytesServed: (path) => log.filter((entry) => path === undefined || path.test(entry.path)).reduce((sum, entry) => sum + entry.bytes, 0),
    openSockets: () => sockets.size,
    waitForNoSockets: async (timeoutMs = 5000) => {
      const deadline = performance.now() + timeoutMs;
      while (sockets.size > 0) {
        if (performance.now() > deadline) throw new Error(`${sockets.size} client socket(s) still open after ${timeoutMs} ms`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    },
    get tokensIssued() {
      return tokens;
    },
    reset: () => {
      log = [];
      faults = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        upstreamAgent.destroy();
        server.close(() => resolve());
      }),
  };
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function splitHost(host: string): [string, number] {
  const colon = host.lastIndexOf(':');
  return [host.slice(0, colon), Number(host.slice(colon + 1))];
}
