// The store's refusals, which the admin API maps to 4xx/503 problems.
import type { Issue } from '../model/index.ts';

export type StoreErrorCode = 'invalid' | 'not_found' | 'conflict' | 'precondition_failed' | 'unavailable';

/** A failure the admin API maps to a 4xx/503; `issues` name the offending fields. */
export class StoreError extends Error {
  constructor(readonly code: StoreErrorCode, message: string, readonly issues: Issue[] = []) {
    super(message);
    this.name = 'StoreError';
  }
}
