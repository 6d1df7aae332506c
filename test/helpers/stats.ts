// Sizing statistical assertions. A weighted split is checked by counting where
// n requests went; with Envoy picking each request's cluster at random, the
// count is Binomial(n, p) and a "within t points" check fails by luck alone
// with the probability computed here, exactly (no normal approximation). Tests
// derive their request counts from a false-failure budget instead of guessing.

/** P(|X/n - p| > tolerance) for X ~ Binomial(n, p): the chance a correct split fails the check. */
export function binomialMissRate(n: number, p: number, tolerance: number): number {
  if (p <= 0 || p >= 1) return 0;
  const logNFactorial = logFactorial(n);
  let miss = 0;
  for (let k = 0; k <= n; k++) {
    if (Math.abs(k / n - p) <= tolerance + 1e-12) continue;
    miss += Math.exp(logNFactorial - logFactorial(k) - logFactorial(n - k) + k * Math.log(p) + (n - k) * Math.log(1 - p));
  }
  return miss;
}

/** The smallest multiple of `step` requests (at least `minimum`) whose miss rate is below `rate`. */
export function requestsForMissRate(p: number, tolerance: number, rate: number, opts: { step?: number; minimum?: number } = {}): number {
  const step = opts.step ?? 100;
  let n = Math.max(step, opts.minimum ?? step);
  while (binomialMissRate(n, p, tolerance) >= rate) n += step;
  return n;
}

const logFactorials: number[] = [0];
function logFactorial(n: number): number {
  for (let k = logFactorials.length; k <= n; k++) logFactorials.push(logFactorials[k - 1]! + Math.log(k));
  return logFactorials[n]!;
}
