// Counters in this process's memory: correct for one rate-limit service replica
// only (two replicas would each admit the full limit). Used when no REDIS_URL is set.
import type { CounterStore } from './store.ts';
import { afterAdmission, assess, bucketMs, countedRange, type CounterSpec, type Decision } from './window.ts';

interface Counter {
  buckets: Map<number, number>;
  /** Clock time after which no bucket of this counter can count any more. */
  expiresAtMs: number;
}

/** How often (clock ms) expired counters are swept, so idle keys do not pile up. */
const SWEEP_EVERY_MS = 10_000;

export class MemoryCounterStore implements CounterStore {
  private readonly counters = new Map<string, Counter>();
  private nextSweepMs = 0;

  /** `clock` is injectable so tests can walk through windows without waiting. */
  constructor(private readonly clock: () => number = Date.now) {}

  // Synchronous inside: nothing else runs between reading and writing the counters,
  // which is what makes the all-or-none decision atomic here.
  decide(specs: readonly CounterSpec[]): Promise<Decision> {
    const now = this.clock();
    this.sweep(now);
    const verdicts = specs.map((spec) => assess(this.counters.get(spec.key)?.buckets ?? new Map(), spec, now));
    const admitted = verdicts.every((verdict) => !verdict.over);
    if (!admitted) return Promise.resolve({ admitted, verdicts });
    return Promise.resolve({ admitted, verdicts: specs.map((spec, i) => this.count(spec, verdicts[i]!, now)) });
  }

  private count(spec: CounterSpec, verdict: Decision['verdicts'][number], now: number) {
    const { oldest, newest } = countedRange(spec, now);
    let counter = this.counters.get(spec.key);
    if (!counter) this.counters.set(spec.key, (counter = { buckets: new Map(), expiresAtMs: 0 }));
    for (const index of counter.buckets.keys()) if (index < oldest) counter.buckets.delete(index);
    counter.buckets.set(newest, (counter.buckets.get(newest) ?? 0) + spec.hits);
    counter.expiresAtMs = now + spec.windowMs + bucketMs(spec.algorithm, spec.windowMs);
    return afterAdmission(verdict, spec, now);
  }

  private sweep(now: number): void {
    if (now < this.nextSweepMs) return;
    this.nextSweepMs = now + SWEEP_EVERY_MS;
    for (const [key, counter] of this.counters) if (counter.expiresAtMs <= now) this.counters.delete(key);
  }

  /** Live counters (tests check that idle ones are swept). */
  get size(): number {
    return this.counters.size;
  }

  close(): Promise<void> {
    this.counters.clear();
    return Promise.resolve();
  }
}
