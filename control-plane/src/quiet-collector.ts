// Full garbage collections in quiet moments after a publish that grew the heap,
// so memory a bulk write needed goes back at once, not 20-40 s later when V8's
// memory reducer gets to it (issue 12; bench/RESULTS.md); and what start-up
// leaves (a young generation grown for nothing, half-empty old-space pages)
// kept from an idle control plane. Composition-root concern: main.ts wires it
// to the publisher.
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { isMainThread } from 'node:worker_threads';
import type { Log } from './log.ts';

/**
 * A full collection that moves every live object of the old generation onto as
 * few pages as it needs and gives the rest back, where a plain one (gc()) keeps
 * pages that are only partly live. Start-up leaves the heap like that: in the
 * control plane 34 MiB of old space held 28 MiB of objects, in the request-path
 * worker 12 MiB held 7 (module loading's garbage, spread over every page), and
 * plain collections returned none of it; V8's memory reducer compacts so only
 * 10-20 s later. V8 reads the flag at each full collection, so it is on for
 * this one only (the flag is process-wide: a full collection another thread
 * runs meanwhile compacts too, which only makes it slower). Cost: one pause
 * (~50 ms for the control plane's 35 MiB heap, ~12 ms in the request-path
 * worker). Without --expose-gc it does nothing and returns false.
 */
export function compactingCollection(): boolean {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return false;
  setFlagsFromString('--compact-on-every-full-gc');
  try {
    gc();
  } finally {
    setFlagsFromString('--no-compact-on-every-full-gc');
  }
  return true;
}

/** V8's default --semi-space-growth-factor (`node --v8-options`). */
const V8_SEMI_SPACE_GROWTH_FACTOR = 2;
/** An operator's own --semi-space-growth-factor (a node flag) is left alone. */
const growthSetByOperator = process.execArgv.some((arg) => arg.startsWith('--semi-space-growth-factor'));
let youngGenerationHeld = isMainThread && !growthSetByOperator;

/**
 * Keeps the control plane's young generation at the size it has until start-up
 * is done (youngGenerationForWork(), from quietCollector's startupDone()). Why:
 * start-up keeps nearly everything it allocates (modules, Prisma's engine, the
 * admin API's compiled schemas), and V8 doubles the young generation each time
 * a scavenge keeps more than its size, so start-up alone took it to its 32 MiB
 * maximum (two 16 MiB semi-spaces), which an idle process then
 * held until V8's memory reducer shrank it ~20 s later (nothing from JavaScript
 * shrinks it; idle RSS 3 s after start was 148-159 MiB). A smaller maximum
 * instead (--max-semi-space-size=1) made bulk writes 1.6-1.9x slower, so this
 * only stops the growth while start-up runs; an idle process does not grow it
 * after (growth needs scavenges that keep much), work does. V8 reads the flag at
 * each growth, and resets it when it creates an isolate (a worker thread), so
 * main.ts holds again after starting the request-path worker. Run when this
 * module is evaluated, which the entry (start.ts) makes the first, before
 * main.ts's modules load (loading them grew it from 2 to 8 MiB when main.ts
 * loaded this among them; a command-line flag does not help, V8 resets it
 * too). Main thread only; nothing once start-up is done.
 */
export function holdYoungGeneration(): void {
  if (youngGenerationHeld) setFlagsFromString('--semi-space-growth-factor=1');
}
holdYoungGeneration();

/**
 * Keeps WebAssembly on V8's baseline compiler (Liftoff): the one Wasm module the
 * control plane runs is Prisma's query compiler, and V8's optimising tier
 * (TurboFan) recompiled its hot functions on background threads during
 * start-up, whose compile memory glibc's malloc then kept, fragmented: idle RSS
 * 3 s after start (through start.ts) was 115-121 MiB with it, 109-113 without,
 * the start-up peak 148-154 against 141-145. CPU per one-route write and bulk
 * writes measured no slower without it (bench/write-path.profile.ts,
 * `SCENARIOS=bulk` of bench/propagation.bench.ts): the query compiler's share of
 * a write is small, and the optimising compiles cost CPU too. V8 lists the flag
 * "for testing"; it only takes TurboFan away from Wasm, Liftoff compiles every
 * module completely. Process-wide: it also covers the HTTP parser (Wasm) of
 * node's fetch, which only the request-path worker's JWKS refreshes use, now and
 * then. V8 reads it when it compiles a function, so this runs when the module is
 * evaluated, before Prisma compiles its module (start.ts loads this first).
 * An operator's own --liftoff/--wasm flags (node flags) are left alone.
 */
export function wasmBaselineOnly(): void {
  if (isMainThread && !wasmSetByOperator) setFlagsFromString('--liftoff-only');
}
const wasmSetByOperator = process.execArgv.some((arg) => /^--(no-)?(liftoff|wasm)/.test(arg));
wasmBaselineOnly();

/** V8 sizes the young generation for the work again (once). */
export function youngGenerationForWork(): void {
  if (!youngGenerationHeld) return;
  youngGenerationHeld = false;
  setFlagsFromString(`--semi-space-growth-factor=${V8_SEMI_SPACE_GROWTH_FACTOR}`);
}

/** Heap growth since the last collection that makes a quiet moment worth a full collection. */
const COLLECT_AFTER_GROWTH_BYTES = 32 * 2 ** 20;
/** How long after the last publish the process counts as quiet. */
const QUIET_MS = 1_000;
/** Collections in a row while each returns at least RETURNED_BYTES (as V8's memory reducer does). */
const MAX_ROUNDS = 3;
const RETURNED_BYTES = 8 * 2 ** 20;

export interface QuietCollector {
  /**
   * Start-up is done: once quiet, one compactingCollection() returns what it
   * left, and then the young generation grows for work again (youngGenerationForWork()).
   */
  startupDone(): void;
  /** The publisher published a revision. */
  published(): void;
  stop(): void;
}

/**
 * A bulk write of thousands of routes leaves hundreds of MiB of garbage in the
 * heap, which V8 keeps resident until its memory reducer gets to it (20-40 s
 * later, bench/RESULTS.md). When node runs with --expose-gc (NODE_OPTIONS in
 * the image's ENV, which deploy/ runs, and scripts/start.sh), full collections once nothing
 * was published for a second return it at once, when the heap grew by more
 * than COLLECT_AFTER_GROWTH_BYTES since the last one (and once quiet after
 * startupDone(), one compactingCollection() for what start-up left). One full
 * collection leaves half-empty pages that the next one compacts, so, like the
 * memory reducer, up to MAX_ROUNDS, a quiet second apart. Cost: a
 * main-thread pause per round (measured in bench/RESULTS.md), only in those
 * quiet moments. Without the flag this does nothing.
 */
export function quietCollector(log: Log): QuietCollector {
  const gc = (globalThis as { gc?: () => void }).gc;
  const heapBytes = () => getHeapStatistics().total_heap_size;
  let timer: NodeJS.Timeout | undefined;
  let heapAfterLast = heapBytes();
  let round = 0;
  let startupTimer: NodeJS.Timeout | undefined;
  /** Start-up's compaction, when a publish came before it ran: the next quiet collection does it. */
  let startupCompactionDue = false;
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
    if (startupCompactionDue) {
      startupCompactionDue = false;
      compactingCollection();
      youngGenerationForWork();
    } else gc();
    heapAfterLast = heapBytes();
    round += 1;
    log.info('sluice: collected garbage once quiet', { round, ms: Math.round(performance.now() - started), heapMiBBefore: Math.round(before / 2 ** 20), heapMiBAfter: Math.round(heapAfterLast / 2 ** 20) });
    if (round < MAX_ROUNDS && before - heapAfterLast >= RETURNED_BYTES) schedule(true);
  };
  const compactAfterStartup = () => {
    startupTimer = undefined;
    const before = heapBytes();
    const started = performance.now();
    compactingCollection();
    youngGenerationForWork();
    heapAfterLast = heapBytes();
    log.info('sluice: compacted the heap once quiet after start-up', { ms: Math.round(performance.now() - started), heapMiBBefore: Math.round(before / 2 ** 20), heapMiBAfter: Math.round(heapAfterLast / 2 ** 20) });
  };
  return {
    startupDone: () => {
      if (!gc) return youngGenerationForWork();
      startupTimer = setTimeout(compactAfterStartup, QUIET_MS);
      startupTimer.unref();
    },
    published: () => {
      if (!gc) return;
      // Start-up's compaction not run yet (a write came first): the collection once quiet after this
      // publish is it, whatever the growth. (Left on its own timer, refreshed, it fired first and took
      // the growth this collection was for.)
      if (startupTimer) {
        clearTimeout(startupTimer);
        startupTimer = undefined;
        startupCompactionDue = true;
      }
      round = 0;
      schedule(startupCompactionDue);
    },
    stop: () => {
      clearTimeout(timer);
      clearTimeout(startupTimer);
    },
  };
}
