// The counter store: where counts live. Two implementations with the same rules
// (window.ts): memory-store.ts (one replica only) and redis-store.ts (a fleet).
import type { CounterSpec, Decision } from './window.ts';

export interface CounterStore {
  /**
   * Decides all of one request's counters together, atomically: when any counter
   * is over, nothing is counted; otherwise every counter counts its hits. Rejects
   * when the store cannot answer (the service then applies each policy's failure mode).
   */
  decide(specs: readonly CounterSpec[]): Promise<Decision>;
  close(): Promise<void>;
}
