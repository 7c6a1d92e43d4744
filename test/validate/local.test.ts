import { copyFile, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { Dataset } from "../../src/data/dataset.js";
import type { ChatExample, ChatMessage, Example } from "../../src/data/example.js";
import { LocalTokenizer } from "../../src/engine/tokenizer.js";
import { learnedTokens, tokenizeExamples } from "../../src/local/tokenize.js";
import { hubModelHandlers } from "../../src/testing/hub.js";
import { TINY_LLAMA, writeTinyModel } from "../../src/testing/tiny-model.js";
import type { ValidationReport } from "../../src/validate/report.js";
import { Validator } from "../../src/validate/validator.js";
import { runCli } from "../cli-helpers.js";
import { chatRow, FIXTURES, HAS_FIXTURES, jsonl, tempDir, tempFile } from "../helpers.js";

const tunekit = (...argv: string[]) => runCli(argv);

/** The rules alone, with a stand-in counter (one token a character): no model needed. */
const rulesOnly = new Validator({
  target: "local",
  tokenizer: { name: "chars", count: (text) => text.length },
});
const found = async (rows: unknown[]) => {
  const report = await rulesOnly.validate(Dataset.fromArray(rows));
  return [...report.errors, ...report.warnings].map((problem) => [problem.line, problem.code, problem.path]);
};

/** A conversation where the assistant calls a tool, then answers from its result. */
const TOOL_CALL = {
  messages: [
    { role: "user", content: "Weather in Paris?" },
    {
      role: "assistant",
      content: null,
      tool_calls: [
        { id: "c1", type: "function", function: { name: "weather", arguments: '{"city":"Paris"}' } },
      ],
    },
    { role: "tool", tool_call_id: "c1", content: "sunny" },
    { role: "assistant", content: "Sunny." },
  ],
  tools: [{ type: "function", function: { name: "weather", parameters: { type: "object" } } }],
};

describe("Validator (local): the rules", () => {
  it("accepts chat, completion and text examples, one example is enough", async () => {
    expect(await found([chatRow("q", "a", "sys")])).toEqual([]);
    expect(await found([{ prompt: "p", completion: "c" }])).toEqual([]);
    expect(await found([{ text: "Once upon a time" }])).toEqual([]);
    expect(await found([{ instruction: "i", output: "o" }])).toEqual([]);
    const report = await rulesOnly.validate(Dataset.fromArray([chatRow()]));
    expect(report).toMatchObject({ ok: true, target: "local", examples: 1, valid: 1 });
  });

  it("a preference pair is an error: local training is supervised only", async () => {
    const pair = {
      input: { messages: [{ role: "user", content: "Hi" }] },
      preferred_output: [{ role: "assistant", content: "Hello!" }],
      non_preferred_output: [{ role: "assistant", content: "What." }],
    };
    const report = await rulesOnly.validate(Dataset.fromArray([pair]));
    expect(report.ok).toBe(false);
    expect(report.errors.map((problem) => [problem.line, problem.code])).toEqual([[1, "unsupported_format"]]);
    expect(report.errors[0]?.message).toMatch(/supervised only/);
  });

  it("chat: OpenAI's chat messages, tool calls included, with an assistant message to learn", async () => {
    expect(await found([{ messages: [{ role: "user", content: "x" }] }])).toEqual([
      [1, "example_missing_assistant_message", undefined],
    ]);
    expect(await found([TOOL_CALL])).toEqual([]);
    const unanswered = {
      messages: [
        { role: "user", content: "weather?" },
        { role: "tool", tool_call_id: "nope", content: "sunny" },
        { role: "robot", content: "beep" },
        { role: "assistant", content: "Sunny." },
      ],
      tools: [{ name: "f" }],
    };
    expect(await found([unanswered])).toEqual([
      [1, "unknown_tool_call_id", "messages[1].tool_call_id"],
      [1, "unrecognized_role", "messages[2].role"],
      [1, "invalid_tools", "tools[0]"],
    ]);
    const weighted = {
      messages: [
        { role: "user", content: "x" },
        { role: "assistant", content: "y", weight: 2 },
      ],
    };
    expect(await found([weighted])).toEqual([[1, "invalid_weight", "messages[1].weight"]]);
  });

  it("warns about what local training leaves out: images, refusal, other keys, empty completions", async () => {
    const left = {
      messages: [
        { role: "user", content: "x", name: "jo" },
        {
          role: "assistant",
          content: [
            { type: "text", text: "y" },
            { type: "image_url", image_url: { url: "https://x/y.png" } },
          ],
          refusal: null,
        },
      ],
      parallel_tool_calls: false,
    };
    expect(await found([left])).toEqual([
      [1, "ignored_key", "messages[1].refusal"],
      [1, "ignored_images", "messages[1].content"],
      [1, "unrecognized_key", undefined],
    ]);
    // The stand-in counter has no end-of-text token: nothing at all is trained.
    expect(await found([{ prompt: "p", completion: "" }])).toEqual([
      [1, "empty_content", "completion"],
      [1, "no_trained_tokens", undefined],
    ]);
  });
});

/** A model folder without weights: the Phi-3 tokenizer and a config with a 64-token context. */
async function phi3Folder(maxPositions = 64): Promise<string> {
  const dir = await tempDir();
  for (const file of ["tokenizer.json", "tokenizer_config.json"])
    await copyFile(join(FIXTURES, "phi-3-mini", file), join(dir, file));
  const config = { ...TINY_LLAMA, vocab_size: 32064, max_position_embeddings: maxPositions };
  await writeFile(join(dir, "config.json"), JSON.stringify(config));
  return dir;
}

/** What the trainer makes of each example: token count and learned labels, uncut. */
async function asTrained(examples: Example[], dir: string) {
  const tokenizer = await LocalTokenizer.fromFolder(dir);
  const { examples: tokenized } = await tokenizeExamples(examples, tokenizer, { maxSeqLength: 1_000_000 });
  return tokenized.map(({ inputIds, labels }) => ({
    total: inputIds.length,
    assistant: learnedTokens(labels),
  }));
}

const chat = (...turns: Array<[string, string, 0 | 1 | undefined] | [string, string]>): ChatExample => ({
  kind: "chat",
  messages: turns.map(([role, content, weight]) => ({
    role: role as ChatMessage["role"],
    content,
    ...(weight === undefined ? {} : { weight }),
  })),
});

const codes = (report: ValidationReport) =>
  [...report.errors, ...report.warnings].map((problem) => [problem.line, problem.code]);

describe.skipIf(!HAS_FIXTURES)("Validator (local): exact counts with the Phi-3 tokenizer", () => {
  it("counts each example as tokenizeExamples does: all its tokens, and the labelled ones", async () => {
    const dir = await phi3Folder(4096);
    const examples: Example[] = [
      chat(
        ["system", "You are a support agent."],
        ["user", "Where is my order?"],
        ["assistant", "It ships tomorrow."],
      ),
      chat(
        ["user", "Hi"],
        ["assistant", "Hello!", 0],
        ["user", "Refund?"],
        ["assistant", "Sure, within 30 days."],
      ),
      { kind: "completion", prompt: "Translate to French: cat", completion: " chat" },
      { kind: "text", text: "Once upon a time there was a tiny model." },
    ];
    const expected = await asTrained(examples, dir);
    expect(expected).toHaveLength(4);
    const validator = new Validator({ target: "local", model: dir });
    for (const [index, example] of examples.entries()) {
      const report = await validator.validate(Dataset.fromArray([example]));
      expect(report.ok).toBe(true);
      expect(codes(report)).toEqual([]);
      const want = expected[index] as { total: number; assistant: number };
      expect(report.stats.totalTokens).toMatchObject({ min: want.total, max: want.total });
      expect(report.stats.assistantTokens).toMatchObject({ min: want.assistant, max: want.assistant });
    }
    const report = await validator.validate(Dataset.fromArray(examples.slice(0, 2)));
    expect(report).toMatchObject({
      target: "local",
      model: dir,
      tokenizer: join(dir, "tokenizer.json"),
      contextLimit: 2048, // the trainer's default maxSeqLength, within max_position_embeddings 4096
      valid: 2,
    });
    expect(report.cost).toMatchObject({
      epochs: 3,
      billedTokens: (expected[0]?.total ?? 0) + (expected[1]?.total ?? 0),
    });
  });

  it("takes the limit from max_position_embeddings (or the trainer's 2048 below it), warns past it, and an explicit contextLimit wins", async () => {
    const dir = await phi3Folder(64);
    const long = chat(["user", "Tell me a story."], ["assistant", "Once upon a time ".repeat(20)]);
    const short = chat(["user", "Hi"], ["assistant", "Hello!"]);
    const [full] = await asTrained([long], dir);
    const report = await new Validator({ target: "local", model: dir }).validate(
      Dataset.fromArray([short, long]),
    );
    expect(report.contextLimit).toBe(64);
    expect(codes(report)).toEqual([[2, "example_too_long"]]);
    expect(report.warnings[0]?.message).toContain(`${full?.total} tokens, over the 64-token limit`);
    expect(report.stats.overLimit).toBe(1);
    // Only what survives the cut is trained.
    expect(report.stats.assistantTokens.max).toBeLessThan(full?.assistant ?? 0);
    const roomy = await new Validator({ target: "local", model: dir, contextLimit: 1000 }).validate(
      Dataset.fromArray([short, long]),
    );
    expect(roomy.contextLimit).toBe(1000);
    expect(codes(roomy)).toEqual([]);
  });

  it("warns no_trained_tokens where nothing is left to learn: weight 0 everywhere, or cut off", async () => {
    const dir = await phi3Folder(64);
    const silent = chat(["user", "Hi"], ["assistant", "Hello!", 0]);
    const cut = chat(["user", "Tell me a long story. ".repeat(20)], ["assistant", "No."]);
    const report = await new Validator({ target: "local", model: dir }).validate(
      Dataset.fromArray([chat(["user", "Hi"], ["assistant", "Hello!"]), silent, cut]),
    );
    expect(report.ok).toBe(true);
    expect(codes(report)).toEqual([
      [2, "no_trained_tokens"],
      [3, "example_too_long"],
      [3, "no_trained_tokens"],
    ]);
    expect(report.warnings[0]?.message).toMatch(/weight 0/);
    expect(report.warnings[2]?.message).toMatch(/64-token limit/);
  });

  it("a preference pair is an error; trainOn all trains every token", async () => {
    const dir = await phi3Folder(4096);
    const pair: Example = {
      kind: "preference",
      input: [{ role: "user", content: "Hi" }],
      preferred: [{ role: "assistant", content: "Hello!" }],
      rejected: [{ role: "assistant", content: "What." }],
    };
    const report = await new Validator({ target: "local", model: dir }).validate(Dataset.fromArray([pair]));
    expect(report.ok).toBe(false);
    expect(codes(report)).toEqual([[1, "unsupported_format"]]);
    const example = chat(["user", "Hi"], ["assistant", "Hello!"]);
    const all = await new Validator({ target: "local", model: dir, trainOn: "all" }).validate(
      Dataset.fromArray([example]),
    );
    expect(all.stats.assistantTokens.max).toBe(all.stats.totalTokens.max - 1);
  });

  it("tunekit validate FILE --target local --model DIR", async () => {
    const dir = await phi3Folder(64);
    const file = await tempFile(
      "train.jsonl",
      jsonl([
        chatRow(),
        {
          messages: [
            { role: "user", content: "Hi" },
            { role: "assistant", content: "Hey", weight: 0 },
          ],
        },
      ]),
    );
    const text = await tunekit("validate", file, "--target", "local", "--model", dir);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`local ${dir} (${join(dir, "tokenizer.json")}, limit 64 tokens)`);
    expect(text.stdout).toContain("line 2: it has no trained token");
    const json = await tunekit("validate", file, "--target", "local", "--model", dir, "--json");
    expect(JSON.parse(json.stdout)).toMatchObject({
      target: "local",
      contextLimit: 64,
      examples: 2,
      valid: 2,
    });
    const pair = await tempFile(
      "pairs.jsonl",
      jsonl([
        {
          input: { messages: [{ role: "user", content: "Hi" }] },
          preferred_output: [{ role: "assistant", content: "Hello!" }],
          non_preferred_output: [{ role: "assistant", content: "What." }],
        },
      ]),
    );
    expect((await tunekit("validate", pair, "--target", "local", "--model", dir)).code).toBe(1);
    const noModel = await tunekit("validate", file, "--target", "local");
    expect(noModel.code).not.toBe(0);
    expect(noModel.stderr).toContain("--target local needs --model PATH|HUB_ID");
  });
});

describe("Validator (local): a generated tiny model", () => {
  it("a base model without a chat template: tunekit's default template, noted once", async () => {
    const dir = await writeTinyModel(join(await tempDir(), "tiny"));
    const examples = [
      chat(["user", "hi"], ["assistant", "hello"]),
      chat(["user", "ok"], ["assistant", "fine"]),
    ];
    const expected = await asTrained(examples, dir);
    const report = await new Validator({ target: "local", model: dir }).validate(Dataset.fromArray(examples));
    expect(report).toMatchObject({ ok: true, contextLimit: TINY_LLAMA.max_position_embeddings, valid: 2 });
    expect(codes(report)).toEqual([[undefined, "chat_template"]]);
    expect(report.warnings[0]?.message).toContain("no chat template");
    expect(report.stats.totalTokens.min).toBe(Math.min(...expected.map((entry) => entry.total)));
    expect(report.stats.assistantTokens.max).toBe(Math.max(...expected.map((entry) => entry.assistant)));
  });

  it("the template's notes are warned once; a conversation it refuses is an error at its line", async () => {
    const template =
      "{% for message in messages %}{% if message.role == 'system' %}{{ raise_exception('no system role') }}" +
      "{% elif message.content == 'boom' %}{{ raise_exception('roles must alternate') }}" +
      "{% endif %}{{ message.role }}: {{ message.content }}\n{% endfor %}";
    const dir = await writeTinyModel(join(await tempDir(), "tiny"), TINY_LLAMA, { chatTemplate: template });
    const report = await new Validator({ target: "local", model: dir }).validate(
      Dataset.fromArray([
        chatRow("a", "b"),
        chatRow("c", "d", "sys"),
        chatRow("e", "f", "sys"),
        chatRow("boom", "x"),
      ]),
    );
    // The trainer folds a refused system message into the first user turn; the trainer stops on a refusal.
    expect(codes(report)).toEqual([
      [4, "chat_template_error"],
      [2, "chat_template"],
    ]);
    expect(report.warnings[0]?.message).toMatch(/refuses the system role/);
    expect(report.errors[0]?.message).toMatch(/roles must alternate/);
    expect(report).toMatchObject({ ok: false, examples: 4, valid: 3 });
  });

  it("counts a tool-calling conversation as the trainer does; a template that drops the calls is an error", async () => {
    const dir = await writeTinyModel(join(await tempDir(), "tiny"));
    const [expected] = await asTrained(await Dataset.fromArray([TOOL_CALL]).toArray(), dir);
    const report = await new Validator({ target: "local", model: dir }).validate(
      Dataset.fromArray([TOOL_CALL]),
    );
    expect(expected?.assistant).toBeGreaterThan(0);
    expect(report.errors).toEqual([]);
    expect(report.stats.totalTokens.max).toBe(expected?.total);
    expect(report.stats.assistantTokens.max).toBe(expected?.assistant);
    // A template without tool calls writes nothing for a turn that only calls tools.
    const plain = "{% for message in messages %}{{ message.role }}: {{ message.content }}\n{% endfor %}";
    const other = await writeTinyModel(join(await tempDir(), "plain"), TINY_LLAMA, { chatTemplate: plain });
    const refused = await new Validator({ target: "local", model: other }).validate(
      Dataset.fromArray([TOOL_CALL]),
    );
    expect(codes(refused)).toEqual([[1, "chat_template_error"]]);
  });

  it("needs a model (or a tokenizer), and says which folder is not one", async () => {
    expect(() => new Validator({ target: "local" })).toThrow(/give model/);
    await expect(
      new Validator({ target: "local", model: join(await tempDir(), "nothing") }).validate(
        Dataset.fromArray([chatRow()]),
      ),
    ).rejects.toThrow(/no model folder here/);
    const empty = await tempDir();
    await expect(
      new Validator({ target: "local", model: empty }).validate(Dataset.fromArray([chatRow()])),
    ).rejects.toThrow(/no config\.json/);
  });

  describe("a Hugging Face Hub id", () => {
    const server = setupServer();
    beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
    beforeEach(() => {
      for (const name of ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_ENDPOINT"])
        vi.stubEnv(name, "");
      vi.spyOn(console, "debug").mockImplementation(() => {});
    });
    afterEach(() => {
      server.resetHandlers();
      vi.unstubAllEnvs();
      vi.restoreAllMocks();
    });
    afterAll(() => server.close());

    it("fetches the config and tokenizer only, never the weights", async () => {
      const dir = await writeTinyModel(join(await tempDir(), "tiny"));
      const files: Record<string, Uint8Array> = {};
      for (const name of ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"])
        files[name] = await readFile(join(dir, name));
      server.use(...hubModelHandlers({ repo: "org/tiny", files }));
      const requested: string[] = [];
      server.events.on("request:start", ({ request }) => {
        requested.push(new URL(request.url).pathname);
      });
      const cacheDir = await tempDir();
      const report = await new Validator({ target: "local", model: "org/tiny", hub: { cacheDir } }).validate(
        Dataset.fromArray([chatRow("hi", "hello")]),
      );
      server.events.removeAllListeners();
      expect(report).toMatchObject({
        ok: true,
        model: "org/tiny",
        contextLimit: TINY_LLAMA.max_position_embeddings,
      });
      expect(requested.some((path) => path.endsWith("/tokenizer.json"))).toBe(true);
      expect(requested.some((path) => path.endsWith("/model.safetensors"))).toBe(false);
      // Offline, the cached config and tokenizer are enough.
      vi.stubEnv("HF_HUB_OFFLINE", "1");
      const offline = await new Validator({ target: "local", model: "org/tiny", hub: { cacheDir } }).validate(
        Dataset.fromArray([chatRow("hi", "hello")]),
      );
      expect(offline.stats.totalTokens).toEqual(report.stats.totalTokens);
    });
  });
});
