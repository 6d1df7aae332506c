// A bounded HTTP load through an Envoy listener: a fixed number of requests at
// a fixed concurrency over keep-alive connections, recording every outcome.
import http from 'node:http';

export interface LoadResult {
  total: number;
  failed: number;
  /** Non-2xx statuses and transport errors, with counts. */
  failures: Map<string, number>;
  /** Requests answered per `x-upstream` header value. */
  byUpstream: Map<string, number>;
}

export interface LoadOptions {
  port: number;
  path?: string;
  host?: string;
  requests: number;
  concurrency?: number;
  /** Called after each completed request, e.g. to shift weights mid-run. */
  onProgress?: (done: number) => void | Promise<void>;
}

export interface LoadRun {
  result: Promise<LoadResult>;
  /** Requests completed so far. */
  readonly done: number;
}

export function startLoad(opts: LoadOptions): LoadRun {
  const agent = new http.Agent({ keepAlive: true, maxSockets: opts.concurrency ?? 8 });
  const failures = new Map<string, number>();
  const byUpstream = new Map<string, number>();
  let issued = 0;
  let done = 0;
  const bump = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1);

  const one = () =>
    new Promise<void>((resolve) => {
      const req = http.get(
        { host: '127.0.0.1', port: opts.port, path: opts.path ?? '/', agent, timeout: 5_000, headers: opts.host ? { host: opts.host } : {} },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => { if (body.length < 200) body += chunk; });
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            if (status < 200 || status >= 300) bump(failures, `status ${status}: ${body.slice(0, 80)}`);
            else bump(byUpstream, String(res.headers['x-upstream'] ?? 'none'));
            resolve();
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (err) => {
        bump(failures, err.message);
        resolve();
      });
    });

  const worker = async () => {
    while (issued < opts.requests) {
      issued += 1;
      await one();
      done += 1;
      await opts.onProgress?.(done);
    }
  };

  const result = Promise.all(Array.from({ length: opts.concurrency ?? 8 }, worker)).then(() => {
    agent.destroy();
    let failed = 0;
    for (const count of failures.values()) failed += count;
    return { total: done, failed, failures, byUpstream };
  });
  return {
    result,
    get done() {
      return done;
    },
  };
}

/** Share of `name` among answered requests, in percent. */
export function sharePercent(result: Pick<LoadResult, 'byUpstream'>, name: string): number {
  let total = 0;
  for (const count of result.byUpstream.values()) total += count;
  return total === 0 ? 0 : (100 * (result.byUpstream.get(name) ?? 0)) / total;
}
