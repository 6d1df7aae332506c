// A raw HTTP/1.1 client for edge tests: sends the request-target and header lines
// exactly as given (no normalisation, no encoding), so path and header tricks reach
// Envoy byte for byte. Also the "lenient upstream" reading of a path the path-trick
// tables judge against.
import net from 'node:net';
import type { EchoBody } from './upstream.ts';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** What the echo upstream saw, when the response came from it (test/helpers/upstream.ts). */
  echo?: EchoBody;
}

export interface RawRequestOptions {
  host?: string;
  /** Only turns a hang into a failure; no assertion is about speed. */
  timeoutMs?: number;
}

/** One GET to 127.0.0.1:`port`; settles on a whole response or when the connection closes. */
export function rawGet(port: number, target: string, headerLines: readonly string[] = [], options: RawRequestOptions = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let settled = false;
    // Envoy may hold a refused connection open a while: a whole response settles too.
    const settle = (final: boolean): void => {
      const text = Buffer.concat(chunks).toString('latin1');
      if (settled || (!final && !isComplete(text))) return;
      settled = true;
      socket.destroy();
      try {
        resolve(parseResponse(text));
      } catch (err) {
        reject(err);
      }
    };
    socket.setTimeout(options.timeoutMs ?? 20_000, () => socket.destroy(new Error(`${target.slice(0, 80)}: no response (hung)`)));
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      settle(false);
    });
    socket.on('error', (err) => (settled ? undefined : reject(err)));
    socket.on('close', () => settle(true));
    const lines = [`GET ${target} HTTP/1.1`, `host: ${options.host ?? 'raw.test'}`, 'connection: close', ...headerLines, '', ''];
    socket.write(lines.join('\r\n'));
  });
}

/** Header lines from a record. */
export function headerLines(headers: Record<string, string>): string[] {
  return Object.entries(headers).map(([name, value]) => `${name}: ${value}`);
}

/** A whole response: headers plus a content-length body or a chunked body's last chunk. */
function isComplete(text: string): boolean {
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return false;
  const head = text.slice(0, end).toLowerCase();
  const length = /\r\ncontent-length: *(\d+)/.exec(head);
  if (length) return text.length - end - 4 >= Number(length[1]);
  return /\r\ntransfer-encoding: *chunked/.test(head) && text.endsWith('0\r\n\r\n');
}

function parseResponse(text: string): RawResponse {
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) throw new Error(`no HTTP response: ${JSON.stringify(text.slice(0, 200))}`);
  const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  let body = text.slice(end + 4);
  if (headers['transfer-encoding'] === 'chunked') body = dechunk(body);
  const echo = headers['x-upstream'] === undefined ? undefined : (JSON.parse(body) as EchoBody);
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine ?? '')?.[1]), headers, body, echo };
}

function dechunk(text: string): string {
  let out = '';
  let rest = text;
  for (;;) {
    const lineEnd = rest.indexOf('\r\n');
    const size = parseInt(rest.slice(0, lineEnd), 16);
    if (!(size > 0)) return out;
    out += rest.slice(lineEnd + 2, lineEnd + 2 + size);
    rest = rest.slice(lineEnd + 2 + size + 2);
  }
}

/**
 * What a lenient upstream might make of a path: one percent-decoding, backslashes
 * as slashes, case folded, slashes merged, dot segments resolved, query dropped
 * (a trailing dot segment keeps its directory's slash).
 */
export function lenientPath(raw: string): string {
  let p = raw.split('?')[0]!;
  try {
    p = decodeURIComponent(p);
  } catch {
    // malformed escapes stay as they are
  }
  p = p.replace(/\\/g, '/').toLowerCase().replace(/\/{2,}/g, '/');
  const out: string[] = [];
  for (const segment of p.split('/').slice(1)) {
    if (segment === '.') continue;
    if (segment === '..') out.pop();
    else out.push(segment);
  }
  const resolved = `/${out.join('/')}`;
  return /\/\.{1,2}$/.test(p) && !resolved.endsWith('/') ? `${resolved}/` : resolved;
}

/** True when a lenient upstream would read `raw` as /api/admin or below it. */
export function meansAdmin(raw: string): boolean {
  const p = lenientPath(raw);
  return p === '/api/admin' || p.startsWith('/api/admin/');
}
