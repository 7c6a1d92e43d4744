import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { availableKernels } from "../../src/engine/binding.js";
import { LocalModel } from "../../src/engine/local-model.js";
import { tempDir } from "../helpers.js";
import { maxRelativeError } from "./compare.js";
import { REFERENCE_INPUT, TINY_MODELS, writeTinyModel } from "./tiny-model.js";

const reference = JSON.parse(
  readFileSync(new URL("./reference/reference.json", import.meta.url), "utf8"),
) as {
  logits: Record<string, number[]>;
};

describe("logits match PyTorch reference values (reference/make_reference.py)", () => {
  for (const [name, config] of Object.entries(TINY_MODELS)) {
    for (const kernels of availableKernels()) {
      it(`${name} (${config.architectures[0]}, ${config.torch_dtype}) on the ${kernels} path`, async () => {
        const dir = await writeTinyModel(join(await tempDir(), name), config);
        await using model = await LocalModel.load(dir, { kernels });
        expect(model.engine.kernels).toBe(kernels);
        const logits = await model.logits(REFERENCE_INPUT);
        expect(logits.length).toBe(REFERENCE_INPUT.length * config.vocab_size);
        const error = maxRelativeError(logits, reference.logits[name] as number[]);
        expect(error).toBeLessThan(1e-4);
      });
    }
  }
});

describe("kernel paths and threads", () => {
  it("every SIMD path gives the scalar reference's logits within 1e-5 relative", async () => {
    for (const [name, config] of Object.entries(TINY_MODELS)) {
      const dir = await writeTinyModel(join(await tempDir(), name), config);
      await using scalar = await LocalModel.load(dir, { kernels: "scalar" });
      const expected = await scalar.logits(REFERENCE_INPUT);
      for (const kernels of availableKernels().filter((path) => path !== "scalar")) {
        await using model = await LocalModel.load(dir, { kernels });
        expect(
          maxRelativeError(await model.logits(REFERENCE_INPUT), expected),
          `${name} ${kernels}`,
        ).toBeLessThan(1e-5);
      }
    }
  });

  it("gives bit-identical results for any thread count", async () => {
    const dir = await writeTinyModel(
      join(await tempDir(), "llama"),
      TINY_MODELS.llama as (typeof TINY_MODELS)[string],
    );
    await using one = await LocalModel.load(dir, { threads: 1 });
    await using three = await LocalModel.load(dir, { threads: 3 });
    expect(three.engine.threads).toBe(3);
    expect(Array.from(await three.logits(REFERENCE_INPUT))).toEqual(
      Array.from(await one.logits(REFERENCE_INPUT)),
    );
  });
});
