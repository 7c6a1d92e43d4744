/**
 * tunekit's GGUF files in llama.cpp itself (node-llama-cpp 3.21.1, its prebuilt CPU build): the
 * stories260K export reproduces the fixture's golden text and tokenizes as tunekit does; an adapter
 * trained here gives the same tokens on llama.cpp as on tunekit's engine; random Qwen2 and Mistral
 * models (byte-level tokenizers, a head_dim wider than hidden / heads) give the same log-probabilities;
 * F16, BF16, Q8_0 and Q4_0 stay within stated bounds of F32; merging gives the adapter's model.
 *
 * Log-probabilities are compared where either side gives a token more than e^-12; llama.cpp runs with
 * an F32 key-value cache and no flash attention (see ./llama-cpp.ts).
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Dataset } from "../../src/data/dataset.js";
import { ChatRenderer } from "../../src/engine/chat-template.js";
import { LocalModel } from "../../src/engine/local-model.js";
import { LocalTokenizer } from "../../src/engine/tokenizer.js";
import { exportGGUF } from "../../src/export/export-gguf.js";
import { LocalTrainer } from "../../src/local/trainer.js";
import type { TinyModelConfig } from "../../src/testing/tiny-model.js";
import { FIXTURES, HAS_FIXTURES } from "../helpers.js";
import {
  greedy,
  HAS_LLAMA_CPP,
  type LlamaModel,
  logProbabilities,
  logSoftmax,
  maxLogProbDifference,
  withModel,
} from "./llama-cpp.js";
import { TINY_LLAMA_BLOCKS, TINY_MISTRAL, TINY_QWEN2, writeByteLevelModel } from "./tiny-models.js";

const STORIES = join(FIXTURES, "stories260K-hf");
/** Log-probabilities of an F32 export against tunekit's engine: measured 5e-6 to 1e-5. */
const F32_TOLERANCE = 1e-4;

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "tunekit-llama-cpp-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** tunekit's log-probabilities of each next token after every prefix of `ids`. */
async function tunekitLogProbabilities(
  model: LocalModel,
  ids: number[],
  vocab: number,
): Promise<Float64Array[]> {
  return logSoftmax(await model.logits(ids), vocab).slice(0, ids.length - 1);
}

/**
 * The greedy tokens agree until the first place where tunekit's two best logits are closer than
 * `margin` (there the two engines may rightly pick differently); returns how many were compared.
 */
async function sameGreedyTokens(
  model: LocalModel,
  llama: LlamaModel,
  prompt: number[],
  count: number,
  lora?: string,
  margin = 1e-3,
): Promise<number> {
  const theirs = await greedy(llama, prompt, count, lora);
  const ids = [...prompt];
  for (const [index, token] of theirs.entries()) {
    const logits = await model.logits(ids);
    const last = logits.subarray(logits.length - model.config.vocabSize);
    const sorted = [...last].sort((a, b) => b - a);
    if ((sorted[0] as number) - (sorted[1] as number) < margin) return index;
    const mine = last.indexOf(sorted[0] as number);
    expect(token, `token ${index}`).toBe(mine);
    ids.push(mine);
  }
  return theirs.length;
}

/** An adapter that learns two facts on stories260K (a few seconds); its folder. */
async function trainFacts(quantization: "none" | "nf4", outputDir: string): Promise<string> {
  const facts = Dataset.fromArray(
    [
      ["Who has the cat?", "Lily has the cat."],
      ["What color is the ball?", "The ball is red."],
    ].map(([question, answer]) => ({
      messages: [
        { role: "user", content: question },
        { role: "assistant", content: answer },
      ],
    })),
  );
  await using trainer = await LocalTrainer.load(STORIES, { quantization });
  await trainer
    .train(facts, {
      epochs: 30,
      packing: false,
      batchSize: 1,
      gradientAccumulation: 1,
      learningRate: 3e-3,
      loggingSteps: 1000,
      lora: { r: 8, alpha: 16, dropout: 0 },
      outputDir,
    })
    .done();
  return join(outputDir, "adapter");
}

describe.skipIf(!HAS_LLAMA_CPP || !HAS_FIXTURES)("stories260K in llama.cpp", () => {
  it("the F32 export reproduces the fixture's 200-token golden text from BOS", {
    timeout: 60_000,
  }, async () => {
    const out = join(root, "stories-f32.gguf");
    await exportGGUF({ model: STORIES, out, type: "f32" });
    const expected = await readFile(join(STORIES, "expected-greedy-200.txt"), "utf8");
    await withModel(out, async (llama) => {
      const tokens = await greedy(llama, [1], 200);
      expect(llama.detokenize(tokens)).toBe(expected);
    });
  });

  it("llama.cpp tokenizes as tunekit: plain, unicode with byte fallback, and a chat-rendered prompt", async () => {
    const out = join(root, "stories-f16.gguf");
    await exportGGUF({ model: STORIES, out, type: "f16" });
    const tokenizer = await LocalTokenizer.fromFolder(STORIES);
    // A whole exchange: the prompt alone ends in "Assistant: ", whose last space stories260K's
    // normalizer strips and llama.cpp keeps (the export's note says so).
    const chat = new ChatRenderer(tokenizer).render([
      { role: "system", content: "You tell short stories." },
      { role: "user", content: "Who has the cat?" },
      { role: "assistant", content: "Lily has the cat." },
    ]).text;
    await withModel(out, async (llama) => {
      for (const text of [
        "Once upon a time, there was a little girl named Lily.",
        "héllo wörld ✓ 😀 日本 — «quotes»",
        'Tom said "hi!" and ran.\nThe end.',
      ])
        expect(llama.tokenize(text), text).toEqual(tokenizer.encode(text, { addSpecialTokens: false }));
      // The rendered prompt holds `<s>`: parsed as the special token on both sides.
      expect(llama.tokenize(chat, true)).toEqual(tokenizer.encode(chat, { addSpecialTokens: false }));
      expect(llama.tokenize(chat, true)[0]).toBe(1);
    });
  });

  it("an adapter trained with LocalTrainer (no quantization) gives the same tokens in llama.cpp as in tunekit", {
    timeout: 120_000,
  }, async () => {
    const adapter = await trainFacts("none", join(root, "trained"));
    const base = join(root, "stories-base.gguf");
    const lora = join(root, "stories-lora.gguf");
    await exportGGUF({ model: STORIES, out: base, type: "f32" });
    const result = await exportGGUF({ model: STORIES, adapter, out: lora });
    expect(result).toMatchObject({ kind: "adapter", type: "f32", architecture: "llama" });
    await using model = await LocalModel.load(STORIES, { quantization: "none" });
    const tokenizer = await LocalTokenizer.fromFolder(STORIES);
    const prompt = new ChatRenderer(tokenizer, {
      template: await readFile(join(adapter, "chat_template.jinja"), "utf8"),
      source: "adapter",
    }).encodePrompt([{ role: "user", content: "Who has the cat?" }]).inputIds;
    await withModel(base, async (llama) => {
      // The base file alone is the base model.
      expect(await sameGreedyTokens(model, llama, prompt, 24)).toBeGreaterThanOrEqual(5);
      await model.loadAdapter(adapter);
      expect(await sameGreedyTokens(model, llama, prompt, 24, lora)).toBeGreaterThanOrEqual(5);
      const answer = await greedy(llama, prompt, 6, lora);
      expect(llama.detokenize(answer)).toMatch(/^ ?Lily has the cat/);
      const ids = [...prompt, ...answer];
      expect(
        maxLogProbDifference(
          await logProbabilities(llama, ids, 512, lora),
          await tunekitLogProbabilities(model, ids, 512),
        ),
      ).toBeLessThan(F32_TOLERANCE);
    });
  });
});

describe.skipIf(!HAS_LLAMA_CPP || !HAS_FIXTURES)("a QLoRA adapter in llama.cpp", () => {
  it("runs on the F32 base, not on NF4 weights: the trained answer survives; the gap is measured", {
    timeout: 120_000,
  }, async () => {
    const adapter = await trainFacts("nf4", join(root, "qlora"));
    const base = join(root, "qlora-base.gguf");
    const lora = join(root, "qlora-lora.gguf");
    await exportGGUF({ model: STORIES, out: base, type: "f32", modelfile: false });
    await exportGGUF({ model: STORIES, adapter, out: lora, modelfile: false });
    await using nf4 = await LocalModel.load(STORIES, { quantization: "nf4" });
    await nf4.loadAdapter(adapter);
    const tokenizer = await LocalTokenizer.fromFolder(STORIES);
    const template = await readFile(join(adapter, "chat_template.jinja"), "utf8");
    const renderer = new ChatRenderer(tokenizer, { template, source: "adapter" });
    await withModel(base, async (llama) => {
      for (const [question, answer] of [
        ["Who has the cat?", "Lily has the cat"],
        ["What color is the ball?", "The ball is red"],
      ] as const) {
        const prompt = renderer.encodePrompt([{ role: "user", content: question }]).inputIds;
        const theirs = await greedy(llama, prompt, 8, lora);
        expect(llama.detokenize(theirs).trim()).toMatch(new RegExp(`^${answer}`));
        const ids = [...prompt, ...theirs];
        const trained = await tunekitLogProbabilities(nf4, ids, 512);
        const onF32 = await logProbabilities(llama, ids, 512, lora);
        const gap = maxLogProbDifference(onF32, trained);
        const without = maxLogProbDifference(await logProbabilities(llama, ids, 512), trained);
        // The answer's own tokens: their log-probability on each side.
        const answerGap = theirs.map((token, index) => {
          const position = prompt.length - 1 + index;
          return Math.abs((onF32[position]?.[token] as number) - (trained[position]?.[token] as number));
        });
        const meanAnswerGap = answerGap.reduce((sum, value) => sum + value, 0) / answerGap.length;
        console.log(
          `QLoRA adapter on llama.cpp's F32 base against tunekit's NF4 base, "${question}": answer tokens' log-probabilities differ by ${meanAnswerGap.toFixed(3)} nats on average; the largest difference over all tokens is ${gap.toFixed(2)} nats (${without.toFixed(2)} without the adapter)`,
        );
        expect(meanAnswerGap).toBeLessThan(0.5);
        expect(gap).toBeLessThan(without);
      }
    });
  });
});

describe.skipIf(!HAS_LLAMA_CPP)("random Qwen2 and Mistral models in llama.cpp", () => {
  const cases: Array<[string, TinyModelConfig]> = [
    ["Qwen2 (qwen2, q/k/v biases, byte-level BPE with Qwen2's split)", TINY_QWEN2],
    ["Mistral (llama, head_dim 32 with hidden 64 and 4 heads)", TINY_MISTRAL],
    ["Llama (llama, tied embedding, byte-level BPE with Llama 3's split)", TINY_LLAMA_BLOCKS],
  ];
  it.each(cases)(
    "%s: the same tokens, log-probabilities within 1e-4, the same greedy tokens",
    { timeout: 60_000 },
    async (_, config) => {
      const dir = await writeByteLevelModel(
        join(root, config.model_type + config.tie_word_embeddings),
        config,
      );
      const out = `${dir}.gguf`;
      await exportGGUF({ model: dir, out, type: "f32" });
      const tokenizer = await LocalTokenizer.fromFolder(dir);
      await using model = await LocalModel.load(dir, { quantization: "none" });
      const chat = new ChatRenderer(tokenizer).render([{ role: "user", content: "and then?" }], {
        addGenerationPrompt: true,
      }).text;
      await withModel(out, async (llama) => {
        for (const text of ["the and then", "Héllo wörld ✓ 123456 😀", "  spaces\n\nnew lines\ttab"])
          expect(llama.tokenize(text), text).toEqual(tokenizer.encode(text, { addSpecialTokens: false }));
        expect(llama.tokenize(chat, true)).toEqual(tokenizer.encode(chat, { addSpecialTokens: false }));
        const ids = tokenizer.encode("the cat and the dog ran to 42 places", { addSpecialTokens: false });
        const difference = maxLogProbDifference(
          await logProbabilities(llama, ids, config.vocab_size),
          await tunekitLogProbabilities(model, ids, config.vocab_size),
        );
        expect(difference).toBeLessThan(F32_TOLERANCE);
        expect(await sameGreedyTokens(model, llama, ids, 16)).toBeGreaterThan(4);
      });
    },
  );

  it("F16, BF16, Q8_0 and Q4_0 load and generate, each within its bound of F32 and in that order", {
    timeout: 60_000,
  }, async () => {
    // Bounds on the largest log-probability difference from the F32 file, about twice what was measured
    // on these models (F16 0.006-0.017, BF16 0.05-0.12, Q8_0 0.22-0.43, Q4_0 2.3-4.2 nats: random
    // weights make sharp distributions); a block laid out wrong is tens of nats off.
    const bounds = { f16: 0.05, bf16: 0.3, q8_0: 1, q4_0: 8 } as const;
    for (const config of [TINY_LLAMA_BLOCKS, TINY_QWEN2]) {
      const dir = await writeByteLevelModel(join(root, `types-${config.model_type}`), config);
      const ids = [116, 257, 32, 260, 100, 258, 110, 45, 200, 201, 33, 34];
      const reference = join(dir, "f32.gguf");
      await exportGGUF({ model: dir, out: reference, type: "f32", modelfile: false });
      const f32 = await withModel(reference, (llama) => logProbabilities(llama, ids, config.vocab_size));
      const seen: number[] = [];
      for (const [type, bound] of Object.entries(bounds) as Array<[keyof typeof bounds, number]>) {
        const out = join(dir, `${type}.gguf`);
        await exportGGUF({ model: dir, out, type, modelfile: false });
        const difference = await withModel(out, async (llama) => {
          expect((await greedy(llama, ids, 8)).length).toBe(8);
          return maxLogProbDifference(await logProbabilities(llama, ids, config.vocab_size), f32);
        });
        expect(difference, `${config.model_type} ${type}`).toBeLessThan(bound);
        seen.push(difference);
      }
      expect(seen).toEqual([...seen].sort((a, b) => a - b));
    }
  });

  it("a GGUF LoRA adapter (B's rows permuted for llama's q and k) and the merged model give the adapter's model", {
    timeout: 60_000,
  }, async () => {
    for (const config of [TINY_LLAMA_BLOCKS, TINY_QWEN2, TINY_MISTRAL]) {
      const dir = await writeByteLevelModel(
        join(root, `lora-${config.model_type}-${config.head_dim ?? 0}`),
        config,
      );
      const adapter = join(dir, "adapter");
      const ids = [116, 257, 32, 260, 100, 258, 110, 45, 200, 201, 33, 34];
      await using model = await LocalModel.load(dir, { quantization: "none" });
      model.attachLora({ r: 4, alpha: 8, seed: 5 });
      for (let step = 0; step < 3; step++) {
        await model.forwardBackward({ inputIds: ids, labels: ids });
        await model.optimizerStep({ learningRate: 0.05 });
      }
      await model.saveAdapter(adapter);
      const tuned = await tunekitLogProbabilities(model, ids, config.vocab_size);
      const base = join(dir, "base.gguf");
      await exportGGUF({ model: dir, out: base, type: "f32", modelfile: false });
      const lora = (await exportGGUF({ model: dir, adapter, out: join(dir, "lora.gguf") })).out;
      const merged = (
        await exportGGUF({ model: dir, adapter, merge: true, type: "f32", out: join(dir, "merged.gguf") })
      ).out;
      const plain = await withModel(base, (llama) => logProbabilities(llama, ids, config.vocab_size));
      // The adapter changes the model a lot; the GGUF adapter and the merged file change it the same way.
      expect(maxLogProbDifference(plain, tuned)).toBeGreaterThan(1);
      const adapted = await withModel(base, (llama) => logProbabilities(llama, ids, config.vocab_size, lora));
      expect(maxLogProbDifference(adapted, tuned), `${config.model_type} adapter`).toBeLessThan(
        F32_TOLERANCE,
      );
      const mergedLogProbabilities = await withModel(merged, (llama) =>
        logProbabilities(llama, ids, config.vocab_size),
      );
      expect(maxLogProbDifference(mergedLogProbabilities, tuned), `${config.model_type} merged`).toBeLessThan(
        F32_TOLERANCE,
      );
    }
  });
});
