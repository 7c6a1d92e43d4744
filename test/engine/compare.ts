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

/**
 * A row gets the same bits alone as among others: `model`'s logits of the first 44 ids on `three`
 * (another thread count) and, for each of `lengths`, the last row of that prefix alone; then decoding
 * (one row at a time through the cache) gives each step the logits of a full recompute.
 */
export async function expectRowsAsAlone(
  model: LocalModel,
  three: LocalModel,
  inputIds: number[],
  vocab: number,
  lengths: number[],
): Promise<void> {
  const whole = await model.logits(inputIds.slice(0, 44));
  expect(Array.from(await three.logits(inputIds.slice(0, 44)))).toEqual(Array.from(whole));
  for (const length of lengths) {
    const prefix = await model.logits(inputIds.slice(0, length));
    expect(Array.from(prefix.subarray((length - 1) * vocab)), `row ${length - 1}`).toEqual(
      Array.from(whole.subarray((length - 1) * vocab, length * vocab)),
    );
  }
  const reply = await model.generate(
    { inputIds: inputIds.slice(0, 40) },
    { maxTokens: 4, temperature: 0, stopTokens: [], returnLogits: true },
  );
  const decoded = [...inputIds.slice(0, 40), ...reply.tokenIds.slice(0, 3)];
  const recomputed = await model.logits(decoded);
  expect(Array.from(reply.logits as Float32Array)).toEqual(Array.from(recomputed.subarray(39 * vocab)));
}
