// The counting rules (control-plane/src/ratelimit/window.ts) against both stores:
// in memory, and in a real Redis running the Lua script. Time is a test clock
// passed to the stores, so windows are walked through without waiting.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MemoryCounterStore } from '../../control-plane/src/ratelimit/memory-store.ts';
import { RedisCounterStore } from '../../control-plane/src/ratelimit/redis-store.ts';
import { IoredisRunner } from '../../control-plane/src/ratelimit/ioredis-runner.ts';
import type { CounterStore } from '../../control-plane/src/ratelimit/store.ts';
import { bucketMs, type CounterAlgorithm, type CounterSpec } from '../../control-plane/src/ratelimit/window.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { Redis } from 'ioredis';

let redis: TestRedis;
const runners: IoredisRunner[] = [];

before(async () => {
  redis = await startRedis();
});

after(async () => {
  for (const runner of runners) await runner.close();
  await redis?.close();
});

/** A store of each kind on one shared test clock. */
type Kind = 'memory' | 'redis';
const KINDS: Kind[] = ['memory', 'redis'];

async function newStore(kind: Kind, clock: () => number): Promise<CounterStore> {
  if (kind === 'memory') return new MemoryCounterStore(clock);
  // A generous command timeout: these tests judge the counting, not Redis' speed.
  const runner = new IoredisRunner(redis.url, { commandTimeoutMs: 5_000 });
  runners.push(runner);
  assert.ok(await runner.connect(), 'connects to the test Redis');
  return new RedisCounterStore(runner, { clock });
}

let keySerial = 0;
/** A fresh counter key (Redis keeps keys between property runs; each run starts empty). */
function freshKey(): string {
  keySerial += 1;
  return `{rl:test}:p${keySerial}:${process.pid}`;
}

function spec(key: string, algorithm: CounterAlgorithm, capacity: number, windowMs: number, hits = 1): CounterSpec {
  return { key, algorithm, capacity, windowMs, hits };
}

// Windows are 60 s of test time, and a whole property run takes far less real time:
// Redis expires keys by its own clock (PEXPIRE window + bucket), so no key expires
// while a run still counts on it.
const WINDOW_MS = 60_000;

/** Arrival times: sorted offsets (ms) over three windows, with bursts at the same instant allowed. */
const arrivals = fc
  .array(fc.oneof(fc.integer({ min: 0, max: 3 * WINDOW_MS }), fc.constantFrom(WINDOW_MS - 1, WINDOW_MS, 2 * WINDOW_MS - 1, 2 * WINDOW_MS)), {
    minLength: 1,
    maxLength: 60,
  })
  .map((times) => times.sort((a, b) => a - b));

for (const kind of KINDS) {
  describe(`sliding window (${kind} store)`, () => {
    test('no boundary burst: no rolling window of the window length ever holds more than the capacity; and a request is refused only when an exact log one bucket longer would also refuse it', async () => {
      let now = 0;
      const store = await newStore(kind, () => now);
      await fc.assert(
        fc.asyncProperty(arrivals, fc.integer({ min: 1, max: 12 }), fc.integer({ min: -5 * WINDOW_MS, max: 5 * WINDOW_MS }), async (times, capacity, origin) => {
          const key = freshKey();
          const s = spec(key, 'sliding_window', capacity, WINDOW_MS);
          const g = bucketMs('sliding_window', WINDOW_MS);
          const admitted: number[] = [];
          for (const offset of times) {
            now = origin + offset;
            const decision = await store.decide([s]);
            // Exact log one bucket longer: admitted requests in (now - window - g, now].
            const inLongerWindow = admitted.filter((t) => t > now - WINDOW_MS - g).length;
            if (inLongerWindow + 1 <= capacity) assert.ok(decision.admitted, `refused at ${now} with only ${inLongerWindow} in the longer window`);
            if (decision.admitted) admitted.push(now);
          }
          for (const a of admitted) {
            const inWindow = admitted.filter((t) => t > a - WINDOW_MS && t <= a).length;
            assert.ok(inWindow <= capacity, `${inWindow} admitted in (${a - WINDOW_MS}, ${a}] > ${capacity}`);
          }
        }),
        { numRuns: 60 },
      );
    });

    test('Retry-After is honest: a refused client that waits retryAfterMs is admitted, and a moment earlier it would not be', async () => {
      let now = 0;
      const store = await newStore(kind, () => now);
      await fc.assert(
        fc.asyncProperty(arrivals, fc.integer({ min: 1, max: 8 }), async (times, capacity) => {
          const key = freshKey();
          const s = spec(key, 'sliding_window', capacity, WINDOW_MS);
          for (const offset of times) {
            now = offset;
            const decision = await store.decide([s]);
            if (decision.admitted) continue;
            const wait = decision.verdicts[0]!.retryAfterMs;
            assert.ok(wait > 0);
            const refusedAt = now;
            now = refusedAt + wait - 1;
            // One ms early it is still over (and a refused call counts nothing, so this changes nothing).
            assert.equal((await store.decide([s])).admitted, false, `admitted 1 ms before Retry-After (${wait} ms after ${refusedAt})`);
            now = refusedAt + wait;
            assert.equal((await store.decide([s])).admitted, true, `refused at Retry-After (${wait} ms after ${refusedAt})`);
            return;
          }
        }),
        { numRuns: 40 },
      );
    });
  });

  describe(`fixed window (${kind} store)`, () => {
    test('documents the boundary burst: a full window just before the boundary and another just after it are all admitted (2 x capacity within 2 ms)', async () => {
      let now = 0;
      const store = await newStore(kind, () => now);
      const s = spec(freshKey(), 'fixed_window', 10, WINDOW_MS);
      let admitted = 0;
      now = WINDOW_MS - 1;
      for (let i = 0; i < 12; i += 1) if ((await store.decide([s])).admitted) admitted += 1;
      assert.equal(admitted, 10, 'the capacity before the boundary');
      const refused = await store.decide([s]);
      assert.equal(refused.verdicts[0]!.retryAfterMs, 1, 'retry at the boundary');
      now = WINDOW_MS;
      for (let i = 0; i < 12; i += 1) if ((await store.decide([s])).admitted) admitted += 1;
      assert.equal(admitted, 20, 'another full window right after it: 20 admitted in 2 ms');
    });

    test('never more than the capacity within one calendar window', async () => {
      let now = 0;
      const store = await newStore(kind, () => now);
      await fc.assert(
        fc.asyncProperty(arrivals, fc.integer({ min: 1, max: 12 }), async (times, capacity) => {
          const s = spec(freshKey(), 'fixed_window', capacity, WINDOW_MS);
          const perWindow = new Map<number, number>();
          for (const offset of times) {
            now = offset;
            if ((await store.decide([s])).admitted) perWindow.set(Math.floor(now / WINDOW_MS), (perWindow.get(Math.floor(now / WINDOW_MS)) ?? 0) + 1);
          }
          for (const [window, count] of perWindow) assert.ok(count <= capacity, `window ${window}: ${count} > ${capacity}`);
        }),
        { numRuns: 40 },
      );
    });
  });

  describe(`all of a request's counters together (${kind} store)`, () => {
    test('when one counter is over, none is counted', async () => {
      const now = 1_000;
      const store = await newStore(kind, () => now);
      const wide = spec(freshKey(), 'sliding_window', 5, WINDOW_MS);
      const narrow = spec(freshKey(), 'fixed_window', 2, WINDOW_MS);
      const both = [];
      for (let i = 0; i < 4; i += 1) both.push((await store.decide([wide, narrow])).admitted);
      assert.deepEqual(both, [true, true, false, false]);
      const refused = await store.decide([wide, narrow]);
      assert.equal(refused.verdicts[0]!.over, false, 'the wide counter alone would admit');
      assert.equal(refused.verdicts[0]!.used, 2, 'and it counted only the two admitted requests');
      const wideOnly = [];
      for (let i = 0; i < 4; i += 1) wideOnly.push((await store.decide([wide])).admitted);
      assert.deepEqual(wideOnly, [true, true, true, false], 'the refused requests used none of the wide counter');
    });

    test('hits: a call worth several requests counts them all, and one worth more than the capacity is never admitted', async () => {
      const now = 5;
      const store = await newStore(kind, () => now);
      const s = spec(freshKey(), 'sliding_window', 10, WINDOW_MS);
      assert.equal((await store.decide([{ ...s, hits: 7 }])).admitted, true);
      assert.equal((await store.decide([{ ...s, hits: 4 }])).admitted, false);
      assert.equal((await store.decide([{ ...s, hits: 3 }])).verdicts[0]!.used, 10);
      const huge = await store.decide([{ ...s, key: freshKey(), hits: 11 }]);
      assert.equal(huge.admitted, false);
      assert.equal(huge.verdicts[0]!.retryAfterMs, WINDOW_MS);
    });
  });
}

test('the Lua script and the in-memory store give the same verdicts for the same calls', async () => {
  let now = 0;
  const memory = await newStore('memory', () => now);
  const lua = await newStore('redis', () => now);
  const call = fc.record({
    at: fc.integer({ min: 0, max: 200_000 }),
    counters: fc.uniqueArray(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 4 }),
    hits: fc.integer({ min: 1, max: 3 }),
  });
  const shapes: Array<{ algorithm: CounterAlgorithm; capacity: number; windowMs: number }> = [
    { algorithm: 'sliding_window', capacity: 5, windowMs: 60_000 },
    { algorithm: 'fixed_window', capacity: 4, windowMs: 60_000 },
    { algorithm: 'sliding_window', capacity: 3, windowMs: 1_000 },
    { algorithm: 'fixed_window', capacity: 2, windowMs: 1_000 },
  ];
  await fc.assert(
    fc.asyncProperty(fc.array(call, { minLength: 1, maxLength: 40 }), async (calls) => {
      const keys = shapes.map(() => freshKey());
      for (const c of [...calls].sort((a, b) => a.at - b.at)) {
        now = c.at;
        const specs = c.counters.map((i) => ({ key: keys[i]!, ...shapes[i]!, hits: c.hits }));
        assert.deepEqual(await lua.decide(specs), await memory.decide(specs), `at ${now}`);
      }
    }),
    { numRuns: 60 },
  );
});

test('the Lua script and the in-memory store agree on busy counters too (the script reads a summary instead of every bucket)', async () => {
  let now = 0;
  const memory = await newStore('memory', () => now);
  const lua = await newStore('redis', () => now);
  // Many calls per window under a capacity they mostly stay below: most calls take
  // the summary path, with buckets going stale and the limit reached in between.
  const shapes: Array<{ algorithm: CounterAlgorithm; capacity: number; windowMs: number }> = [
    { algorithm: 'sliding_window', capacity: 30, windowMs: 6_000 },
    { algorithm: 'fixed_window', capacity: 25, windowMs: 6_000 },
  ];
  const call = fc.record({
    at: fc.integer({ min: 0, max: 18_000 }),
    counters: fc.uniqueArray(fc.integer({ min: 0, max: 1 }), { minLength: 1, maxLength: 2 }),
    hits: fc.integer({ min: 1, max: 3 }),
  });
  await fc.assert(
    fc.asyncProperty(fc.array(call, { minLength: 1, maxLength: 80 }), async (calls) => {
      const keys = shapes.map(() => freshKey());
      for (const c of [...calls].sort((a, b) => a.at - b.at)) {
        now = c.at;
        const specs = c.counters.map((i) => ({ key: keys[i]!, ...shapes[i]!, hits: c.hits }));
        assert.deepEqual(await lua.decide(specs), await memory.decide(specs), `at ${now}`);
      }
    }),
    { numRuns: 40 },
  );
});

test('Redis: a busy counter reads its whole hash only when a bucket goes stale, not on every call (admitted or refused)', async () => {
  let now = 7 * WINDOW_MS;
  const store = await newStore('redis', () => now);
  const admin = new Redis(redis.url);
  try {
    const wholeReads = async () => Number(/cmdstat_hgetall:calls=(\d+)/.exec(await admin.info('commandstats'))?.[1] ?? 0);
    const s = spec(freshKey(), 'sliding_window', 150, WINDOW_MS);
    const before = await wholeReads();
    // 100 calls in one bucket: the first finds a new key (no summary yet), the rest the summary.
    for (let i = 0; i < 100; i += 1) assert.equal((await store.decide([s])).verdicts[0]!.used, i + 1);
    assert.equal((await wholeReads()) - before, 1, 'one whole read, for the new key');
    // A window later every bucket is stale: one whole read drops them, then the summary again.
    now += WINDOW_MS + bucketMs('sliding_window', WINDOW_MS);
    for (let i = 0; i < 100; i += 1) assert.equal((await store.decide([s])).verdicts[0]!.used, i + 1);
    assert.equal((await wholeReads()) - before, 2, 'one more, for the stale bucket');
    // Over the limit, Retry-After walks buckets oldest first (here the first is enough).
    const refused = [];
    for (let i = 0; i < 60; i += 1) refused.push(await store.decide([s]));
    assert.deepEqual(refused.map((d) => d.admitted), [...Array<boolean>(50).fill(true), ...Array<boolean>(10).fill(false)]);
    assert.ok(refused.slice(50).every((d) => d.verdicts[0]!.retryAfterMs === WINDOW_MS + bucketMs('sliding_window', WINDOW_MS) - 1), 'all 150 are in the one bucket');
    assert.equal((await wholeReads()) - before, 2, 'refused calls did not read the whole hash');
  } finally {
    admin.disconnect();
  }
});

test('Redis: a server that lost its script cache (SCRIPT FLUSH) is sent the script again, also when calls share one pipelined write', async () => {
  const now = 3 * WINDOW_MS;
  const store = await newStore('redis', () => now);
  const admin = new Redis(redis.url);
  try {
    const s = spec(freshKey(), 'sliding_window', 100, WINDOW_MS);
    assert.equal((await store.decide([s])).verdicts[0]!.used, 1);
    await admin.script('FLUSH');
    // Started in one event-loop turn, so the client writes them together (auto-pipelining).
    const together = await Promise.all(Array.from({ length: 5 }, () => store.decide([s])));
    assert.ok(together.every((d) => d.admitted));
    assert.equal((await store.decide([s])).verdicts[0]!.used, 7, 'each call counted once');
  } finally {
    admin.disconnect();
  }
});

test('Redis: concurrent calls from two service replicas (two clients) admit exactly the capacity', async () => {
  const [a, b] = [await newStore('redis', Date.now), await newStore('redis', Date.now)];
  const s = spec(freshKey(), 'sliding_window', 100, 3_600_000);
  const other = spec(freshKey(), 'fixed_window', 1_000, 3_600_000);
  const decisions = await Promise.all(Array.from({ length: 300 }, (_, i) => (i % 2 === 0 ? a : b).decide([s, other])));
  assert.equal(decisions.filter((d) => d.admitted).length, 100);
  const last = await a.decide([other]);
  assert.equal(last.verdicts[0]!.used, 101, 'the other counter counted only the 100 admitted calls (plus this one)');
});

test('memory store: counters nobody has used for a whole window are swept, so idle keys do not pile up', async () => {
  let now = 0;
  const store = new MemoryCounterStore(() => now);
  for (let i = 0; i < 50; i += 1) await store.decide([spec(`{rl:test}:idle:${i}`, 'sliding_window', 5, WINDOW_MS)]);
  assert.equal(store.size, 50);
  now = WINDOW_MS + bucketMs('sliding_window', WINDOW_MS) + 10_000;
  await store.decide([spec('{rl:test}:fresh', 'fixed_window', 5, WINDOW_MS)]);
  assert.equal(store.size, 1);
});
