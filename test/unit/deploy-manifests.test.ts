// The deployment files, checked offline (issue 12, item 5):
// - deploy/kubernetes/*.yaml against the OpenAPI schemas of a pinned Kubernetes
//   release (the k8s.io/kubernetes Go module, fetched by scripts/setup.sh into
//   .tools/), strictly: a field Kubernetes does not know is an error, as with
//   `kubectl apply --validate=strict`;
// - docker-compose.yml against the Compose Specification's JSON schema (shipped
//   in the npm package docker-compose);
// - what they reference agrees: the image, its start command, the readiness
//   endpoint, two replicas with a PodDisruptionBudget, the Envoy version, and an
//   Envoy bootstrap that lists every replica and keeps its admin on loopback.
// No Docker engine runs here: the image's start command and the bootstrap are
// run for real in test/unit/deploy-runs.test.ts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction } from 'ajv';
import { parse, parseAllDocuments } from 'yaml';
import { adsBootstrap, XDS_CLUSTER, type EnvoyBootstrap } from '../../envoy/bootstrap.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const read = (file: string) => readFileSync(path.join(repoRoot, file), 'utf8');

/** Must match scripts/setup.sh (K8S_VERSION). */
const K8S_VERSION = 'v1.34.2';
const k8sSchemaDir = path.join(repoRoot, '.tools/kubernetes-openapi', K8S_VERSION);
const K8S_GROUPS = ['api__v1', 'apis__apps__v1', 'apis__policy__v1'];

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };
const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Strict schemas: an object schema that lists its properties admits no others
 * (unless Kubernetes marks it as keeping unknown fields). This is what makes
 * a misspelt field (`readinesProbe`) an error instead of silently ignored.
 */
function strictify(schema: Json): Json {
  if (Array.isArray(schema)) return schema.map(strictify);
  if (!isObject(schema)) return schema;
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(schema)) out[key] = key === 'example' || key === 'default' ? value : strictify(value);
  if (isObject(out.properties) && out.additionalProperties === undefined && out['x-kubernetes-preserve-unknown-fields'] !== true) {
    out.additionalProperties = false;
  }
  return out;
}

interface KubernetesValidator {
  validate(doc: unknown): string[];
}

function kubernetesValidator(): KubernetesValidator {
  assert.ok(existsSync(k8sSchemaDir), `Kubernetes schemas missing in ${k8sSchemaDir}: run \`npm run setup\` (scripts/setup.sh fetches them once)`);
  // OpenAPI 3.0 schemas: x-kubernetes-* keywords and formats such as int32 are not JSON Schema's, so not enforced.
  const ajv = new Ajv({ strict: false, validateFormats: false, allErrors: true });
  const byKind = new Map<string, ValidateFunction>();
  for (const group of K8S_GROUPS) {
    const spec = JSON.parse(readFileSync(path.join(k8sSchemaDir, `${group}_openapi.json`), 'utf8')) as { components: { schemas: JsonObject } };
    const schemas = strictify(spec.components.schemas) as JsonObject;
    ajv.addSchema({ $id: group, components: { schemas } });
    for (const [name, schema] of Object.entries(schemas)) {
      const kinds = isObject(schema) ? schema['x-kubernetes-group-version-kind'] : undefined;
      for (const gvk of Array.isArray(kinds) ? kinds : []) {
        if (!isObject(gvk)) continue;
        const apiVersion = gvk.group ? `${String(gvk.group)}/${String(gvk.version)}` : String(gvk.version);
        const key = `${apiVersion} ${String(gvk.kind)}`;
        if (!byKind.has(key)) byKind.set(key, ajv.compile({ $ref: `${group}#/components/schemas/${name}` }));
      }
    }
  }
  return {
    validate(doc) {
      if (!isObject(doc)) return ['not an object'];
      const validate = byKind.get(`${String(doc.apiVersion)} ${String(doc.kind)}`);
      if (!validate) return [`no schema for apiVersion ${String(doc.apiVersion)} kind ${String(doc.kind)}`];
      if (validate(doc)) return [];
      return (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''} ${JSON.stringify(e.params)}`);
    },
  };
}

function composeValidator(): ValidateFunction {
  const schemaFile = path.join(repoRoot, 'node_modules/docker-compose/schema/compose-spec.json');
  const schema = JSON.parse(readFileSync(schemaFile, 'utf8')) as JsonObject;
  delete schema.$schema; // draft-07, ajv's default; its meta-schema URL is not needed offline
  return new Ajv({ strict: false, validateFormats: false, allErrors: true }).compile(schema);
}

function manifestFiles(): string[] {
  const dir = path.join(repoRoot, 'deploy/kubernetes');
  return readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).map((f) => `deploy/kubernetes/${f}`);
}

interface K8sDoc {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec?: JsonObject;
  data?: Record<string, string>;
}

function manifests(): K8sDoc[] {
  const docs: K8sDoc[] = [];
  for (const file of manifestFiles()) {
    for (const doc of parseAllDocuments(read(file))) {
      assert.deepEqual(doc.errors, [], file);
      const value = doc.toJS() as K8sDoc | null;
      if (value) docs.push(value);
    }
  }
  return docs;
}

const named = (docs: K8sDoc[], kind: string, name: string): K8sDoc => {
  const doc = docs.find((d) => d.kind === kind && d.metadata.name === name);
  assert.ok(doc, `${kind} ${name}`);
  return doc;
};

interface Container {
  image: string;
  command?: string[];
  args?: string[];
  env?: Array<{ name: string; value?: string }>;
  readinessProbe?: { httpGet?: { path: string; port: string } };
  livenessProbe?: { httpGet?: { path: string; port: string } };
  volumeMounts?: Array<{ name: string; mountPath: string }>;
}
interface PodSpec { containers: Container[]; volumes?: Array<{ name: string; configMap?: { name: string }; secret?: { secretName: string } }> }
const podSpec = (deployment: K8sDoc) => (deployment.spec as unknown as { template: { spec: PodSpec; metadata: { labels: Record<string, string> } } }).template;

/** The Dockerfile's stages and its CMD (exec form). */
function dockerfile(): { froms: string[]; runs: string[]; cmd: string[] } {
  const lines = read('Dockerfile').replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const froms = lines.filter((l) => /^FROM /i.test(l)).map((l) => l.split(/\s+/)[1]!);
  const runs = lines.filter((l) => /^RUN /i.test(l));
  const cmdLine = lines.filter((l) => /^CMD /i.test(l)).at(-1);
  assert.ok(cmdLine, 'Dockerfile has a CMD');
  return { froms, runs, cmd: JSON.parse(cmdLine.slice(4)) as string[] };
}

describe('Kubernetes manifests (schema check, offline)', () => {
  const validator = kubernetesValidator();

  test(`every document is valid against Kubernetes ${K8S_VERSION}'s schemas, unknown fields refused`, () => {
    const docs = manifests();
    assert.ok(docs.length >= 6, `documents: ${docs.length}`);
    for (const doc of docs) assert.deepEqual(validator.validate(doc), [], `${doc.kind} ${doc.metadata.name}`);
  });

  test('the check is strict: a misspelt field, a wrong type and a missing required field each fail', () => {
    const deployment = structuredClone(named(manifests(), 'Deployment', 'sluice-control-plane'));
    const container = () => podSpec(deployment).spec.containers[0] as unknown as JsonObject;
    container().readinesProbe = container().readinessProbe!;
    assert.match(validator.validate(deployment).join('\n'), /readinesProbe/);
    delete container().readinesProbe;
    (deployment.spec as JsonObject).replicas = 'two';
    assert.match(validator.validate(deployment).join('\n'), /replicas/);
    (deployment.spec as JsonObject).replicas = 2;
    delete (deployment.spec as JsonObject).selector;
    assert.match(validator.validate(deployment).join('\n'), /selector/);
  });

  test('two control-plane replicas, a PodDisruptionBudget over them, readiness on /readyz', () => {
    const docs = manifests();
    const cp = named(docs, 'Deployment', 'sluice-control-plane');
    assert.equal(cp.spec?.replicas, 2);
    const template = podSpec(cp);
    const pdb = named(docs, 'PodDisruptionBudget', 'sluice-control-plane');
    const selector = (pdb.spec as unknown as { selector: { matchLabels: Record<string, string> }; minAvailable: number }).selector.matchLabels;
    for (const [key, value] of Object.entries(selector)) assert.equal(template.metadata.labels[key], value, 'the PDB selects the control-plane pods');
    assert.equal((pdb.spec as unknown as { minAvailable: number }).minAvailable, 1);
    const container = template.spec.containers[0]!;
    assert.equal(container.readinessProbe?.httpGet?.path, '/readyz');
    assert.equal(container.livenessProbe?.httpGet?.path, '/healthz');
  });

  test('the control plane runs the image the Dockerfile builds, with its start command', () => {
    const { froms, runs, cmd } = dockerfile();
    assert.ok(froms.length >= 2, 'multi-stage');
    for (const from of froms) assert.match(from, /^node:20[-.]/, 'Node 20');
    assert.ok(runs.some((r) => /\bnpm ci\b/.test(r)), 'the image is built with npm ci');
    const compose = parse(read('docker-compose.yml')) as { services: Record<string, { image?: string; build?: unknown }> };
    const image = compose.services['control-plane']!.image;
    const container = podSpec(named(manifests(), 'Deployment', 'sluice-control-plane')).spec.containers[0]!;
    assert.equal(container.image, image, 'Kubernetes and compose run the same image');
    assert.equal(compose.services['control-plane']!.build, '.', 'compose builds it from this repository');
    assert.deepEqual(container.command ?? cmd, cmd, "the manifest's command is the image's CMD");
    assert.ok(existsSync(path.join(repoRoot, cmd.at(-1)!)), `${cmd.at(-1)} exists`);
    for (const script of ['scripts/gen-proto-types.sh', 'prisma/schema.prisma', 'prisma/no-schema-engine.sh', 'package-lock.json']) {
      assert.ok(existsSync(path.join(repoRoot, script)), `the build uses ${script}`);
    }
    assert.ok(runs.some((r) => r.includes('db:generate')) && 'db:generate' in (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts);
  });

  test("Envoy is a Deployment of the pinned version, its bootstrap in a ConfigMap: every replica via the headless xDS Service, admin on loopback", () => {
    const docs = manifests();
    const version = read('envoy/VERSION').trim();
    const envoy = podSpec(named(docs, 'Deployment', 'sluice-envoy')).spec;
    assert.equal(envoy.containers[0]!.image, `envoyproxy/envoy:v${version}`);
    const compose = parse(read('docker-compose.yml')) as { services: Record<string, { image?: string }> };
    assert.equal(compose.services.envoy!.image, `envoyproxy/envoy:v${version}`);

    const configMapName = envoy.volumes?.find((v) => v.configMap)?.configMap?.name;
    assert.ok(configMapName);
    const bootstrapText = named(docs, 'ConfigMap', configMapName).data?.['bootstrap.yaml'];
    assert.ok(bootstrapText, 'bootstrap.yaml in the ConfigMap');
    const shipped = parse(bootstrapText) as EnvoyBootstrap;
    const xdsService = named(docs, 'Service', 'sluice-xds');
    assert.equal((xdsService.spec as { clusterIP?: string }).clusterIP, 'None', 'headless: DNS lists every ready replica');
    const generated = adsBootstrap({
      nodeId: 'x', nodeCluster: 'default', adsHost: 'sluice-xds', adsPort: 18000, adminPort: 9901,
      tls: { certFile: '/etc/sluice/certs/node.crt', keyFile: '/etc/sluice/certs/node.key', caFile: '/etc/sluice/certs/ca.crt' },
    });
    const xds = (b: EnvoyBootstrap) => (b.static_resources as { clusters: Array<{ name: string }> }).clusters.find((c) => c.name === XDS_CLUSTER);
    assert.deepEqual(xds(shipped), xds(generated));
    assert.equal((xds(shipped) as unknown as { type: string }).type, 'STRICT_DNS');
    assert.deepEqual(shipped.dynamic_resources, generated.dynamic_resources);
    assert.deepEqual(shipped.admin, generated.admin);
    assert.equal((shipped.admin as { address: { socket_address: { address: string } } }).address.socket_address.address, '127.0.0.1');
    // The node id is the pod name (--service-node), admitted by the control plane's pattern.
    assert.ok(envoy.containers[0]!.args?.join(' ').includes('--service-node $(POD_NAME)'));
    const cpEnv = podSpec(named(docs, 'Deployment', 'sluice-control-plane')).spec.containers[0]!.env ?? [];
    assert.equal(cpEnv.find((e) => e.name === 'XDS_NODE_ID_PATTERN')?.value, '{identity}-*');
  });
});

describe('docker-compose.yml (schema check, offline)', () => {
  const validate = composeValidator();

  test('is valid against the Compose Specification schema', () => {
    const compose = parse(read('docker-compose.yml')) as unknown;
    assert.equal(validate(compose), true, JSON.stringify(validate.errors, null, 2));
  });

  test('the check is strict: an unknown service key fails', () => {
    const compose = parse(read('docker-compose.yml')) as { services: Record<string, JsonObject> };
    compose.services['control-plane']!.helthcheck = {};
    assert.equal(validate(compose), false);
    assert.match(JSON.stringify(validate.errors), /helthcheck/);
  });

  test('one control-plane replica, healthy only when ready (/readyz), Envoy after it', () => {
    const compose = parse(read('docker-compose.yml')) as {
      services: Record<string, { deploy?: { replicas?: number }; healthcheck?: { test: string[] }; depends_on?: Record<string, { condition: string }> }>;
    };
    const cp = compose.services['control-plane']!;
    assert.equal(cp.deploy?.replicas ?? 1, 1);
    assert.match(cp.healthcheck?.test.join(' ') ?? '', /\/readyz/);
    assert.equal(compose.services.envoy!.depends_on?.['control-plane']?.condition, 'service_healthy');
  });
});
