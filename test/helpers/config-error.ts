// The message loadConfig throws for an environment (config/env.ts), for tests of
// what a bad setting is told.
import assert from 'node:assert/strict';
import { ConfigError, loadConfig } from '../../control-plane/src/config/env.ts';

export function configError(env: NodeJS.ProcessEnv): string {
  try {
    loadConfig(env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return err.message;
  }
  assert.fail('loadConfig accepted the environment');
}
