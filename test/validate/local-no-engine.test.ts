import { join } from "node:path";
import { describe, expect, it, vi } from "vitest";
import { Dataset } from "../../src/data/dataset.js";
import { writeTinyModel } from "../../src/testing/tiny-model.js";
import { Validator } from "../../src/validate/validator.js";
import { chatRow, tempDir } from "../helpers.js";

// Validating for local training must work where the native addon is not built.
vi.mock("../../src/engine/binding.js", () => {
  throw new Error("the validator loaded the native binding");
});

describe("Validator (local) without the native engine", () => {
  it("reads the tokenizer and config of a model folder, never the binding", async () => {
    const dir = await writeTinyModel(join(await tempDir(), "tiny"));
    const report = await new Validator({ target: "local", model: dir }).validate(
      Dataset.fromArray([chatRow("hi", "hello")]),
    );
    expect(report).toMatchObject({ ok: true, valid: 1 });
  });
});
