/**
 * The statistics of an evaluation: percentile-bootstrap intervals of a mean and of a paired mean
 * difference, the exact sign test and the Wilcoxon signed-rank test (as scipy computes them).
 * Seeded: the same scores and seed give the same intervals everywhere.
 */
import { seededRandom } from "../core/stats.js";

/** numpy's default (linear) quantile of sorted values. */
function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const position = (sorted.length - 1) * q;
  const low = Math.floor(position);
  const high = Math.ceil(position);
  const a = sorted[low] as number;
  return a + ((sorted[high] as number) - a) * (position - low);
}

export const mean = (values: readonly number[]): number =>
  values.length === 0 ? Number.NaN : values.reduce((sum, value) => sum + value, 0) / values.length;

/**
 * A 95 % (or `level`) percentile-bootstrap interval of the mean: `resamples` means of resamples with
 * replacement, their 2.5th and 97.5th percentiles. One value (or none) has no spread: [v, v].
 */
export function bootstrapInterval(
  values: readonly number[],
  { resamples = 10_000, seed = 0, level = 0.95 }: { resamples?: number; seed?: number; level?: number } = {},
): [number, number] {
  const n = values.length;
  if (n === 0) return [Number.NaN, Number.NaN];
  if (n === 1 || values.every((value) => value === values[0]))
    return [values[0] as number, values[0] as number];
  const random = seededRandom(seed);
  const means = new Float64Array(resamples);
  for (let r = 0; r < resamples; r++) {
    let sum = 0;
    for (let i = 0; i < n; i++) sum += values[Math.floor(random() * n)] as number;
    means[r] = sum / n;
  }
  means.sort();
  const tail = (1 - level) / 2;
  return [quantile(means, tail), quantile(means, 1 - tail)];
}

/** The two-sided p-value of the exact sign test: `wins` against `losses`, ties dropped. */
export function signTest(wins: number, losses: number): number {
  const n = wins + losses;
  if (n === 0) return 1;
  const k = Math.min(wins, losses);
  // P(X <= k) for X ~ Binomial(n, 1/2), summed in log space so that large n does not overflow.
  let logTerm = -n * Math.LN2; // C(n, 0) / 2^n
  let cumulative = Math.exp(logTerm);
  for (let i = 1; i <= k; i++) {
    logTerm += Math.log((n - i + 1) / i);
    cumulative += Math.exp(logTerm);
  }
  return Math.min(1, 2 * cumulative);
}

/** The standard normal's upper tail, P(Z > z), with a relative error below 1.2e-7. */
export function normalSurvival(z: number): number {
  return 0.5 * erfc(z / Math.SQRT2);
}

/** The complementary error function: Numerical Recipes' erfcc (Chebyshev fit, fractional error < 1.2e-7). */
function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const poly =
    -1.26551223 +
    t *
      (1.00002368 +
        t *
          (0.37409196 +
            t *
              (0.09678418 +
                t *
                  (-0.18628806 +
                    t *
                      (0.27886807 +
                        t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  const result = t * Math.exp(-z * z + poly);
  return x >= 0 ? result : 2 - result;
}

export interface WilcoxonResult {
  /** min(W+, W−): the smaller rank sum. */
  statistic: number;
  pValue: number;
  /** Pairs left once the zero differences are dropped. */
  n: number;
  method: "exact" | "normal";
}

/**
 * The Wilcoxon signed-rank test of paired differences, two-sided, as scipy's `wilcoxon` computes it
 * with `zero_method="wilcox"`: zero differences dropped, tied magnitudes given their average rank;
 * the exact distribution for up to 25 pairs without ties, else the normal approximation with the tie
 * correction of the variance and a continuity correction (scipy's `correction=True`).
 */
export function wilcoxon(
  differences: readonly number[],
  { method = "auto", correction = true }: { method?: "auto" | "exact" | "normal"; correction?: boolean } = {},
): WilcoxonResult {
  const nonZero = differences.filter((difference) => difference !== 0);
  const n = nonZero.length;
  if (n === 0) return { statistic: 0, pValue: 1, n: 0, method: "exact" };
  const order = nonZero
    .map((value, index) => ({ magnitude: Math.abs(value), index }))
    .sort((a, b) => a.magnitude - b.magnitude);
  const ranks = new Float64Array(n);
  const tieSizes: number[] = [];
  for (let start = 0; start < n; ) {
    let end = start;
    while (
      end + 1 < n &&
      (order[end + 1] as { magnitude: number }).magnitude ===
        (order[start] as { magnitude: number }).magnitude
    )
      end++;
    const rank = (start + end) / 2 + 1;
    for (let k = start; k <= end; k++) ranks[(order[k] as { index: number }).index] = rank;
    if (end > start) tieSizes.push(end - start + 1);
    start = end + 1;
  }
  let plus = 0;
  let minus = 0;
  nonZero.forEach((value, index) => {
    if (value > 0) plus += ranks[index] as number;
    else minus += ranks[index] as number;
  });
  const statistic = Math.min(plus, minus);
  if (method === "exact" || (method === "auto" && n <= 25 && tieSizes.length === 0)) {
    // counts[s] = the number of sign assignments whose positive ranks sum to s.
    const total = (n * (n + 1)) / 2;
    let counts = new Float64Array(total + 1);
    counts[0] = 1;
    for (let rank = 1; rank <= n; rank++) {
      const next = new Float64Array(total + 1);
      for (let s = 0; s <= total; s++) {
        const c = counts[s] as number;
        if (c === 0) continue;
        next[s] = (next[s] as number) + c;
        next[s + rank] = (next[s + rank] as number) + c;
      }
      counts = next;
    }
    let below = 0;
    for (let s = 0; s <= statistic; s++) below += counts[s] as number;
    return { statistic, pValue: Math.min(1, (2 * below) / 2 ** n), n, method: "exact" };
  }
  const expected = (n * (n + 1)) / 4;
  let variance = (n * (n + 1) * (2 * n + 1)) / 24;
  for (const t of tieSizes) variance -= (t * (t * t - 1)) / 48;
  const sd = Math.sqrt(variance);
  const continuity = correction ? 0.5 * Math.sign(statistic - expected) : 0;
  const z = sd > 0 ? (statistic - expected - continuity) / sd : 0;
  return { statistic, pValue: Math.min(1, 2 * normalSurvival(Math.abs(z))), n, method: "normal" };
}
