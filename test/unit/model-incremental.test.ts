// validateChange (only what a change can affect) must give exactly the issues
// validateState (the whole config) gives. Random change sequences replayed the
// way the store commits them: each proposed change is checked both ways; a valid
// one is kept (the index moves on), an invalid one is dropped (the index goes
// back). Small name pools make references to missing objects, shared matchers,
// shared JWT subjects and deletions of referenced objects common.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  ConsumerSchema, CredentialSchema, JwtProviderSchema, KINDS, RateLimitPolicySchema, RouteSchema, UpstreamSchema,
  ValidationIndex, emptyState, validateChange, validateState,
  type Kind, type ObjectChange, type State,
} from '../../control-plane/src/model/index.ts';

const pool = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}`);
const UPSTREAMS = pool('u', 3);
const POLICIES = pool('p', 3);
const PROVIDERS = pool('j', 2);
const CONSUMERS = pool('c', 3);
const ROUTES = pool('r', 8);
const CREDENTIALS = pool('k', 5);

const subset = (names: string[]) => fc.subarray(names, { maxLength: 2 });

const upstream = (name: string) => fc.constant(UpstreamSchema.parse({ name, endpoints: [{ host: '127.0.0.1', port: 8080 }] }));
const policy = (name: string) =>
  fc.constantFrom('route', 'gateway').map((scope) => RateLimitPolicySchema.parse({ name, key: ['route'], limit: { requests: 10, per: 'minute' }, scope }));
const provider = (name: string) => fc.constant(JwtProviderSchema.parse({ name, issuer: `https://${name}.example`, jwks_uri: `https://${name}.example/jwks` }));
const consumer = (name: string) => fc.constant(ConsumerSchema.parse({ name }));
const credential = (name: string) =>
  fc.record({ consumer: fc.constantFrom(...CONSUMERS, 'c-missing'), provider: fc.option(fc.constantFrom(...PROVIDERS, 'j-missing')), subject: fc.constantFrom('alice', 'bob') }).map(({ consumer, provider, subject }) =>
    CredentialSchema.parse(provider === null ? { name, consumer, kind: 'api_key' } : { name, consumer, kind: 'jwt_subject', jwt: { provider, subject } }),
  );
const route = (name: string) =>
  fc
    .record({
      priority: fc.constantFrom(0, 1),
      prefix: fc.constantFrom('/a', '/b'),
      host: fc.constantFrom('*', 'api.example'),
      target: fc.oneof(
        fc.record({ upstream: fc.constantFrom(...UPSTREAMS, 'u-missing') }),
        fc.record({ canary: fc.record({ primary: fc.constant('u0'), canary: fc.constantFrom('u1', 'u2', 'u-missing'), weight: fc.constant(10) }) }),
        fc.constantFrom('u1', 'u2', 'u-missing').map((u) => ({ split: [{ upstream: u, weight: 60 }, { upstream: 'u0', weight: 40 }] })),
      ),
      rateLimits: subset([...POLICIES, 'p-missing']),
      optOut: subset([...POLICIES, 'p-missing']),
      auth: fc.oneof(
        fc.constant({ mode: 'none' }),
        fc.constant({ mode: 'api_key' }),
        subset([...PROVIDERS, 'j-missing']).map((providers) => ({ mode: 'jwt', ...(providers.length > 0 ? { jwt_providers: providers } : {}) })),
      ),
    })
    .map((r) =>
      RouteSchema.parse({
        name, priority: r.priority, hosts: [r.host], match: { path: { prefix: r.prefix } }, action: r.target,
        rate_limits: r.rateLimits, rate_limit_opt_out: r.optOut, auth: r.auth,
      }),
    );

const MAKERS: Record<Kind, { names: string[]; make: (name: string) => fc.Arbitrary<{ name: string }> }> = {
  upstreams: { names: UPSTREAMS, make: upstream },
  rate_limit_policies: { names: POLICIES, make: policy },
  jwt_providers: { names: PROVIDERS, make: provider },
  consumers: { names: CONSUMERS, make: consumer },
  routes: { names: ROUTES, make: route },
  credentials: { names: CREDENTIALS, make: credential },
};

/** One proposed object write (an object) or delete (null). */
const operation = fc.constantFrom(...KINDS).chain((kind) =>
  fc.constantFrom(...MAKERS[kind].names).chain((name) => fc.oneof({ weight: 3, arbitrary: MAKERS[kind].make(name) }, { weight: 1, arbitrary: fc.constant(null) }).map((after) => ({ kind, name, after }))),
);
const proposals = fc.array(fc.array(operation, { minLength: 1, maxLength: 3 }), { minLength: 10, maxLength: 60 });

/** The next State (sorted by name, as the store keeps it) and the object changes from `state`. */
function applyProposal(state: State, ops: Array<{ kind: Kind; name: string; after: { name: string } | null }>): { next: State; changes: ObjectChange[] } {
  const next = structuredClone(state);
  const touched = new Map<string, ObjectChange>();
  for (const op of ops) {
    const list = next[op.kind] as Array<{ name: string }>;
    const at = list.findIndex((o) => o.name === op.name);
    const before = at >= 0 ? list[at] : undefined;
    if (op.after) {
      if (at >= 0) list[at] = op.after;
      else list.push(op.after);
    } else if (at >= 0) list.splice(at, 1);
    const id = `${op.kind}/${op.name}`;
    const first = touched.get(id);
    touched.set(id, { kind: op.kind, name: op.name, before: first ? first.before : before, ...(op.after ? { after: op.after } : {}) });
  }
  for (const kind of KINDS) (next[kind] as Array<{ name: string }>).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const changes = [...touched.values()].filter((c) => c.before !== undefined || c.after !== undefined);
  return { next: next, changes: changes.map((c) => (c.before === undefined ? { kind: c.kind, name: c.name, after: c.after } : c)) };
}

test('incremental cross-object verdict equals the full one over random commit sequences', () => {
  let checked = 0;
  let rejected = 0;
  fc.assert(
    fc.property(proposals, (sequence) => {
      let state = emptyState(0);
      const index = ValidationIndex.of(state);
      for (const ops of sequence) {
        const { next, changes } = applyProposal(state, ops);
        index.apply(changes);
        const incremental = validateChange(index, next, changes);
        const full = validateState(next);
        assert.deepEqual(incremental, full, `change ${JSON.stringify(ops.map((o) => [o.kind, o.name, o.after === null ? 'delete' : 'write']))}`);
        checked += 1;
        if (full.length === 0) state = next;
        else {
          rejected += 1;
          index.revert(changes);
        }
      }
      // The index kept in step equals one built from scratch.
      assert.deepEqual(index, ValidationIndex.of(state));
    }),
    { numRuns: 300, seed: 424242 },
  );
  // The corpus exercises both verdicts in volume (fixed seed: deterministic).
  assert.ok(checked > 5_000, `checked ${checked}`);
  assert.ok(rejected > checked / 10 && rejected < checked * 0.9, `rejected ${rejected} of ${checked}`);
});

test('a change that leaves names unsorted or duplicated falls back to the full check', () => {
  const state = emptyState(1);
  state.upstreams = [UpstreamSchema.parse({ name: 'a', endpoints: [{ host: '127.0.0.1', port: 1 }] }), UpstreamSchema.parse({ name: 'a', endpoints: [{ host: '127.0.0.1', port: 2 }] })];
  const issues = validateChange(ValidationIndex.of(state), state, [{ kind: 'upstreams', name: 'a', after: state.upstreams[1] }]);
  assert.deepEqual(issues, validateState(state));
  assert.equal(issues.length, 1);
});
