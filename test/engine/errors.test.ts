/**
 * Bad models and bad input give a JS error with a message and a code, never a crash: the process
 * stays up and the next call works.
 */
import { readFileSync } from "node:fs";
import { readFile, rm, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  DisposedError,
  EngineError,
  ModelFormatError,
  TunekitError,
  ValidationError,
} from "../../src/core/errors.js";
import {
  bindingCandidates,
  isNativeErrorCode,
  kernelPathFromEnv,
  loadBinding,
  loadBindingFrom,
  type NativeModel,
  type NativeTensor,
} from "../../src/engine/binding.js";
import { nativeConfig, parseModelConfig } from "../../src/engine/config.js";
import { LocalModel } from "../../src/engine/local-model.js";
import { readModelTensors } from "../../src/engine/safetensors.js";
import { tempDir } from "../helpers.js";
import { TINY_MODELS, type TinyConfig, writeTinyModel } from "./tiny-model.js";

const llama = TINY_MODELS.llama as TinyConfig;

async function tinyFolder(config: TinyConfig = llama): Promise<string> {
  return writeTinyModel(join(await tempDir(), "model"), config);
}

/** Rewrites a safetensors file's header through `edit`, keeping the data as it is. */
async function editHeader(
  file: string,
  edit: (header: Record<string, { data_offsets: number[]; dtype: string; shape: number[] }>) => void,
) {
  const bytes = await readFile(file);
  const length = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + length).toString());
  edit(header);
  const json = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  await writeFile(file, Buffer.concat([prefix, json, bytes.subarray(8 + length)]));
}

async function loadError(dir: string): Promise<TunekitError> {
  const error = await LocalModel.load(dir).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(TunekitError.isInstance(error), String(error)).toBe(true);
  return error as TunekitError;
}

describe("loading a bad model folder", () => {
  it("names a missing folder, config, weights file or tokenizer", async () => {
    const missing = await loadError(join(await tempDir(), "nothing-here"));
    expect(missing).toBeInstanceOf(ModelFormatError);
    expect(missing.code).toBe("file_not_found");
    for (const file of ["config.json", "model.safetensors", "tokenizer.json"]) {
      const dir = await tinyFolder();
      await rm(join(dir, file));
      const error = await loadError(dir);
      expect(error.code, file).toBe("file_not_found");
      expect(error.message).toContain(file);
    }
  });

  it("finds a truncated safetensors file and a header that lies about sizes", async () => {
    const truncated = await tinyFolder();
    const file = join(truncated, "model.safetensors");
    await truncate(file, readFileSync(file).length - 100);
    let error = await loadError(truncated);
    expect(error.code).toBe("bad_safetensors");
    expect(error.message).toMatch(/truncated/);
    expect(error.message).toContain("model.safetensors");

    await truncate(file, 6);
    expect((await loadError(truncated)).message).toMatch(/less than the 8-byte header length/);

    const lying = await tinyFolder();
    await editHeader(join(lying, "model.safetensors"), (header) => {
      const tensor = header["model.norm.weight"] as { data_offsets: number[] };
      tensor.data_offsets = [tensor.data_offsets[0] as number, (tensor.data_offsets[1] as number) + 4];
    });
    error = await loadError(lying);
    expect(error.code).toBe("bad_safetensors");
    expect(error.message).toMatch(
      /model\.norm\.weight: 132 bytes of data for shape \[32\] in F32, which needs 128/,
    );

    const huge = await tinyFolder();
    const bytes = await readFile(join(huge, "model.safetensors"));
    bytes.writeBigUInt64LE(BigInt(bytes.length), 0);
    await writeFile(join(huge, "model.safetensors"), bytes);
    expect((await loadError(huge)).message).toMatch(/the header claims \d+ bytes but the file has only/);

    const overlapping = await tinyFolder();
    await editHeader(join(overlapping, "model.safetensors"), (header) => {
      const norm = header["model.norm.weight"] as { data_offsets: number[] };
      const embed = header["model.embed_tokens.weight"] as { data_offsets: number[] };
      norm.data_offsets = [embed.data_offsets[0] as number, (embed.data_offsets[0] as number) + 128];
    });
    expect((await loadError(overlapping)).message).toMatch(/overlaps/);
  });

  it("names a missing tensor and a shape that does not fit the config", async () => {
    const dir = await tinyFolder();
    await editHeader(join(dir, "model.safetensors"), (header) => {
      delete header["model.layers.1.mlp.up_proj.weight"];
    });
    let error = await loadError(dir);
    expect(error.code).toBe("missing_tensor");
    expect(error.message).toMatch(/missing tensor model\.layers\.1\.mlp\.up_proj\.weight/);

    const wrong = await tinyFolder();
    await writeFile(join(wrong, "config.json"), JSON.stringify({ ...llama, intermediate_size: 50 }));
    error = await loadError(wrong);
    expect(error.code).toBe("shape_mismatch");
    expect(error.message).toMatch(
      /model\.layers\.0\.mlp\.gate_proj\.weight has shape \[48, 32\], the config needs \[50, 32\]/,
    );
  });

  it("refuses an unsupported architecture, activation, rope scaling or dtype", async () => {
    const gpt2 = await tinyFolder();
    await writeFile(
      join(gpt2, "config.json"),
      JSON.stringify({ ...llama, architectures: ["GPT2LMHeadModel"] }),
    );
    let error = await loadError(gpt2);
    expect(error.code).toBe("unsupported_architecture");
    expect(error.message).toMatch(/GPT2LMHeadModel.*LlamaForCausalLM/);
    expect(error.location?.path).toBe("architectures");

    expect(() => parseModelConfig({ ...llama, hidden_act: "gelu" })).toThrow(/hidden_act "gelu"/);
    expect(() =>
      nativeConfig(parseModelConfig({ ...llama, rope_scaling: { rope_type: "yarn", factor: 4 } })),
    ).toThrow(/rope_scaling type "yarn"/);
    expect(() => parseModelConfig({ ...llama, hidden_size: "big" })).toThrow(ModelFormatError);
    expect(() => parseModelConfig({ ...llama, num_key_value_heads: 3 })).toThrow(
      /multiple of num_key_value_heads/,
    );

    const ints = await tinyFolder();
    await editHeader(join(ints, "model.safetensors"), (header) => {
      (header["model.norm.weight"] as { dtype: string }).dtype = "I32";
    });
    error = await loadError(ints);
    expect(error.code).toBe("unsupported_dtype");
    expect(error.message).toMatch(/I32/);
    expect(error.location?.path).toBe("model.norm.weight");
  });
});

describe("bad input to a loaded model", () => {
  it("rejects token ids out of range, bad labels and bad options, and keeps working", async () => {
    await using model = await LocalModel.load(await tinyFolder());
    await expect(model.logits([1, 64])).rejects.toThrow(ValidationError);
    await expect(model.logits([1, -1])).rejects.toThrow(/inputIds\[1\] = -1 is not a token id in \[0, 64\)/);
    await expect(model.logits([1.5])).rejects.toThrow(/not a token id/);
    await expect(model.loss([1, 2, 3], [1, 2])).rejects.toThrow(/labels has 2 entries for 3/);
    await expect(model.loss([1, 2, 3], [1, 2, 99])).rejects.toThrow(/label 99 at position 2/);
    await expect(model.generate({ inputIds: [] })).rejects.toThrow(/no tokens/);
    await expect(model.generate({ inputIds: [1] }, { topP: 0 })).rejects.toThrow(/topP/);
    await expect(model.generate({ inputIds: [1] }, { maxTokens: -1 })).rejects.toThrow(/maxTokens/);
    await expect(model.generate({ inputIds: [1] }, { stopTokens: [640] })).rejects.toThrow(/stopTokens\[0\]/);
    await expect(model.logits(Array.from({ length: 129 }, () => 1))).rejects.toThrow(
      /exceed max_position_embeddings/,
    );
    expect((await model.logits([1, 2])).length).toBe(2 * 64);
  });

  it("checks at the native boundary too, whatever the TypeScript side lets through", async () => {
    const binding = loadBinding();
    expect(() => binding.loadModel({} as never)).toThrow(/config must be an object/);
    expect(() => binding.quantizeNF4("x" as never, 64, false)).toThrow(/Float32Array/);
    const dir = await tinyFolder();
    const file = join(dir, "model.safetensors");
    const config = nativeConfig(parseModelConfig(llama));
    const tensor = {
      name: "model.norm.weight",
      file: 0,
      offset: 1e9,
      bytes: 128,
      dtype: "F32" as const,
      shape: [32],
    };
    await expect(
      binding.loadModel({ config, files: [file], tensors: [tensor], options: { quantization: "none" } }),
    ).rejects.toMatchObject({
      code: "missing_tensor",
      message: expect.stringMatching(/missing tensor model\.embed_tokens\.weight/),
    });
    await using model = await LocalModel.load(dir);
    const native = (await binding
      .loadModel({
        config,
        files: [file],
        tensors: [
          { ...tensor, offset: 1e9, name: "model.embed_tokens.weight", shape: [64, 32], bytes: 8192 },
        ],
        options: { quantization: "none" },
      })
      .catch((error: Error) => error)) as Error;
    expect(native).toMatchObject({
      code: "bad_safetensors",
      message: expect.stringMatching(/lies beyond the end of .*model\.safetensors/),
    });
    expect((await model.logits([1])).length).toBe(64);
  });

  it("throws a named error after dispose (which is idempotent)", async () => {
    const model = await LocalModel.load(await tinyFolder());
    model.dispose();
    model.dispose();
    const error = await model.logits([1]).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(DisposedError);
    expect((error as DisposedError).code).toBe("disposed");
    expect(() => model.weightBytes()).toThrow(/disposed/);
  });

  it("checks TUNEKIT_CPU", () => {
    expect(kernelPathFromEnv({ TUNEKIT_CPU: "AVX2" })).toBe("avx2");
    expect(kernelPathFromEnv({})).toBe("");
    expect(() => kernelPathFromEnv({ TUNEKIT_CPU: "neon" })).toThrow(/scalar, avx2 or avx512/);
  });
});

describe("the loader", () => {
  it("takes the local build first, then the prebuilt binary for this platform", () => {
    const [local, prebuilt] = bindingCandidates("/pkg");
    expect(local).toBe(join("/pkg", "native/build/Release/tunekit.node"));
    expect(prebuilt).toBe(join("/pkg", "prebuilds", `${process.platform}-${process.arch}`, "tunekit.node"));
  });

  it("says what is missing when there is no binary, and why one did not load", async () => {
    const dir = await tempDir();
    const missing = (() => {
      try {
        loadBindingFrom([join(dir, "none.node")]);
      } catch (error) {
        return error as EngineError;
      }
    })();
    expect(missing).toBeInstanceOf(EngineError);
    expect(missing?.code).toBe("engine_unavailable");
    expect(missing?.message).toMatch(
      /not built for .*none\.node[\s\S]*npm rebuild tunekit[\s\S]*C\+\+17 compiler/,
    );
    await writeFile(join(dir, "broken.node"), "not a shared library");
    expect(() => loadBindingFrom([join(dir, "broken.node")])).toThrow(/did not load:\n {2}.*broken\.node: /);
  });
});

/** A model loaded straight through the binding, with no TypeScript checks in front of it. */
async function rawModel(dir: string, config: TinyConfig = llama): Promise<NativeModel> {
  const tensors: NativeTensor[] = [...(await readModelTensors(dir)).values()].map((tensor) => ({
    ...tensor,
    dtype: tensor.dtype as NativeTensor["dtype"],
    file: 0,
  }));
  return loadBinding().loadModel({
    config: nativeConfig(parseModelConfig(config)),
    files: [join(dir, "model.safetensors")],
    tensors,
    options: { quantization: "none" },
  });
}

/** What a call threw or rejected with. */
async function failure(call: () => unknown): Promise<{ code?: unknown; message: string }> {
  try {
    await call();
  } catch (error) {
    return error as { code?: unknown; message: string };
  }
  throw new Error("expected the call to fail");
}

describe("native errors carry their code across the boundary", () => {
  it("the engine's codes are exactly those TypeScript maps to error classes", () => {
    const codes = loadBinding().errorCodes;
    expect(codes).toHaveLength(15);
    for (const code of codes) expect(isNativeErrorCode(code), code).toBe(true);
  });

  it("bad ids, a sequence too long, no adapter, a shape mismatch and a disposed model, straight from the engine", async () => {
    const native = await rawModel(await tinyFolder());
    expect(await failure(() => native.logits(Int32Array.of(1, 64)))).toMatchObject({
      code: "token_out_of_range",
      message: expect.stringMatching(/token id 64 at position 1/),
    });
    expect(await failure(() => native.loss(Int32Array.of(1, 2), Int32Array.of(1, 99), true))).toMatchObject({
      code: "token_out_of_range",
    });
    expect(await failure(() => native.logits(new Int32Array(129).fill(1)))).toMatchObject({
      code: "context_length_exceeded",
    });
    expect(
      await failure(() =>
        native.forwardBackward(Int32Array.of(1, 2), Int32Array.of(1, 2), Int32Array.of(2), 0),
      ),
    ).toMatchObject({ code: "no_adapter" });
    const wrong = {
      layer: 0,
      projection: "q_proj",
      rank: 2,
      scale: 1,
      a: new Float32Array(3),
      b: new Float32Array(64),
    };
    expect(await failure(() => native.setLora([wrong]))).toMatchObject({
      code: "shape_mismatch",
      message: expect.stringMatching(/A must hold rank × 32 values/),
    });
    expect(await failure(() => native.logits([1] as never))).toMatchObject({ code: "invalid_argument" });
    native.dispose();
    expect(await failure(() => native.logits(Int32Array.of(1)))).toMatchObject({ code: "disposed" });
  });

  it("loading: a shape the config does not fit, a weights file that is gone", async () => {
    const dir = await tinyFolder();
    expect(await failure(() => rawModel(dir, { ...llama, intermediate_size: 50 }))).toMatchObject({
      code: "shape_mismatch",
    });
    const tensors = [...(await readModelTensors(dir)).values()].map((tensor) => ({
      ...tensor,
      dtype: tensor.dtype as NativeTensor["dtype"],
      file: 0,
    }));
    const spec = {
      config: nativeConfig(parseModelConfig(llama)),
      tensors,
      options: { quantization: "none" as const },
    };
    expect(
      await failure(() => loadBinding().loadModel({ ...spec, files: [join(dir, "gone.safetensors")] })),
    ).toMatchObject({
      code: "file_not_found",
      message: expect.stringMatching(/gone\.safetensors: cannot open/),
    });
  });

  it("LocalModel hands the engine's code on in the error class it belongs to", async () => {
    await using model = await LocalModel.load(await tinyFolder());
    // Past the TypeScript checks: a packed sequence longer than the context is the engine's finding.
    const long = Array.from({ length: 130 }, () => 1);
    const tooLong = await failure(() => model.loss(long, long, { sequenceLengths: [130] }));
    expect(tooLong).toBeInstanceOf(ValidationError);
    expect(tooLong).toMatchObject({ code: "context_length_exceeded" });
    model.attachLora({ r: 2 });
    const mismatch = await failure(() =>
      model.forwardBackward({ inputIds: [1, 2, 3], labels: [1, 2, 3], sequenceLengths: [2] }),
    );
    expect(mismatch).toBeInstanceOf(ValidationError);
    expect(mismatch).toMatchObject({ code: "invalid_argument", message: expect.stringMatching(/add up/) });
  });
});
