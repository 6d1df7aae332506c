// The admin API's edge: everything a request carries is checked here before a
// handler, the model or Postgres sees it, so hostile input gets a 4xx problem
// naming the part of the request at fault, never a 500 (defence in depth: the
// model checks its own fields too).
//
// - Bodies (JSON, merge patch, YAML) must be UTF-8, at most MAX_JSON_DEPTH
//   containers deep, free of NUL and lone surrogates (Postgres cannot store
//   the one, UTF-8 cannot encode the other) and of keys JavaScript gives a
//   meaning to (__proto__, constructor, prototype); YAML flow nesting is
//   capped before the YAML parser runs; exactly one Content-Type.
// - Path parameters and query values must be free of control characters and
//   lone surrogates; a URL fastify cannot decode, or a path segment too long
//   for the router, is answered here as problem+json too.
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { parse as parseYaml } from 'yaml';
import { KIND_INFO } from './kinds.ts';
import { formatPath, ProblemError, type ProblemField, clip, problem, sendProblem } from './problem.ts';

/** Deepest nesting of objects and arrays a body may have (real configs stay under 10). */
export const MAX_JSON_DEPTH = 32;
/** Longest path segment the router passes to a handler; longer ones get 414. */
export const MAX_PATH_SEGMENT = 2048;

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const CONTROL = /[\u0000-\u001f\u007f]/;

/** Why a body string cannot be stored, or undefined when it can. */
export function unstorableString(value: string): string | undefined {
  if (value.includes('\u0000')) return 'must not contain NUL (\\u0000)';
  if (LONE_SURROGATE.test(value)) return 'must not contain a lone UTF-16 surrogate';
  return undefined;
}

/** Why a URL parameter value is refused, or undefined when it is fine. */
export function badUrlValue(value: string): string | undefined {
  if (CONTROL.test(value)) return 'must not contain control characters (NUL included)';
  if (LONE_SURROGATE.test(value)) return 'must not contain a lone UTF-16 surrogate';
  return undefined;
}

interface Frame {
  value: unknown;
  path: (string | number)[];
  depth: number;
}

/**
 * The first thing in a parsed body that must not go further, in document
 * order, with its path. Iterative, so a hostile depth cannot overflow the stack.
 */
export function findUnsafeInput(root: unknown, maxDepth = MAX_JSON_DEPTH): ProblemField | undefined {
  // Nearly every body passes: a walk that builds no paths says so (a 10,000-route config holds some
  // 200,000 values); only a body that fails is walked again to name the first problem.
  return isSafeInput(root, maxDepth) ? undefined : firstUnsafeInput(root, maxDepth);
}

/** Whether findUnsafeInput would find nothing: the same checks, without paths or document order. */
function isSafeInput(root: unknown, maxDepth: number): boolean {
  const values: unknown[] = [root];
  const depths: number[] = [0];
  while (values.length > 0) {
    const value = values.pop();
    const depth = depths.pop()!;
    if (typeof value === 'string') {
      if (unstorableString(value)) return false;
      continue;
    }
    if (typeof value !== 'object' || value === null) continue;
    if (!Array.isArray(value) && !isPlainObject(value)) return false;
    if (depth >= maxDepth) return false;
    if (Array.isArray(value)) {
      for (const item of value as unknown[]) {
        values.push(item);
        depths.push(depth + 1);
      }
      continue;
    }
    for (const key in value) {
      if (!Object.hasOwn(value, key)) continue;
      if (FORBIDDEN_KEYS.has(key) || unstorableString(key)) return false;
      values.push((value as Record<string, unknown>)[key]);
      depths.push(depth + 1);
    }
  }
  return true;
}

/** findUnsafeInput's answer for a body known to hold a problem: the first one, in document order, with its path. */
function firstUnsafeInput(root: unknown, maxDepth: number): ProblemField | undefined {
  const stack: Frame[] = [{ value: root, path: [], depth: 0 }];
  for (let frame = stack.pop(); frame !== undefined; frame = stack.pop()) {
    const { value, path, depth } = frame;
    if (typeof value === 'string') {
      const why = unstorableString(value);
      if (why) return { path: formatPath(path), message: why };
      continue;
    }
    if (typeof value !== 'object' || value === null) continue;
    // YAML can produce more than JSON (a Buffer from !!binary, a Map): refuse it.
    if (!Array.isArray(value) && !isPlainObject(value)) return { path: formatPath(path), message: 'must be a JSON value (object, array, string, number, boolean or null)' };
    // Also ends a cycle (a YAML alias to itself) at the cap instead of looping.
    if (depth >= maxDepth) return { path: formatPath(path), message: `nested deeper than ${maxDepth} levels` };
    const children: Frame[] = [];
    if (Array.isArray(value)) {
      value.forEach((item: unknown, i) => children.push({ value: item, path: [...path, i], depth: depth + 1 }));
    } else {
      for (const [key, item] of Object.entries(value)) {
        const keyPath = [...path, key];
        if (FORBIDDEN_KEYS.has(key)) return { path: formatPath(keyPath), message: `'${key}' is not allowed as a key` };
        const why = unstorableString(key);
        if (why) return { path: formatPath(keyPath), message: `key ${why}` };
        children.push({ value: item, path: keyPath, depth: depth + 1 });
      }
    }
    for (let i = children.length - 1; i >= 0; i--) stack.push(children[i]!);
  }
  return undefined;
}

function isPlainObject(value: object): boolean {
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

// ---- bodies ----------------------------------------------------------------

const JSON_TYPES = ['application/json', 'application/merge-patch+json'];
const YAML_TYPES = ['application/yaml', 'text/yaml', 'application/x-yaml'];
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
const utf8Lenient = new TextDecoder('utf-8', { fatal: false });

/** Decodes strictly; invalid bytes get a 400 naming the first field that holds them. */
function decodeUtf8(body: Buffer, parse: (text: string) => unknown): string {
  try {
    return utf8.decode(body);
  } catch {
    let path = '';
    try {
      path = firstReplacedString(parse(utf8Lenient.decode(body))) ?? '';
    } catch {
      // the lenient text does not parse either: name the body itself
    }
    throw new ProblemError(400, 'the body is not valid UTF-8', [{ path, message: 'invalid UTF-8 bytes' }]);
  }
}

/** Where U+FFFD (what the lenient decoder put for invalid bytes) first appears. */
function firstReplacedString(root: unknown): string | undefined {
  const stack: Frame[] = [{ value: root, path: [], depth: 0 }];
  for (let frame = stack.pop(); frame !== undefined; frame = stack.pop()) {
    const { value, path, depth } = frame;
    if (typeof value === 'string' && value.includes('\uFFFD')) return formatPath(path);
    if (typeof value !== 'object' || value === null || depth > MAX_JSON_DEPTH) continue;
    const entries = Array.isArray(value) ? value.map((v: unknown, i) => [i, v] as const) : Object.entries(value);
    for (let i = entries.length - 1; i >= 0; i--) {
      const [key, item] = entries[i]!;
      if (typeof key === 'string' && key.includes('\uFFFD')) return formatPath([...path, key]);
      stack.push({ value: item, path: [...path, key], depth: depth + 1 });
    }
  }
  return undefined;
}

function checkCharset(request: FastifyRequest): void {
  const header = request.headers['content-type'] ?? '';
  const charset = /;\s*charset\s*=\s*"?([^";\s]*)/i.exec(header)?.[1];
  if (charset !== undefined && !/^utf-?8$/i.test(charset)) {
    throw new ProblemError(415, `bodies must be UTF-8, not '${clip(charset, 40)}'`, [{ path: 'Content-Type', message: 'charset must be utf-8' }]);
  }
}

function parseJsonText(text: string): unknown {
  if (text.trim() === '') throw new ProblemError(400, 'the body is empty but Content-Type says JSON', [{ path: '', message: 'empty body' }]);
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    const reason = err instanceof Error ? err.message : 'parse error';
    throw new ProblemError(400, `the body is not valid JSON: ${clip(reason)}`, [{ path: '', message: 'invalid JSON' }]);
  }
}

/**
 * Deepest flow nesting ([ and {) in YAML text, outside quotes and comments.
 * The yaml parser recurses per level and exhausts memory on ~100,000 levels
 * (a 1 MiB body holds 500,000), so depth is capped before it parses. Brackets
 * inside plain scalars (a regex like [a-z]) balance out and barely count.
 */
export function yamlFlowDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === '\\' && quote === '"') i++;
      else if (c === quote) quote = undefined;
      continue;
    }
    if (c === '"' || c === "'") quote = c;
    else if (c === '#' && (i === 0 || /\s/.test(text[i - 1] ?? ''))) {
      const end = text.indexOf('\n', i);
      i = end === -1 ? text.length : end;
    } else if (c === '[' || c === '{') deepest = Math.max(deepest, ++depth);
    else if ((c === ']' || c === '}') && depth > 0) depth--;
  }
  return deepest;
}

function parseYamlText(text: string): unknown {
  if (yamlFlowDepth(text) > MAX_JSON_DEPTH) {
    throw new ProblemError(400, `the YAML body is nested deeper than ${MAX_JSON_DEPTH} levels`, [{ path: '', message: `nested deeper than ${MAX_JSON_DEPTH} levels` }]);
  }
  try {
    // Warnings off: a client must not be able to write to our stderr.
    return parseYaml(text, { logLevel: 'error', maxAliasCount: 100 }) as unknown;
  } catch (err) {
    const reason = err instanceof Error ? (err.message.split('\n')[0] ?? '') : 'parse error';
    throw new ProblemError(400, `the body is not valid YAML: ${clip(reason)}`, [{ path: '', message: 'invalid YAML' }]);
  }
}

function safeBody(request: FastifyRequest, body: Buffer, parse: (text: string) => unknown): unknown {
  checkCharset(request);
  const value = parse(decodeUtf8(body, parse));
  const unsafe = findUnsafeInput(value);
  if (unsafe) throw new ProblemError(400, `the body cannot be accepted: '${clip(unsafe.path, 200)}' ${unsafe.message}`, [unsafe]);
  return value;
}

/** JSON (and JSON merge patch) and YAML bodies, checked as above; nothing else is parsed (415). */
export function registerBodyParsers(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(JSON_TYPES, { parseAs: 'buffer' }, (request: FastifyRequest, body: Buffer, done) => {
    try {
      done(null, safeBody(request, body, parseJsonText));
    } catch (err) {
      done(err as Error, undefined);
    }
  });
  app.addContentTypeParser(YAML_TYPES, { parseAs: 'buffer' }, (request: FastifyRequest, body: Buffer, done) => {
    try {
      done(null, safeBody(request, body, parseYamlText));
    } catch (err) {
      done(err as Error, undefined);
    }
  });
}

// ---- URLs ------------------------------------------------------------------

/** What a route parameter is called in problems. */
function paramField(routeUrl: string | undefined, key: string): string {
  if (key === 'n' || (key === 'target' && routeUrl?.startsWith('/v1/revisions/'))) return 'revision';
  if (key === 'target') return 'name';
  return key;
}

/**
 * Content-Type must be one value: Node keeps the first of two silently, which
 * would leave it to the client's header order which parser reads the body.
 */
export function registerHeaderChecks(app: FastifyInstance): void {
  app.addHook('onRequest', async (request: FastifyRequest) => {
    const raw = request.raw.rawHeaders;
    let count = 0;
    for (let i = 0; i < raw.length; i += 2) if (raw[i]?.toLowerCase() === 'content-type') count++;
    const type = request.headers['content-type'] ?? '';
    if (count > 1 || /,/.test(type.replace(/"[^"]*"/g, ''))) {
      throw new ProblemError(415, 'exactly one Content-Type is allowed', [{ path: 'Content-Type', message: 'more than one value' }]);
    }
  });
}

/** Refuses control characters and lone surrogates in path parameters and query values. */
export function registerUrlChecks(app: FastifyInstance): void {
  app.addHook('preValidation', async (request: FastifyRequest) => {
    const params = (request.params ?? {}) as Record<string, unknown>;
    for (const [key, value] of Object.entries(params)) {
      const why = typeof value === 'string' ? badUrlValue(value) : undefined;
      if (why) throw new ProblemError(400, `path parameter '${paramField(request.routeOptions.url, key)}' ${why}`, [{ path: paramField(request.routeOptions.url, key), message: why }]);
    }
    const query = (request.query ?? {}) as Record<string, unknown>;
    for (const [key, raw] of Object.entries(query)) {
      const keyWhy = badUrlValue(key);
      if (keyWhy) throw new ProblemError(400, `a query parameter name ${keyWhy}`, [{ path: clip(key, 64), message: keyWhy }]);
      for (const value of Array.isArray(raw) ? raw : [raw]) {
        const why = typeof value === 'string' ? badUrlValue(value) : undefined;
        if (why) throw new ProblemError(400, `query parameter '${clip(key, 64)}' ${why}`, [{ path: key, message: why }]);
      }
    }
  });
}

/**
 * The parameter a bad raw path is about: the first segment that does not
 * decode or is too long; under /v1/<kind>/ that is the object's name (or the
 * revision number), elsewhere just 'path'.
 */
export function urlField(rawUrl: string): string {
  const segments = (rawUrl.split('?')[0] ?? '').split('/');
  const index = segments.findIndex((segment) => segment.length > MAX_PATH_SEGMENT || !decodes(segment));
  if (index !== 3 || segments[1] !== 'v1') return 'path';
  if (segments[2] === 'revisions') return 'revision';
  return KIND_INFO.some((info) => info.segment === segments[2]) ? 'name' : 'path';
}

function decodes(segment: string): boolean {
  try {
    decodeURIComponent(segment);
    return true;
  } catch {
    return false;
  }
}

/** fastify's `frameworkErrors`: a URL it cannot decode or route answers problem+json. */
export function frameworkErrors(err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const status = err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 414 : typeof err.statusCode === 'number' && err.statusCode < 500 ? err.statusCode : 400;
  const field = urlField(request.raw.url ?? '');
  const message = status === 414 ? `longer than ${MAX_PATH_SEGMENT} characters` : 'not valid percent-encoded UTF-8';
  reply.header('x-request-id', request.id);
  sendProblem(reply, status, `the URL cannot be accepted: '${field}' is ${message}`, [{ path: field, message }]);
  // No route context, so fastify's onResponse hooks do not run: log here.
  request.log.info({ method: request.raw.method, route: null, status, actor: 'anonymous', problem_fields: [field] }, 'admin request');
}

/** The part of the request each of Node's HTTP parser errors is about. */
const CLIENT_ERROR_FIELDS: Record<string, string> = {
  HPE_HEADER_OVERFLOW: 'headers',
  HPE_INVALID_HEADER_TOKEN: 'headers',
  HPE_INVALID_URL: 'path',
  HPE_INVALID_METHOD: 'method',
  HPE_INVALID_CONTENT_LENGTH: 'Content-Length',
  HPE_UNEXPECTED_CONTENT_LENGTH: 'Content-Length',
  HPE_INVALID_TRANSFER_ENCODING: 'Transfer-Encoding',
};

/**
 * fastify's `clientErrorHandler`: requests Node's HTTP parser refuses (headers
 * too large, a malformed request line, bytes HTTP forbids) never reach fastify;
 * answer them with problem+json too, and log them.
 */
export function clientErrorHandler(this: FastifyInstance, err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  const field = status === 408 ? '' : (CLIENT_ERROR_FIELDS[err.code ?? ''] ?? 'request');
  const detail = status === 431 ? 'the request headers are too large' : status === 408 ? 'the request took too long to arrive' : 'the request is not valid HTTP';
  this.log.info({ status, code: err.code, problem_fields: [field] }, 'admin client error');
  if (socket.writable) {
    const body = JSON.stringify(problem(status, detail, field === '' ? [] : [{ path: field, message: detail }]));
    socket.write(
      `HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request'}\r\n` +
        `Content-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(err);
}
