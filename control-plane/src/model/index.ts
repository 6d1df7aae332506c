// The domain model: zod schemas (the one definition of valid config) and their types.
// Pure: no I/O anywhere under model/.
export * from './common.ts';
export * from './contract.ts';
export * from './upstream.ts';
export * from './route.ts';
export * from './consumer.ts';
export * from './jwt-provider.ts';
export * from './rate-limit-policy.ts';
export * from './state.ts';
export { re2Problem, captureGroupCount, estimateProgramSize } from './re2.ts';
