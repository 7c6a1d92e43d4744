import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { beforeEach, describe, expect, it } from "vitest";
import { ModelFormatError } from "../../src/core/errors.js";
import { LocalModel } from "../../src/engine/local-model.js";
import { peftKey } from "../../src/engine/lora.js";
import { parseSize } from "../../src/engine/merge.js";
import { readModelTensors, readSafetensorsHeader } from "../../src/engine/safetensors.js";
import { tempDir } from "../helpers.js";
import { maxRelativeError } from "./compare.js";
import { REFERENCE_INPUT, TINY_MODELS, type TinyConfig, writeTinyModel } from "./tiny-model.js";

const reference = JSON.parse(
  await readFile(new URL("./reference/reference.json", import.meta.url), "utf8"),
) as { logits: Record<string, number[]> };
const PEFT_ADAPTER = new URL("./reference/peft-adapter", import.meta.url).pathname;
const llama = TINY_MODELS.llama as TinyConfig;

let folder: string;
// Each test gets its own copy: temporary folders are removed after each test.
beforeEach(async () => {
  folder = await writeTinyModel(join(await tempDir(), "llama"), llama);
});

describe("LoRA adapters", () => {
  it("a fresh adapter (B = 0) leaves the model unchanged; adapter: false is the base model", async () => {
    await using model = await LocalModel.load(folder);
    const base = await model.logits(REFERENCE_INPUT);
    const config = model.attachLora({ r: 8, alpha: 16, seed: 3 });
    expect(config).toMatchObject({ r: 8, alpha: 16, dropout: 0.05, useRslora: false });
    expect(config.targetModules).toEqual([
      "q_proj",
      "k_proj",
      "v_proj",
      "o_proj",
      "gate_proj",
      "up_proj",
      "down_proj",
    ]);
    expect(Array.from(await model.logits(REFERENCE_INPUT))).toEqual(Array.from(base));
    const weights = model.getLoraWeights();
    expect(weights.size).toBe(2 * 7 * 2);
    const a = weights.get(peftKey(0, "q_proj", "A")) as Float32Array;
    expect(a.length).toBe(8 * 32);
    // Kaiming-uniform with a = √5: within ±1/√in.
    expect(Math.max(...a.map(Math.abs))).toBeLessThanOrEqual(1 / Math.sqrt(32));
    expect((weights.get(peftKey(1, "down_proj", "B")) as Float32Array).every((value) => value === 0)).toBe(
      true,
    );

    const b = new Float32Array(32 * 8).fill(0.05);
    model.setLoraWeights({ [peftKey(0, "o_proj", "B")]: b });
    const tuned = await model.logits(REFERENCE_INPUT);
    expect(maxRelativeError(tuned, base)).toBeGreaterThan(1e-3);
    expect(Array.from(await model.logits(REFERENCE_INPUT, { adapter: false }))).toEqual(Array.from(base));
    const [withAdapter, without] = await Promise.all([
      model.generate({ inputIds: [1, 5] }, { maxTokens: 5, temperature: 0, returnLogits: true }),
      model.generate(
        { inputIds: [1, 5] },
        { maxTokens: 5, temperature: 0, returnLogits: true, adapter: false },
      ),
    ]);
    expect(
      maxRelativeError(withAdapter.logits as Float32Array, without.logits as Float32Array),
    ).toBeGreaterThan(1e-4);
    expect(() => model.setLoraWeights({ nope: b })).toThrow(/no adapter tensor nope/);
    expect(() => model.setLoraWeights({ [peftKey(0, "o_proj", "B")]: new Float32Array(3) })).toThrow(
      /256 values/,
    );
    model.detachLora();
    expect(model.lora).toBeUndefined();
    expect(Array.from(await model.logits(REFERENCE_INPUT))).toEqual(Array.from(base));
  });

  it("loads an adapter written in PEFT's format (BF16, rank and alpha patterns, some modules) and computes PEFT's logits", async () => {
    await using model = await LocalModel.load(folder);
    const config = await model.loadAdapter(PEFT_ADAPTER);
    expect(config).toMatchObject({ r: 4, alpha: 8, targetModules: ["q_proj", "v_proj", "down_proj"] });
    expect(config.rankPattern).toEqual({ down_proj: 2 });
    const logits = await model.logits(REFERENCE_INPUT);
    expect(maxRelativeError(logits, reference.logits["llama+lora"] as number[])).toBeLessThan(1e-4);
    expect(
      maxRelativeError(
        await model.logits(REFERENCE_INPUT, { adapter: false }),
        reference.logits.llama as number[],
      ),
    ).toBeLessThan(1e-4);
  });

  it("save → load gives identical logits, in PEFT's files and key names", async () => {
    await using model = await LocalModel.load(folder);
    await model.loadAdapter(PEFT_ADAPTER);
    const dir = join(await tempDir(), "adapter");
    await model.saveAdapter(dir);
    expect((await readdir(dir)).sort()).toEqual([
      "adapter_config.json",
      "adapter_model.safetensors",
      "chat_template.jinja",
    ]);
    const config = JSON.parse(await readFile(join(dir, "adapter_config.json"), "utf8"));
    expect(config).toMatchObject({
      peft_type: "LORA",
      task_type: "CAUSAL_LM",
      r: 4,
      lora_alpha: 8,
      bias: "none",
      use_rslora: false,
      target_modules: ["q_proj", "v_proj", "down_proj"],
      rank_pattern: { down_proj: 2 },
      alpha_pattern: { "model.layers.1.self_attn.v_proj": 16 },
      base_model_name_or_path: folder,
    });
    const header = await readSafetensorsHeader(join(dir, "adapter_model.safetensors"));
    expect(
      header.tensors.get("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")?.shape,
    ).toEqual([4, 32]);
    expect(header.tensors.get("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight")?.shape).toEqual([
      32, 2,
    ]);
    await using reloaded = await LocalModel.load(folder);
    await reloaded.loadAdapter(dir);
    expect(Array.from(await reloaded.logits(REFERENCE_INPUT))).toEqual(
      Array.from(await model.logits(REFERENCE_INPUT)),
    );
  });

  it("scales by alpha / √r with rsLoRA, and keeps the setting through save and load", async () => {
    await using model = await LocalModel.load(folder);
    model.attachLora({ r: 4, alpha: 8, useRslora: true, seed: 2 });
    const weights = model.getLoraWeights();
    for (const [key, values] of weights)
      if (key.endsWith("lora_B.weight"))
        weights.set(
          key,
          values.map(() => 0.03),
        );
    model.setLoraWeights(weights);
    const rslora = await model.logits(REFERENCE_INPUT);
    // 8 / √4 = 4 = 16 / 4: the same adapter without rsLoRA but alpha 16 computes the same.
    await using plain = await LocalModel.load(folder);
    plain.attachLora({ r: 4, alpha: 16, seed: 2 });
    plain.setLoraWeights(weights);
    expect(maxRelativeError(await plain.logits(REFERENCE_INPUT), rslora)).toBeLessThan(1e-6);
    const dir = join(await tempDir(), "adapter");
    await model.saveAdapter(dir);
    expect(JSON.parse(await readFile(join(dir, "adapter_config.json"), "utf8")).use_rslora).toBe(true);
    await using reloaded = await LocalModel.load(folder);
    expect((await reloaded.loadAdapter(dir)).useRslora).toBe(true);
    expect(Array.from(await reloaded.logits(REFERENCE_INPUT))).toEqual(Array.from(rslora));
  });

  it("refuses adapters it cannot apply, saying why", async () => {
    await using model = await LocalModel.load(folder);
    const dir = join(await tempDir(), "adapter");
    await expect(model.saveAdapter(dir)).rejects.toThrow(/no LoRA adapter is attached/);
    model.attachLora({ r: 2, targetModules: ["q_proj"] });
    await model.saveAdapter(dir);
    const config = JSON.parse(await readFile(join(dir, "adapter_config.json"), "utf8"));
    await writeFile(join(dir, "adapter_config.json"), JSON.stringify({ ...config, use_dora: true }));
    await expect(model.loadAdapter(dir)).rejects.toThrow(/DoRA adapters are not supported/);
    await writeFile(join(dir, "adapter_config.json"), JSON.stringify({ ...config, r: 3 }));
    const error = await model.loadAdapter(dir).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ModelFormatError);
    expect((error as Error).message).toMatch(/has rank 2, the config says 3/);
    const small = await writeTinyModel(join(await tempDir(), "other"), {
      ...llama,
      hidden_size: 16,
      intermediate_size: 24,
    });
    await using other = await LocalModel.load(small);
    await writeFile(join(dir, "adapter_config.json"), JSON.stringify(config));
    await expect(other.loadAdapter(dir)).rejects.toThrow(/shape \[2,32\], the model needs \[2,16\]/);
    expect(() => model.attachLora({ r: 0 })).toThrow(/r must be an integer/);
    expect(() => model.attachLora({ targetModules: ["c_attn" as never] })).toThrow(
      /unknown target module "c_attn"/,
    );
  });
});

describe("mergeAndSave", () => {
  it("writes a Hugging Face folder whose f32 logits equal the adapter's, sharded when asked", async () => {
    await using model = await LocalModel.load(folder);
    await model.loadAdapter(PEFT_ADAPTER);
    const expected = await model.logits(REFERENCE_INPUT);
    const whole = join(await tempDir(), "merged");
    const { files } = await model.mergeAndSave(whole, { dtype: "f32" });
    expect(files).toEqual(["model.safetensors"]);
    expect((await readdir(whole)).sort()).toEqual([
      "chat_template.jinja",
      "config.json",
      "model.safetensors",
      "tokenizer.json",
      "tokenizer_config.json",
    ]);
    // The merged model renders as the adapter's training did: tunekit's default, as it had no template.
    expect(await readFile(join(whole, "chat_template.jinja"), "utf8")).toBe(model.chatFormat.template);
    expect(JSON.parse(await readFile(join(whole, "config.json"), "utf8")).torch_dtype).toBe("float32");
    await using merged = await LocalModel.load(whole);
    expect(maxRelativeError(await merged.logits(REFERENCE_INPUT), expected)).toBeLessThan(1e-5);

    const sharded = join(await tempDir(), "sharded");
    const result = await model.mergeAndSave(sharded, { dtype: "f32", maxShardSize: "20KB" });
    expect(result.files.at(-1)).toBe("model.safetensors.index.json");
    expect(result.files[0]).toMatch(/^model-00001-of-000\d\d\.safetensors$/);
    const index = JSON.parse(await readFile(join(sharded, "model.safetensors.index.json"), "utf8"));
    expect(Object.keys(index.weight_map)).toHaveLength((await readModelTensors(folder)).size);
    expect(index.metadata.total_size).toBeGreaterThan(0);
    await using fromShards = await LocalModel.load(sharded);
    expect(maxRelativeError(await fromShards.logits(REFERENCE_INPUT), expected)).toBeLessThan(1e-5);

    const bf16 = join(await tempDir(), "bf16");
    await model.mergeAndSave(bf16);
    expect(
      (await readSafetensorsHeader(join(bf16, "model.safetensors"))).tensors.get("model.norm.weight")?.dtype,
    ).toBe("BF16");
    await using half = await LocalModel.load(bf16);
    expect(maxRelativeError(await half.logits(REFERENCE_INPUT), expected)).toBeLessThan(0.05);
    await expect(model.mergeAndSave(bf16)).rejects.toThrow(/the output folder exists/);
  });

  it("merges into an NF4 base through its dequantized weights", async () => {
    await using nf4 = await LocalModel.load(folder, { quantization: "nf4" });
    await nf4.loadAdapter(PEFT_ADAPTER);
    const dir = join(await tempDir(), "merged");
    await nf4.mergeAndSave(dir, { dtype: "f32" });
    await using merged = await LocalModel.load(dir);
    expect(
      maxRelativeError(await merged.logits(REFERENCE_INPUT), await nf4.logits(REFERENCE_INPUT)),
    ).toBeLessThan(1e-5);
  });

  it("reads shard sizes as transformers does", () => {
    expect(parseSize("2GB")).toBe(2e9);
    expect(parseSize("1GiB")).toBe(2 ** 30);
    expect(parseSize("500MB")).toBe(5e8);
    expect(parseSize(1234)).toBe(1234);
    expect(() => parseSize("lots")).toThrow(/maxShardSize/);
  });
});
