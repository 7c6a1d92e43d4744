/**
 * The `ChatTarget` contract (./contract.ts) on every local target: a LocalModel with its adapter on
 * and off, the trainer's tuned and base views, and the local provider's chat on a saved adapter; and
 * what only local targets show: the same greedy text from each of them, the adapter's template,
 * tool calls parsed from the reply, answerLoss as training scores it.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DisposedError, ModelFormatError, ValidationError } from "../../src/core/errors.js";
import { Dataset } from "../../src/data/dataset.js";
import { tokenizeConversation } from "../../src/engine/assistant-mask.js";
import { LocalModel } from "../../src/engine/local-model.js";
import { parseToolCalls } from "../../src/engine/tool-calls.js";
import { LocalTrainer } from "../../src/local/trainer.js";
import { local } from "../../src/providers/local/index.js";
import { TINY_LLAMA, writeTinyModel } from "../../src/testing/tiny-model.js";
import { chatTargetContract } from "./contract.js";

/** Wide enough that generating takes a while, so a stream can be aborted under way. */
const CONFIG = {
  ...TINY_LLAMA,
  hidden_size: 192,
  intermediate_size: 384,
  num_hidden_layers: 4,
  num_attention_heads: 6,
  num_key_value_heads: 2,
  max_position_embeddings: 1024,
};
const messages = [
  { role: "system" as const, content: "Be kind." },
  { role: "user" as const, content: "where is my order" },
];

let dir = "";
let modelDir = "";
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tunekit-chat-"));
  modelDir = await writeTinyModel(join(dir, "model"), CONFIG);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A model with an adapter whose B is not zero, so the adapter changes the answers. */
async function tunedModel(seed = 1): Promise<LocalModel> {
  const model = await LocalModel.load(modelDir, { threads: 1 });
  model.attachLora({ r: 4, seed });
  const weights = model.getLoraWeights();
  let state = seed;
  for (const [key, values] of weights)
    if (key.endsWith("lora_B.weight"))
      weights.set(
        key,
        values.map(() => {
          state = (state * 1103515245 + 12345) % 2147483648;
          return (state / 2147483648 - 0.5) * 0.4;
        }),
      );
  model.setLoraWeights(weights);
  return model;
}

async function nudge(model: LocalModel): Promise<void> {
  const weights = model.getLoraWeights();
  const [key, values] = [...weights].find(([name]) => name.endsWith("lora_B.weight")) as [
    string,
    Float32Array,
  ];
  weights.set(
    key,
    values.map((value) => value + 0.01),
  );
  model.setLoraWeights(weights);
}

const disposedTarget = async () => {
  const model = await LocalModel.load(modelDir);
  model.dispose();
  return { target: model, error: DisposedError, code: "disposed" };
};

chatTargetContract("LocalModel with its adapter", {
  subject: async () => {
    const model = await tunedModel();
    return { target: model, messages, dispose: async () => model.dispose() };
  },
  failing: disposedTarget,
  changeWeights: async (target) => nudge(target as LocalModel),
});

chatTargetContract("LocalModel.view({ adapter: false })", {
  subject: async () => {
    const model = await tunedModel();
    return { target: model.view({ adapter: false }), messages, dispose: async () => model.dispose() };
  },
  failing: disposedTarget,
});

const ROWS = Array.from({ length: 6 }, (_, index) => ({
  messages: [...messages, { role: "assistant", content: `it ships on day ${index} of the week` }],
}));

async function trained(): Promise<LocalTrainer> {
  const trainer = await LocalTrainer.load(modelDir, { quantization: "none", threads: 1 });
  await trainer.train(Dataset.fromArray(ROWS), { epochs: 1, batchSize: 2, gradientAccumulation: 1 }).done();
  return trainer;
}

/** The trainer behind each trainer view the contract gets. */
const owners = new WeakMap<object, LocalTrainer>();

chatTargetContract("LocalTrainer.model()", {
  subject: async () => {
    const trainer = await trained();
    const target = trainer.model();
    owners.set(target, trainer);
    return { target, messages, dispose: async () => trainer.dispose() };
  },
  failing: async () => {
    const trainer = await trained();
    trainer.dispose();
    return { target: trainer.model(), error: DisposedError, code: "disposed" };
  },
  // One more epoch moves the adapter, and the same view's identity with it.
  changeWeights: async (target) => {
    const trainer = owners.get(target) as LocalTrainer;
    await trainer
      .train(Dataset.fromArray(ROWS), { epochs: 2, batchSize: 2, gradientAccumulation: 1, seed: 9 })
      .done();
  },
});

chatTargetContract("LocalTrainer.baseModel()", {
  subject: async () => {
    const trainer = await trained();
    return { target: trainer.baseModel(), messages, dispose: async () => trainer.dispose() };
  },
  failing: async () => {
    const trainer = await trained();
    trainer.dispose();
    return { target: trainer.baseModel(), error: DisposedError, code: "disposed" };
  },
});

chatTargetContract("local().chat() on a saved adapter", {
  subject: async () => {
    const model = await tunedModel(3);
    const adapter = join(dir, `adapter-${Math.random().toString(36).slice(2)}`);
    await model.saveAdapter(adapter);
    model.dispose();
    const provider = local({ outputDir: join(dir, "local"), quantization: "none", threads: 1 });
    return { target: provider.chat(adapter), messages, dispose: () => provider[Symbol.asyncDispose]() };
  },
  failing: async () => ({
    target: local({ outputDir: join(dir, "local") }).chat(join(dir, "no-such-model")),
    error: ModelFormatError,
    code: "file_not_found",
  }),
});

describe("local targets agree", () => {
  it("the trainer's view, LocalModel with the saved adapter and local().chat() give the same greedy text", async () => {
    const trainer = await trained();
    const adapter = join(dir, "agree-adapter");
    await trainer.saveAdapter(adapter);
    const fromTrainer = await trainer.model().complete(messages, { maxTokens: 12, temperature: 0 });
    trainer.dispose();
    await using model = await LocalModel.load(modelDir, { threads: 1 });
    await model.loadAdapter(adapter);
    expect(model.chatFormat.source).toBe("adapter");
    const fromModel = await model.complete(messages, { maxTokens: 12, temperature: 0 });
    await using provider = local({ outputDir: join(dir, "agree"), quantization: "none", threads: 1 });
    const fromProvider = await provider.chat(adapter).complete(messages, { maxTokens: 12, temperature: 0 });
    expect(fromModel).toEqual(fromTrainer);
    expect(fromProvider).toEqual(fromTrainer);
  });

  it("a new local().chat() on an adapter folder whose weights changed has another identity", async () => {
    const model = await tunedModel(5);
    const adapter = join(dir, "changing");
    await model.saveAdapter(adapter);
    await using provider = local({ outputDir: join(dir, "changing-local"), quantization: "none" });
    const before = provider.chat(adapter).identity;
    expect(provider.chat(adapter).identity).toBe(before);
    await nudge(model);
    await model.saveAdapter(adapter);
    model.dispose();
    expect(provider.chat(adapter).identity).not.toBe(before);
  });
});

describe("answerLoss", () => {
  it("is training's loss on the expected reply alone, with earlier assistant turns as context", async () => {
    await using model = await tunedModel();
    const conversation = [
      ...messages,
      { role: "assistant" as const, content: "let me look" },
      { role: "user" as const, content: "thanks" },
    ];
    const result = await model.answerLoss(conversation, "it ships tomorrow");
    const { inputIds, labels } = tokenizeConversation(model.chatRenderer, [
      ...conversation.map((message) =>
        message.role === "assistant" ? { ...message, weight: 0 as const } : message,
      ),
      { role: "assistant", content: "it ships tomorrow" },
    ]);
    expect(await model.loss(inputIds, labels)).toEqual(result);
    // The reply's characters and the EOS that closes its turn: the tiny tokenizer has one token per character.
    expect(result.tokens).toBe("it ships tomorrow".length + 1);
    const base = await model.view({ adapter: false }).answerLoss(conversation, "it ships tomorrow");
    expect(base.loss).not.toBe(result.loss);
    await expect(model.answerLoss(conversation, 42 as never)).rejects.toThrow(ValidationError);
  });
});

describe("tool calls of local models", () => {
  const tools = [{ type: "function" as const, function: { name: "lookup", parameters: { type: "object" } } }];

  it("are read in the Hermes / Qwen form and as JSON lines, only for offered tools", () => {
    expect(
      parseToolCalls(
        'Checking.\n<tool_call>\n{"name": "lookup", "arguments": {"id": 7}}\n</tool_call>',
        tools,
      ),
    ).toEqual({
      content: "Checking.",
      toolCalls: [
        {
          id: expect.stringMatching(/^call_/),
          type: "function",
          function: { name: "lookup", arguments: '{"id":7}' },
        },
      ],
    });
    expect(
      parseToolCalls('{"name": "lookup", "parameters": {"id": 7}}', tools).toolCalls[0]?.function,
    ).toEqual({
      name: "lookup",
      arguments: '{"id":7}',
    });
    expect(parseToolCalls('{"name": "delete_everything", "arguments": {}}', tools).toolCalls).toEqual([]);
    expect(parseToolCalls("no calls here", tools)).toEqual({ content: "no calls here", toolCalls: [] });
  });

  it("a model trained to call a tool calls it through complete and completeStream, in the default template's form", async () => {
    const call = {
      id: "call_1",
      type: "function" as const,
      function: { name: "lookup", arguments: '{"id":7}' },
    };
    const rows = Array.from({ length: 8 }, () => ({
      messages: [...messages, { role: "assistant", content: null, tool_calls: [call] }],
      tools,
    }));
    await using trainer = await LocalTrainer.load(modelDir, { quantization: "none", threads: 2 });
    await trainer
      .train(Dataset.fromArray(rows), {
        epochs: 30,
        batchSize: 4,
        gradientAccumulation: 1,
        learningRate: 3e-3,
        lora: { r: 8, alpha: 16, dropout: 0 },
      })
      .done();
    const target = trainer.model();
    expect(target.capabilities.tools).toBe(true);
    const result = await target.complete(messages, { tools, temperature: 0, maxTokens: 60 });
    expect(result.finishReason).toBe("tool_calls");
    expect(result.toolCalls?.map((entry) => entry.function)).toEqual([
      { name: "lookup", arguments: '{"id":7}' },
    ]);
    expect(result.text).toBe("");
    const stream = target.completeStream(messages, { tools, temperature: 0, maxTokens: 60 });
    let text = "";
    const names: string[] = [];
    for await (const delta of stream) {
      text += delta.text;
      for (const piece of delta.toolCalls ?? []) if (piece.name) names.push(piece.name);
    }
    expect(text).toBe("");
    expect(names).toEqual(["lookup"]);
    expect(await stream.result).toEqual(result);
  }, 120_000);
});
