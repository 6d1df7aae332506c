// The domain model: zod schemas (the one definition of valid config) and their types.
// Pure: no I/O anywhere under model/.
//
// model/ is the gate: a change Envoy would reject never reaches the fleet, because
// translate/ never emits what model/ did not check (see state.ts for how).
export * from './common.ts';
export * from './contract.ts';
export * from './upstream.ts';
export * from './route.ts';
export * from './consumer.ts';
export * from './jwt-provider.ts';
export * from './rate-limit-policy.ts';
export * from './state.ts';
export { validateState, validateChange, ValidationIndex, matcherKey, type ObjectChange } from './cross-object.ts';
export { re2Problem, re2Literal, captureGroupCount, estimateProgramSize, ENVOY_RE2_PROGRAM_SIZE_LIMIT, MAX_ESTIMATED_PROGRAM_SIZE } from './re2.ts';
