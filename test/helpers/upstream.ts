// A real HTTP upstream for tests, and a small HTTP client that goes through Envoy.
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

export interface HttpUpstream {
  name: string;
  port: number;
  /** How many requests this upstream has answered so far. */
  readonly requests: number;
  close(): Promise<void>;
}

export interface EchoBody {
  upstream: string;
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
}

/**
 * Answers every request with 200 and a JSON echo of it, plus `x-upstream: <name>`.
 * `/status/<code>` answers that code; `/delay/<ms>` answers after that many ms.
 */
export async function startHttpUpstream({ name, tls, failureRatio = 0, latencyMs = 0 }: { name: string; tls?: { cert: string; key: string }; failureRatio?: number; latencyMs?: number }): Promise<HttpUpstream> {
  let requests = 0;
  // `failureRatio` of the answers (spread evenly: exactly floor(n * ratio) of the first n) are 500s.
  const failsNow = (n: number): boolean => Math.floor(n * failureRatio) > Math.floor((n - 1) * failureRatio);
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    requests += 1;
    const seq = requests;
    const path = req.url ?? '/';
    const body: EchoBody = { upstream: name, method: req.method ?? 'GET', path, headers: req.headers };
    const status = /^\/status\/(\d{3})(?:[/?]|$)/.exec(path);
    const delay = /^\/delay\/(\d+)(?:[/?]|$)/.exec(path);
    const answer = (): void => {
      const code = status ? Number(status[1]) : failsNow(seq) ? 500 : 200;
      res.writeHead(code, { 'content-type': 'application/json', 'x-upstream': name });
      res.end(JSON.stringify(body));
    };
    req.resume(); // drain any request body
    // `latencyMs` delays every answer (a slow version of a service); /delay/<ms> one request.
    if (delay || latencyMs > 0) setTimeout(answer, Math.min(delay ? Number(delay[1]) : latencyMs, 60_000));
    else answer();
  };
  // With `tls`, an HTTPS (HTTP/1.1) server presenting that certificate.
  const server = tls ? https.createServer({ cert: tls.cert, key: tls.key }, handler) : http.createServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    name,
    port,
    get requests() {
      return requests;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections(); // don't wait for Envoy's pooled keep-alive connections
        server.close(() => resolve());
      }),
  };
}

export interface FetchResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface FetchOptions {
  host?: string;
  headers?: Record<string, string>;
  method?: string;
  body?: string;
  timeoutMs?: number;
}

/** One HTTP/1.1 request to 127.0.0.1:<port> (e.g. an Envoy listener), no connection reuse. */
export function fetchVia(port: number, path: string, opts: FetchOptions = {}): Promise<FetchResult> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.host !== undefined) headers.host = opts.host;
    const req = http.request(
      { host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers, agent: false, timeout: opts.timeoutMs ?? 5_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`fetchVia ${port}${path}: timed out`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}
