// OpenAPI 3.1 document generated from the model's zod schemas (z.toJSONSchema),
// so the docs cannot drift from what the API validates. Served at
// /docs/openapi.json, with a dependency-free HTML listing at /docs.
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { DeclarativeConfigSchema } from '../model/index.ts';
import { KIND_INFO } from './kinds.ts';

type JsonObject = Record<string, unknown>;

function jsonSchema(schema: z.ZodType): JsonObject {
  // Input shape: fields with defaults are optional in a request body. Custom
  // refinements (regex dialect, sums, references) cannot be expressed and are omitted.
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonObject;
  return rest;
}

const PROBLEM_SCHEMA: JsonObject = {
  type: 'object',
  required: ['type', 'title', 'status', 'detail'],
  properties: {
    type: { type: 'string' },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string' },
    errors: {
      type: 'array',
      items: {
        type: 'object',
        properties: { path: { type: 'string', description: "dotted field path relative to the body, e.g. 'action.upstream'" }, message: { type: 'string' } },
      },
    },
  },
};

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: JsonObject) => ({ content: { 'application/json': { schema } } });
const problems = (...statuses: number[]) =>
  Object.fromEntries(statuses.map((s) => [String(s), { description: 'problem', content: { 'application/problem+json': { schema: ref('Problem') } } }]));
const nameParam = { name: 'name', in: 'path', required: true, schema: { type: 'string' } };
const ifMatch = { name: 'If-Match', in: 'header', required: false, schema: { type: 'string' } };
const waitParams = [
  {
    name: 'wait',
    in: 'query',
    required: false,
    description: 'applied: answer once every connected Envoy that counts holds the new revision (`applied: true`), or with `applied: false` at the timeout or as soon as one of them rejects it',
    schema: { type: 'string', enum: ['applied'] },
  },
  { name: 'timeout', in: 'query', required: false, schema: { type: 'integer', default: 10000 } },
];

function kindPaths(): JsonObject {
  const paths: JsonObject = {};
  for (const info of KIND_INFO) {
    const base = `/v1/${info.segment}`;
    const body = { required: true, ...json(ref(info.singular)) };
    paths[base] = {
      get: {
        summary: `List ${info.kind}`,
        parameters: ['limit', 'after', 'prefix'].map((name) => ({ name, in: 'query', required: false, schema: { type: name === 'limit' ? 'integer' : 'string' } })),
        responses: { '200': { description: 'a page: {items, next}' }, ...problems(400, 401) },
      },
      post: { summary: `Create a ${info.singular}`, parameters: waitParams, requestBody: body, responses: { '201': { description: 'created' }, ...problems(401, 403, 409, 413, 422, 503) } },
    };
    paths[`${base}/{name}`] = {
      parameters: [nameParam],
      get: { summary: `Get a ${info.singular}`, responses: { '200': { description: 'the object, with ETag' }, ...problems(401, 404) } },
      put: { summary: `Replace a ${info.singular}`, parameters: [ifMatch, ...waitParams], requestBody: body, responses: { '200': { description: 'replaced' }, ...problems(404, 412, 422) } },
      patch: {
        summary: `Merge-patch a ${info.singular} (RFC 7396)`,
        parameters: [ifMatch, ...waitParams],
        requestBody: { required: true, content: { 'application/merge-patch+json': { schema: { type: 'object' } } } },
        responses: { '200': { description: 'patched' }, ...problems(404, 412, 422) },
      },
      delete: { summary: `Delete a ${info.singular}`, parameters: [ifMatch, ...waitParams], responses: { '204': { description: 'deleted' }, ...problems(404, 412, 422) } },
    };
  }
  return paths;
}

function otherPaths(): JsonObject {
  const config = { required: true, content: { 'application/json': { schema: ref('DeclarativeConfig') }, 'application/yaml': { schema: ref('DeclarativeConfig') } } };
  return {
    '/v1/routes/{name}:canary': {
      post: {
        summary: 'Set a route traffic split (weights sum to 100)',
        parameters: [nameParam, ifMatch, ...waitParams],
        requestBody: json({ type: 'object', properties: { weights: { type: 'array', items: { type: 'object', properties: { upstream: { type: 'string' }, weight: { type: 'integer' } } } } } }),
        responses: { '200': { description: 'updated route' }, ...problems(404, 412, 422) },
      },
    },
    '/v1/config': {
      get: { summary: 'The whole current config', responses: { '200': { description: '{revision, config}' } } },
      put: { summary: 'Declarative apply (all-or-nothing, idempotent)', parameters: waitParams, requestBody: config, responses: { '200': { description: '{revision, changed, changes}' }, ...problems(422) } },
    },
    '/v1/config:validate': { post: { summary: 'Validate a config', requestBody: config, responses: { '200': { description: '{valid: true}' }, ...problems(422) } } },
    '/v1/config:diff': { post: { summary: 'What PUT /v1/config would change', requestBody: config, responses: { '200': { description: '{changes}' }, ...problems(422) } } },
    '/v1/revisions': { get: { summary: 'Revision history (newest first; before cursor)', responses: { '200': { description: '{items, next}' } } } },
    '/v1/revisions/{n}': { get: { summary: 'One revision and its changes', responses: { '200': { description: 'summary + changes' }, ...problems(404, 410) } } },
    '/v1/revisions/{n}:rollback': { post: { summary: "New revision restoring revision n's config", parameters: waitParams, responses: { '200': { description: '{revision, changed}' }, ...problems(404, 410) } } },
    '/v1/fleet': { get: { summary: 'Connected Envoys and what they applied', responses: { '200': { description: 'fleet status' } } } },
    '/v1/routes/{name}/stats': { get: { summary: "A route's fleet traffic over the rolling window (?since_seconds)", responses: { '200': { description: '{requests, status_2xx, status_4xx, status_5xx, p50_ms, p95_ms, p99_ms}' }, ...problems(400, 404) } } },
    '/v1/upstreams/{name}/stats': { get: { summary: "An upstream's fleet traffic over the rolling window (?since_seconds)", responses: { '200': { description: '{requests, status_2xx, status_4xx, status_5xx, p50_ms, p95_ms, p99_ms}' }, ...problems(400, 404) } } },
    '/healthz': { get: { summary: 'Liveness (no auth)', security: [], responses: { '200': { description: 'ok' } } } },
    '/readyz': { get: { summary: 'Readiness (no auth): change feed connected and head revision published', security: [], responses: { '200': { description: 'ready' }, '503': { description: 'not ready, with the reason' } } } },
  };
}

export function buildOpenApi(): JsonObject {
  const schemas: JsonObject = { Problem: PROBLEM_SCHEMA, DeclarativeConfig: jsonSchema(DeclarativeConfigSchema) };
  for (const info of KIND_INFO) schemas[info.singular] = jsonSchema(info.schema);
  return {
    openapi: '3.1.0',
    info: { title: 'Sluice admin API', version: '1' },
    security: [{ bearer: [] }],
    components: { schemas, securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    paths: { ...kindPaths(), ...otherPaths() },
  };
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c] ?? c);
}

function docsPage(doc: JsonObject): string {
  const rows = Object.entries(doc.paths as Record<string, Record<string, { summary?: string }>>).flatMap(([path, ops]) =>
    Object.entries(ops)
      .filter(([method]) => method !== 'parameters')
      .map(([method, op]) => `<tr><td>${method.toUpperCase()}</td><td><code>${escapeHtml(path)}</code></td><td>${escapeHtml(op.summary ?? '')}</td></tr>`),
  );
  return `<!doctype html><html><head><meta charset="utf-8"><title>Sluice admin API</title></head><body>
<h1>Sluice admin API</h1><p>Machine-readable: <a href="/docs/openapi.json">openapi.json</a></p>
<table><thead><tr><th>method</th><th>path</th><th>summary</th></tr></thead><tbody>${rows.join('')}</tbody></table></body></html>`;
}

export function registerOpenApi(app: FastifyInstance): void {
  const doc = buildOpenApi(); // built once: the schemas are static
  const page = docsPage(doc);
  app.get('/docs/openapi.json', async () => doc);
  app.get('/docs', async (_request, reply) => reply.type('text/html; charset=utf-8').send(page));
}
