import { expect } from "vitest";
import type { LocalModel } from "../../src/engine/local-model.js";

/** Largest |actual − expected| / max(1, |expected|). */
export function maxRelativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) {
    const e = expected[i] as number;
    worst = Math.max(worst, Math.abs((actual[i] as number) - e) / Math.max(1, Math.abs(e)));
  }
  return worst;
}

/**
 * Sets every attached adapter's B to fixed values in ±100 / `divisor` (PEFT starts B at zero), so
 * that the adapters' products carry values and gradients everywhere.
 */
export function fillLoraB(model: LocalModel, divisor: number): void {
  const weights = model.getLoraWeights();
  for (const [key, values] of weights)
    if (key.endsWith("lora_B.weight"))
      weights.set(
        key,
        values.map((_, i) => (((i * 7919) % 200) - 100) / divisor),
      );
  model.setLoraWeights(weights);
}
