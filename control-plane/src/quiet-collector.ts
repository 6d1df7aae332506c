// Full garbage collections in quiet moments after a publish that grew the heap,
// so memory a bulk write needed goes back at once, not 20-40 s later when V8's
// memory reducer gets to it (issue 12; bench/RESULTS.md). Composition-root
// concern: main.ts wires it to the publisher.
import { getHeapStatistics } from 'node:v8';
import type { Log } from './log.ts';

/** Heap growth since the last collection that makes a quiet moment worth a full collection. */
const COLLECT_AFTER_GROWTH_BYTES = 32 * 2 ** 20;
/** How long after the last publish the process counts as quiet. */
const QUIET_MS = 1_000;
/** Collections in a row while each returns at least RETURNED_BYTES (as V8's memory reducer does). */
const MAX_ROUNDS = 3;
const RETURNED_BYTES = 8 * 2 ** 20;

/**
 * A bulk write of thousands of routes leaves hundreds of MiB of garbage in the
 * heap, which V8 keeps resident until its memory reducer gets to it (20-40 s
 * later, bench/RESULTS.md). When node runs with --expose-gc (NODE_OPTIONS in
 * the image's ENV, which deploy/ runs, and scripts/start.sh), full collections once nothing
 * was published for a second return it at once, when the heap grew by more
 * than COLLECT_AFTER_GROWTH_BYTES since the last one. (Not after start-up: measured,
 * a collection then returned nothing; idle memory falls later as V8 shrinks its
 * spaces on its own.) One full collection leaves half-empty pages that the next one compacts, so,
 * like the memory reducer, up to MAX_ROUNDS, a quiet second apart. Cost: a
 * main-thread pause per round (measured in bench/RESULTS.md), only in those
 * quiet moments. Without the flag this does nothing.
 */
export function quietCollector(log: Log): { published(): void; stop(): void } {
  const gc = (globalThis as { gc?: () => void }).gc;
  const heapBytes = () => getHeapStatistics().total_heap_size;
  let timer: NodeJS.Timeout | undefined;
  let heapAfterLast = heapBytes();
  let round = 0;
  const schedule = (always: boolean) => {
    clearTimeout(timer);
    timer = setTimeout(() => collect(always), QUIET_MS);
    timer.unref();
  };
  const collect = (always: boolean) => {
    timer = undefined;
    const before = heapBytes();
    if (!gc || (!always && before - heapAfterLast < COLLECT_AFTER_GROWTH_BYTES)) return;
    const started = performance.now();
    gc();
    heapAfterLast = heapBytes();
    round += 1;
    log.info('sluice: collected garbage once quiet', { round, ms: Math.round(performance.now() - started), heapMiBBefore: Math.round(before / 2 ** 20), heapMiBAfter: Math.round(heapAfterLast / 2 ** 20) });
    if (round < MAX_ROUNDS && before - heapAfterLast >= RETURNED_BYTES) schedule(true);
  };
  return {
    published: () => {
      if (!gc) return;
      round = 0;
      schedule(false);
    },
    stop: () => clearTimeout(timer),
  };
}
