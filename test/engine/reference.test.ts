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
