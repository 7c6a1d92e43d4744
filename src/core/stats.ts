/** Summary of a list of numbers, as the OpenAI Cookbook prints it. */
export interface Distribution {
  min: number;
  max: number;
  mean: number;
  median: number;
  p10: number;
  p90: number;
}

/** Quantile with linear interpolation between closest ranks (numpy's default), on sorted values. */
function quantile(sorted: Float64Array, q: number): number {
  const position = (sorted.length - 1) * q;
  const lower = Math.floor(position);
  const upper = Math.ceil(position);
  const low = sorted[lower] as number;
  return low + ((sorted[upper] as number) - low) * (position - lower);
}

/** The distribution of `values`; all zeros for an empty list. */
export function distribution(values: ArrayLike<number>): Distribution {
  if (values.length === 0) return { min: 0, max: 0, mean: 0, median: 0, p10: 0, p90: 0 };
  const sorted = Float64Array.from(values).sort();
  let sum = 0;
  for (const value of sorted) sum += value;
  return {
    min: sorted[0] as number,
    max: sorted[sorted.length - 1] as number,
    mean: sum / sorted.length,
    median: quantile(sorted, 0.5),
    p10: quantile(sorted, 0.1),
    p90: quantile(sorted, 0.9),
  };
}

/** A growable list of numbers in a typed array: 8 bytes a value, for statistics over millions of examples. */
export class NumberList {
  #values = new Float64Array(1024);
  #length = 0;

  push(value: number): void {
    if (this.#length === this.#values.length) {
      const grown = new Float64Array(this.#values.length * 2);
      grown.set(this.#values);
      this.#values = grown;
    }
    this.#values[this.#length++] = value;
  }

  get length(): number {
    return this.#length;
  }

  values(): Float64Array {
    return this.#values.subarray(0, this.#length);
  }
}

/** A small seeded PRNG (mulberry32): the same seed gives the same shuffle and split everywhere. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
