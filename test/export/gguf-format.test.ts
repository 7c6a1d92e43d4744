/**
 * The GGUF export without llama.cpp: the writer and reader against each other and against an
 * independent reader (@huggingface/gguf), the quantized block layouts, the q/k permutation, the
 * tokenizer and architecture metadata, the Modelfile, files that lie or are cut short, and exports
 * that are aborted. test/export/llama-cpp.test.ts checks the same files in llama.cpp itself.
 */
import { copyFile, readdir, readFile, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gguf } from "@huggingface/gguf";
import { describe, expect, it } from "vitest";
import { DataFormatError } from "../../src/core/errors.js";
import { ChatRenderer, DEFAULT_CHAT_TEMPLATE } from "../../src/engine/chat-template.js";
import { parseModelConfig } from "../../src/engine/config.js";
import { LocalTokenizer } from "../../src/engine/tokenizer.js";
import { exportGGUF } from "../../src/export/export-gguf.js";
import { TensorType } from "../../src/export/gguf/format.js";
import { llama3RopeFactors, permuteRows } from "../../src/export/gguf/model.js";
import { decode, encodeQ4_0, encodeQ8_0 } from "../../src/export/gguf/quantize.js";
import { readGGUF } from "../../src/export/gguf/reader.js";
import { tokenizerMetadata } from "../../src/export/gguf/tokenizer.js";
import { writeGGUF } from "../../src/export/gguf/writer.js";
import { TINY_LLAMA, writeTinyModel } from "../../src/testing/tiny-model.js";
import { runCli } from "../cli-helpers.js";
import { FIXTURES, HAS_FIXTURES, tempDir } from "../helpers.js";
import { TINY_LLAMA_BLOCKS, TINY_MISTRAL, TINY_QWEN2, writeByteLevelModel } from "./tiny-models.js";

const values = (count: number, seed = 1) =>
  Float32Array.from({ length: count }, (_, index) => Math.sin(index * 1.7 + seed) * (1 + (index % 7)));

describe("GGUF writer and reader", () => {
  it("reads back every value type, array and tensor it wrote, aligned; @huggingface/gguf agrees", async () => {
    const file = join(await tempDir(), "all.gguf");
    const weight = values(64);
    const size = await writeGGUF(file, {
      metadata: [
        ["general.architecture", { type: "string", value: "llama" }],
        ["u8", { type: "uint8", value: 200 }],
        ["i8", { type: "int8", value: -5 }],
        ["u16", { type: "uint16", value: 60000 }],
        ["i16", { type: "int16", value: -30000 }],
        ["u32", { type: "uint32", value: 4000000000 }],
        ["i32", { type: "int32", value: -2000000000 }],
        ["f32", { type: "float32", value: 0.5 }],
        ["f64", { type: "float64", value: 1e-300 }],
        ["u64", { type: "uint64", value: 2n ** 60n }],
        ["i64", { type: "int64", value: -(2n ** 40n) }],
        ["yes", { type: "bool", value: true }],
        ["unicode", { type: "string", value: "héllo ✓ 😀" }],
        ["strings", { type: "array", itemType: "string", value: ["a", "", "▁b"] }],
        ["ints", { type: "array", itemType: "int32", value: [1, -2, 3] }],
        ["floats", { type: "array", itemType: "float32", value: [0.25, -1] }],
      ],
      tensors: [
        { name: "w", shape: [2, 32], type: TensorType.F32, data: async () => new Uint8Array(weight.buffer) },
        { name: "q", shape: [2, 32], type: TensorType.Q8_0, data: async () => encodeQ8_0(weight) },
        {
          name: "n",
          shape: [3],
          type: TensorType.F32,
          data: async () => new Uint8Array(new Float32Array([1, 2, 3]).buffer),
        },
      ],
    });
    expect(size).toBe((await stat(file)).size);
    const read = await readGGUF(file);
    expect(read.version).toBe(3);
    expect(Object.fromEntries([...read.metadata].map(([key, value]) => [key, value.value]))).toEqual({
      "general.architecture": "llama",
      u8: 200,
      i8: -5,
      u16: 60000,
      i16: -30000,
      u32: 4000000000,
      i32: -2000000000,
      f32: 0.5,
      f64: 1e-300,
      u64: 2n ** 60n,
      i64: -(2n ** 40n),
      yes: true,
      unicode: "héllo ✓ 😀",
      strings: ["a", "", "▁b"],
      ints: [1, -2, 3],
      floats: [0.25, -1],
    });
    expect(read.tensors.map(({ name, shape, typeName }) => ({ name, shape, typeName }))).toEqual([
      { name: "w", shape: [2, 32], typeName: "F32" },
      { name: "q", shape: [2, 32], typeName: "Q8_0" },
      { name: "n", shape: [3], typeName: "F32" },
    ]);
    for (const tensor of read.tensors) expect((tensor.offset - read.dataOffset) % 32).toBe(0);
    // An independent reader: the same keys and values, the same tensor table (dims innermost first).
    const other = await gguf(file, { allowLocalFile: true });
    const theirs = other.metadata as unknown as Record<string, unknown>;
    expect(theirs.u32).toBe(4000000000);
    expect(theirs.strings).toEqual(["a", "", "▁b"]);
    expect(theirs.unicode).toBe("héllo ✓ 😀");
    expect(other.tensorInfos.map((tensor) => [tensor.name, tensor.shape.map(Number), tensor.dtype])).toEqual([
      ["w", [32, 2], 0],
      ["q", [32, 2], 8],
      ["n", [3], 0],
    ]);
  });

  it("an exported model's metadata and tensor table read the same in @huggingface/gguf", async () => {
    const root = await tempDir();
    const dir = await writeByteLevelModel(join(root, "qwen"), TINY_QWEN2);
    const { out } = await exportGGUF({
      model: dir,
      out: join(root, "q.gguf"),
      type: "q4_0",
      modelfile: false,
    });
    const mine = await readGGUF(out);
    const other = await gguf(out, { allowLocalFile: true });
    const theirs = other.metadata as unknown as Record<string, unknown>;
    for (const [key, value] of mine.metadata) expect(theirs[key], key).toEqual(value.value);
    expect(
      Object.keys(theirs)
        .filter((key) => !["version", "tensor_count", "kv_count"].includes(key))
        .sort(),
    ).toEqual([...mine.metadata.keys()].sort());
    expect(
      other.tensorInfos.map((tensor) => [tensor.name, [...tensor.shape].map(Number).reverse(), tensor.dtype]),
    ).toEqual(mine.tensors.map((tensor) => [tensor.name, tensor.shape, tensor.type]));
  });

  it("refuses what it cannot write: a row that does not divide into blocks, a key or tensor given twice", async () => {
    const file = join(await tempDir(), "x.gguf");
    const tensor = { name: "t", shape: [2, 33], type: TensorType.Q8_0, data: async () => new Uint8Array() };
    await expect(writeGGUF(file, { metadata: [], tensors: [tensor] })).rejects.toThrow(
      /rows of 33 do not divide into Q8_0 blocks/,
    );
    const key = ["k", { type: "string" as const, value: "v" }] as const;
    await expect(writeGGUF(file, { metadata: [key, key], tensors: [] })).rejects.toThrow(/k given twice/);
    await expect(stat(file)).rejects.toThrow(/ENOENT/);
  });
});

describe("quantized blocks as ggml lays them out", () => {
  it("Q8_0: an fp16 scale max|x|/127, then round(x / d) as signed bytes", () => {
    const block = Float32Array.from({ length: 32 }, (_, index) => (index - 16) / 4); // -4 … 3.75
    const bytes = encodeQ8_0(block);
    expect(bytes.length).toBe(34);
    const view = new DataView(bytes.buffer);
    const d = decode(TensorType.F16, bytes.subarray(0, 2))[0] as number;
    expect(d).toBeCloseTo(4 / 127, 5);
    expect(view.getInt8(2)).toBe(-127); // -4 / d
    expect(view.getInt8(2 + 16)).toBe(0);
    expect(view.getInt8(2 + 31)).toBe(Math.round(3.75 / d));
    const back = decode(TensorType.Q8_0, bytes);
    for (const [index, value] of block.entries())
      expect(Math.abs((back[index] as number) - value)).toBeLessThanOrEqual(d / 2 + 1e-6);
  });

  it("Q4_0: d = (the largest-magnitude value) / -8; the first 16 values in the low nibbles, the last 16 in the high", () => {
    const block = Float32Array.from({ length: 32 }, (_, index) => index - 8); // -8 … 23: the extreme is 23
    const bytes = encodeQ4_0(block);
    expect(bytes.length).toBe(18);
    const d = decode(TensorType.F16, bytes.subarray(0, 2))[0] as number;
    expect(d).toBeCloseTo(-23 / 8, 3);
    // x = 23 (index 31) is q = 0: the high nibble of byte 15; x = -8 (index 0) is q = trunc(-8/d + 8.5) = 11.
    expect((bytes[2 + 15] as number) >> 4).toBe(0);
    expect((bytes[2] as number) & 0x0f).toBe(Math.min(15, Math.trunc(-8 / d + 8.5)));
    const back = decode(TensorType.Q4_0, bytes);
    for (const [index, value] of block.entries())
      expect(Math.abs((back[index] as number) - value)).toBeLessThanOrEqual(Math.abs(d) / 2 + 1e-3);
    // An all-zero block: scale 0, every value at the offset 8.
    expect([...encodeQ4_0(new Float32Array(32)).subarray(2)]).toEqual(new Array(16).fill(0x88));
  });
});

describe("model metadata and tensors", () => {
  it("permutes q and k rows from rotate_half to interleaved pairs, head by head", () => {
    // 2 heads of 4 rows (one column): rows [a0 a1 b0 b1] of each head become [a0 b0 a1 b1].
    const out = permuteRows(Float32Array.from([0, 1, 2, 3, 10, 11, 12, 13]), 8, 1, 2);
    expect([...out]).toEqual([0, 2, 1, 3, 10, 12, 11, 13]);
  });

  it("names the architecture's hyperparameters; head_dim apart from hidden / heads adds key and value lengths", async () => {
    const root = await tempDir();
    const mistral = await writeByteLevelModel(join(root, "mistral"), TINY_MISTRAL);
    const out = join(root, "m.gguf");
    await exportGGUF({ model: mistral, out, type: "f32", modelfile: false });
    const { metadata, tensors } = await readGGUF(out);
    const get = (key: string) => metadata.get(key)?.value;
    expect(get("general.architecture")).toBe("llama");
    expect(get("llama.embedding_length")).toBe(64);
    expect(get("llama.attention.head_count")).toBe(4);
    expect(get("llama.attention.head_count_kv")).toBe(2);
    expect(get("llama.attention.key_length")).toBe(32);
    expect(get("llama.attention.value_length")).toBe(32);
    expect(get("llama.rope.dimension_count")).toBe(32);
    expect(get("tokenizer.ggml.model")).toBe("gpt2");
    expect(get("tokenizer.ggml.pre")).toBe("llama-bpe");
    expect(tensors.find((tensor) => tensor.name === "blk.0.attn_q.weight")?.shape).toEqual([128, 64]);
    expect(tensors.some((tensor) => tensor.name === "output.weight")).toBe(true);

    const qwen = await writeByteLevelModel(join(root, "qwen"), TINY_QWEN2);
    await exportGGUF({ model: qwen, out: join(root, "q.gguf"), type: "q8_0", modelfile: false });
    const q = await readGGUF(join(root, "q.gguf"));
    expect(q.metadata.get("general.architecture")?.value).toBe("qwen2");
    expect(q.metadata.get("qwen2.rope.freq_base")?.value).toBe(1000000);
    expect(q.metadata.get("tokenizer.ggml.pre")?.value).toBe("qwen2");
    expect(q.metadata.get("general.file_type")?.value).toBe(7);
    expect(q.metadata.has("qwen2.attention.key_length")).toBe(false);
    const bias = q.tensors.find((tensor) => tensor.name === "blk.1.attn_k.bias");
    expect(bias).toMatchObject({ typeName: "F32", shape: [32] });
    expect(q.tensors.find((tensor) => tensor.name === "blk.1.attn_k.weight")?.typeName).toBe("Q8_0");
    expect(q.tensors.find((tensor) => tensor.name === "output_norm.weight")?.typeName).toBe("F32");
  });

  it("Q4_0 keeps the output head Q8_0; rows that do not divide into blocks fall back to F16, with a note", async () => {
    const root = await tempDir();
    const tied = await writeByteLevelModel(join(root, "tied"), TINY_LLAMA_BLOCKS);
    const result = await exportGGUF({
      model: tied,
      out: join(root, "t.gguf"),
      type: "q4_0",
      modelfile: false,
    });
    const { tensors } = await readGGUF(result.out);
    expect(tensors.find((tensor) => tensor.name === "token_embd.weight")?.typeName).toBe("Q8_0");
    expect(tensors.find((tensor) => tensor.name === "blk.0.ffn_down.weight")?.typeName).toBe("Q4_0");
    expect(tensors.some((tensor) => tensor.name === "output.weight")).toBe(false);
    // Rows of 48 (the down projection's input) do not divide into 32-value blocks.
    const narrow = await writeByteLevelModel(join(root, "narrow"), {
      ...TINY_LLAMA_BLOCKS,
      intermediate_size: 48,
    });
    const fallback = await exportGGUF({
      model: narrow,
      out: join(root, "n.gguf"),
      type: "q8_0",
      modelfile: false,
    });
    expect(fallback.notes).toEqual([
      "blk.0.ffn_down.weight: rows of 48 values do not divide into 32-value blocks: written as F16",
      "blk.1.ffn_down.weight: rows of 48 values do not divide into 32-value blocks: written as F16",
    ]);
    const written = await readGGUF(fallback.out);
    expect(written.tensors.find((tensor) => tensor.name === "blk.0.ffn_down.weight")?.typeName).toBe("F16");
    expect(written.tensors.find((tensor) => tensor.name === "blk.0.ffn_up.weight")?.typeName).toBe("Q8_0");
    // A character tokenizer with no pre-tokenizer: llama.cpp has nothing to split text with.
    const characters = await writeTinyModel(join(root, "chars"), TINY_LLAMA);
    await expect(exportGGUF({ model: characters, out: join(root, "c.gguf") })).rejects.toThrow(
      /pre-tokenizer is null, which matches none that llama\.cpp knows/,
    );
    await expect(stat(join(root, "c.gguf"))).rejects.toThrow(/ENOENT/);
  });

  it("Llama 3's rope scaling becomes a rope_freqs tensor: 1 for high frequencies, the factor for low ones", () => {
    const config = parseModelConfig({
      architectures: ["LlamaForCausalLM"],
      hidden_size: 4096,
      intermediate_size: 14336,
      num_hidden_layers: 32,
      num_attention_heads: 32,
      num_key_value_heads: 8,
      vocab_size: 128256,
      max_position_embeddings: 131072,
      rope_theta: 500000,
      rope_scaling: {
        rope_type: "llama3",
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 8192,
      },
    });
    const factors = llama3RopeFactors(config) as Float32Array;
    expect(factors.length).toBe(64);
    expect(factors[0]).toBe(1);
    expect(factors[63]).toBe(8);
    const between = [...factors].filter((value) => value > 1 && value < 8);
    expect(between.length).toBeGreaterThan(0);
    expect([...factors]).toEqual([...factors].sort((a, b) => a - b));
  });
});

describe("tokenizer metadata", () => {
  it("a byte-level BPE is gpt2 with merges, padded to the model's rows with unused tokens", async () => {
    const dir = await writeByteLevelModel(join(await tempDir(), "qwen"), TINY_QWEN2);
    const { model, metadata, tokens } = await tokenizerMetadata(dir, undefined, 320);
    const get = (key: string) => metadata.find(([name]) => name === key)?.[1].value as unknown[];
    expect(model).toBe("gpt2");
    expect(tokens.length).toBe(320);
    expect(tokens[271]).toBe("[PAD271]");
    expect(get("tokenizer.ggml.token_type")[268]).toBe(3); // <|endoftext|>: control
    expect(get("tokenizer.ggml.token_type")[271]).toBe(5); // unused
    expect(get("tokenizer.ggml.merges")[0]).toBe("Ġ t");
  });

  it("refuses a pre-tokenizer llama.cpp does not know, naming it", async () => {
    const dir = await writeByteLevelModel(join(await tempDir(), "odd"), TINY_QWEN2);
    const json = JSON.parse(await readFile(join(dir, "tokenizer.json"), "utf8"));
    json.pre_tokenizer.pretokenizers[0].pattern.Regex = "\\w+|\\s+";
    await writeFile(join(dir, "tokenizer.json"), JSON.stringify(json));
    await expect(tokenizerMetadata(dir, undefined, 320)).rejects.toThrow(
      /splits on "\\\\w\+\|\\\\s\+", which matches none that llama.cpp knows/,
    );
  });
});

describe("files that lie or are cut short", () => {
  async function exported(): Promise<string> {
    const root = await tempDir();
    const dir = await writeByteLevelModel(join(root, "m"), TINY_LLAMA_BLOCKS);
    return (await exportGGUF({ model: dir, out: join(root, "m.gguf"), type: "f16", modelfile: false })).out;
  }
  const failure = (promise: Promise<unknown>) =>
    promise.then(
      () => undefined,
      (caught: unknown) => caught as Error,
    );

  it("a file cut short anywhere is an invalid_gguf error naming the byte, never a hang", async () => {
    const file = await exported();
    const { size, dataOffset } = await readGGUF(file);
    for (const length of [0, 3, 10, 30, 200, dataOffset - 5, dataOffset + 100, size - 1]) {
      const copy = `${file}.${length}.gguf`;
      await copyFile(file, copy);
      await truncate(copy, length);
      const error = await failure(readGGUF(copy));
      expect(error, `cut at ${length}`).toBeInstanceOf(DataFormatError);
      expect((error as DataFormatError).code).toBe("invalid_gguf");
      expect(error?.message).toMatch(/byte \d+/);
    }
  });

  it("a file that lies about its counts, lengths or offsets is refused before anything is allocated", async () => {
    const file = await exported();
    const bytes = await readFile(file);
    const lie = async (edit: (view: DataView) => void) => {
      const copy = new Uint8Array(bytes);
      edit(new DataView(copy.buffer));
      const path = `${file}.lie.gguf`;
      await writeFile(path, copy);
      return (await failure(readGGUF(path)))?.message ?? "";
    };
    expect(await lie((view) => view.setUint32(0, 0x12345678, true))).toMatch(/not a GGUF file/);
    expect(await lie((view) => view.setUint32(4, 9, true))).toMatch(/version 9/);
    expect(await lie((view) => view.setBigUint64(8, 2n ** 40n, true))).toMatch(/tensors cannot fit/);
    expect(await lie((view) => view.setBigUint64(16, 2n ** 40n, true))).toMatch(/metadata keys cannot fit/);
    // The first key's length.
    expect(await lie((view) => view.setBigUint64(24, 2n ** 50n, true))).toMatch(
      /string of \d+ bytes runs past the end/,
    );
    // A tensor's offset pushed past the end: the last eight bytes before the data's alignment padding.
    const { tensors } = await readGGUF(file);
    const last = tensors.at(-1);
    // Its entry: the name, then the count of dimensions, the dimensions, the type, the offset.
    const name = last?.name as string;
    const at = bytes.lastIndexOf(Buffer.from(name)) + name.length + 4 + (last?.shape.length ?? 0) * 8 + 4;
    expect(await lie((view) => view.setBigUint64(at, BigInt(bytes.length * 2) * 32n, true))).toMatch(
      /past the end of the file/,
    );
  });

  it("inspect prints the table; on a broken file it is a one-line error", async () => {
    const file = await exported();
    const shown = await runCli(["export", "inspect", file]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/^GGUF v3, [\d.]+ KB, \d+ metadata keys, 20 tensors/);
    expect(shown.stdout).toMatch(/general\.architecture = "llama"/);
    expect(shown.stdout).toMatch(/tokenizer\.ggml\.tokens = \[string × 320\] "Ā", "ā", "Ă", "ă", …/);
    expect(shown.stdout).toMatch(/blk\.0\.attn_q\.weight\s+F16\s+\[64, 64\]/);
    const json = JSON.parse((await runCli(["export", "inspect", file, "--json"])).stdout);
    expect(json.metadata["llama.block_count"]).toBe(2);
    await truncate(file, 100);
    const broken = await runCli(["export", "inspect", file]);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toMatch(
      /^tunekit: \S+m\.gguf: byte 8: 20 tensors cannot fit in the rest of the file\n$/,
    );
  });
});

describe("exportGGUF and tunekit export gguf", () => {
  it("an abort midway leaves no file, and no temporary file beside it", async () => {
    const root = await tempDir();
    const dir = await writeByteLevelModel(join(root, "m"), TINY_QWEN2);
    const controller = new AbortController();
    const error = await exportGGUF({
      model: dir,
      out: join(root, "out", "m.gguf"),
      signal: controller.signal,
      onProgress: (event) => {
        if (event.type === "tensor-written" && event.done === 5) controller.abort(new Error("stopped"));
      },
    }).catch((caught: unknown) => caught);
    expect((error as Error).message).toBe("stopped");
    expect(await readdir(join(root, "out"))).toEqual([]);
  });

  it("writes a Modelfile: tunekit's default template in Go's, or only the stop for a template Ollama knows", async () => {
    const root = await tempDir();
    const plain = await writeByteLevelModel(join(root, "plain"), TINY_LLAMA_BLOCKS, false);
    const model = await exportGGUF({ model: plain, out: join(root, "plain.gguf") });
    const text = await readFile(model.modelfile as string, "utf8");
    expect(text).toContain("FROM ./plain.gguf\n");
    expect(text).toContain('PARAMETER stop "<|im_end|>"\n');
    expect(text).toContain('PARAMETER stop "\\nUser:"\n');
    expect(text).toContain('{{- else if eq .Role "user" }}User: {{ .Content }}');
    expect(text).toContain('{{- else if eq .Role "assistant" }}Assistant: {{ .Content }}<|im_end|>');
    expect(text.trimEnd().endsWith('Assistant: """')).toBe(true);
    // The model has no template: the GGUF carries tunekit's default, for llama.cpp's chat.
    expect((await readGGUF(model.out)).metadata.get("tokenizer.chat_template")?.value).toBe(
      DEFAULT_CHAT_TEMPLATE,
    );
    const chat = await writeByteLevelModel(join(root, "chat"), TINY_QWEN2);
    const chatModel = await exportGGUF({ model: chat, out: join(root, "chat.gguf"), type: "q8_0" });
    const chatText = await readFile(chatModel.modelfile as string, "utf8");
    expect(chatText).toContain('PARAMETER stop "<|im_end|>"');
    expect(chatText).not.toContain("TEMPLATE");
    expect((await readGGUF(chatModel.out)).metadata.get("tokenizer.chat_template")?.value).toMatch(
      /<\|im_start\|>/,
    );
  });

  it.skipIf(!HAS_FIXTURES)(
    'for a tokenizer that strips the text (stories260K), the written default template ends in "Assistant:": the ids tunekit gives',
    async () => {
      const root = await tempDir();
      const stories = join(FIXTURES, "stories260K-hf");
      const result = await exportGGUF({ model: stories, out: join(root, "s.gguf"), type: "f32" });
      const template = (await readGGUF(result.out)).metadata.get("tokenizer.chat_template")?.value;
      expect(template).toEqual(expect.stringContaining("{{ '\\nAssistant:' }}{% endif %}"));
      const tokenizer = await LocalTokenizer.fromFolder(stories);
      const messages = [
        { role: "system" as const, content: "You tell stories." },
        { role: "user" as const, content: "Who has the cat?" },
      ];
      const written = new ChatRenderer(tokenizer, { template: template as string, source: "model" });
      const rendered = written.encodePrompt(messages);
      expect(rendered.text.endsWith("\nAssistant:")).toBe(true);
      expect(rendered.inputIds).toEqual(new ChatRenderer(tokenizer).encodePrompt(messages).inputIds);
      const text = await readFile(result.modelfile as string, "utf8");
      expect(text.trimEnd().endsWith('Assistant:"""')).toBe(true);
    },
  );

  it("the CLI says what it wrote, and refuses wrong flags with one line", async () => {
    const root = await tempDir();
    const dir = await writeByteLevelModel(join(root, "m"), TINY_QWEN2);
    const done = await runCli([
      "export",
      "gguf",
      "--model",
      dir,
      "--out",
      join(root, "m.gguf"),
      "--type",
      "bf16",
    ]);
    expect(done.stderr).toBe("");
    expect(done.stdout).toMatch(
      /^.*m\.gguf: model, qwen2, bf16, \d+ tensors, [\d.]+ KB\n.*m\.Modelfile: Ollama Modelfile/m,
    );
    const usage = async (args: string[], message: RegExp) => {
      const result = await runCli(["export", ...args]);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(message);
    };
    await usage(["gguf", "--model", dir], /needs --out FILE\.gguf/);
    await usage(["gguf", "--model", dir, "--out", "x.bin"], /must end in \.gguf/);
    await usage(
      ["gguf", "--model", dir, "--out", "x.gguf", "--type", "q5_k"],
      /unknown type "q5_k"; use f32, f16, bf16, q8_0, q4_0/,
    );
    await usage(
      ["gguf", "--model", dir, "--adapter", root, "--out", "x.gguf", "--type", "q8_0"],
      /a GGUF LoRA adapter is f32 or f16/,
    );
    await usage(["gguf", "--model", dir, "--merge", "--out", "x.gguf"], /--merge needs --adapter/);
    await usage(["pack"], /unknown action "export pack"/);
  });
});
