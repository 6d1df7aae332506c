// A snapshot is the whole config for one node group at one revision.
import { createHash } from 'node:crypto';
import { EMPTY_SET, PUSH_ORDER, setVersion, type ResourceSet, type TypeUrl, type XdsResource } from './resources.ts';

export interface Snapshot {
  /** Hash over every type's set version: two equal configs have equal versions. */
  version: string;
  /** The store revision this snapshot was built from (a label for fleet status). */
  revision: number;
  types: ReadonlyMap<TypeUrl, ResourceSet>;
}

export function makeSnapshot(revision: number, resources: Iterable<XdsResource>): Snapshot {
  const byType = new Map<TypeUrl, Map<string, XdsResource>>();
  for (const type of PUSH_ORDER) byType.set(type, new Map());
  for (const resource of resources) {
    const set = byType.get(resource.typeUrl as TypeUrl);
    if (!set) throw new Error(`snapshot: unsupported resource type ${resource.typeUrl}`);
    if (set.has(resource.name)) throw new Error(`snapshot: duplicate ${resource.typeUrl} named ${resource.name}`);
    set.set(resource.name, resource);
  }
  const hash = createHash('sha256');
  for (const type of PUSH_ORDER) hash.update(`${type}=${setVersion(byType.get(type)!)}\n`);
  return { version: hash.digest('hex').slice(0, 16), revision, types: byType };
}

export function snapshotSet(snapshot: Snapshot | undefined, type: TypeUrl): ResourceSet {
  return snapshot?.types.get(type) ?? EMPTY_SET;
}
