/**
 * `serve` on loopback, called with the official `openai` client: plain and streamed answers, the
 * shapes OpenAI sends, errors as OpenAI error objects, the queue, disconnects and shutdown.
 */
import { createServer, request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import OpenAI from "openai";
import { describe, expect, it, vi } from "vitest";
import { LocalModel } from "../../src/engine/local-model.js";
import { serve } from "../../src/serve/index.js";
import { MockChatTarget } from "../../src/testing/mock-chat-target.js";
import { TINY_LLAMA, writeTinyModel } from "../../src/testing/tiny-model.js";
import { tempDir } from "../helpers.js";

const client = (baseURL: string, apiKey = "none") => new OpenAI({ baseURL, apiKey, maxRetries: 0 });

describe("serve({ target })", () => {
  it("answers chat completions whole and streamed, as OpenAI does, with usage in the stream", async () => {
    const lines: string[] = [];
    await using server = await serve({
      target: new MockChatTarget({ modelId: "mock" }),
      port: 0,
      log: (line) => lines.push(line),
    });
    await server.ready;
    const openai = client(server.url);
    const models = await openai.models.list();
    expect(models.data.map((model) => model.id)).toEqual(["mock"]);
    const whole = await openai.chat.completions.create({
      model: "mock",
      messages: [{ role: "user", content: "where is my order" }],
      max_tokens: 50,
    });
    expect(whole.object).toBe("chat.completion");
    expect(whole.choices[0]?.message).toMatchObject({
      role: "assistant",
      content: "echo: where is my order",
    });
    expect(whole.choices[0]?.finish_reason).toBe("stop");
    expect(whole.usage?.completion_tokens).toBeGreaterThan(0);

    const stream = await openai.chat.completions.create({
      model: "mock",
      messages: [{ role: "user", content: "where is my order" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks[0]?.choices[0]?.delta).toEqual({ role: "assistant", content: "" });
    const text = chunks.map((chunk) => chunk.choices[0]?.delta.content ?? "").join("");
    expect(text).toBe(whole.choices[0]?.message.content);
    expect(chunks.at(-2)?.choices[0]?.finish_reason).toBe("stop");
    expect(chunks.at(-1)?.choices).toEqual([]);
    expect(chunks.at(-1)?.usage).toEqual(whole.usage);
  });

  it("stop, max_tokens and finish_reason; tool calls whole and streamed", async () => {
    const target = new MockChatTarget({
      modelId: "mock",
      reply: ({ options }) =>
        options.tools?.length
          ? {
              text: "",
              finishReason: "tool_calls",
              toolCalls: [
                {
                  id: "call_1",
                  type: "function",
                  function: { name: "track", arguments: '{"order":"20481"}' },
                },
              ],
            }
          : "one two three four five",
    });
    await using server = await serve({ target, port: 0 });
    await server.ready;
    const openai = client(server.url);
    const cut = await openai.chat.completions.create({
      model: "mock",
      messages: [{ role: "user", content: "x" }],
      max_tokens: 2,
    });
    expect(cut.choices[0]).toMatchObject({ message: { content: "one two" }, finish_reason: "length" });
    const stopped = await openai.chat.completions.create({
      model: "mock",
      messages: [{ role: "user", content: "x" }],
      stop: " three",
    });
    expect(stopped.choices[0]?.message.content).toBe("one two");
    const tools = [
      {
        type: "function" as const,
        function: { name: "track", parameters: { type: "object", properties: {} } },
      },
    ];
    const called = await openai.chat.completions.create({
      model: "mock",
      messages: [{ role: "user", content: "track 20481" }],
      tools,
    });
    expect(called.choices[0]?.finish_reason).toBe("tool_calls");
    expect(called.choices[0]?.message.tool_calls?.[0]).toMatchObject({
      id: "call_1",
      function: { name: "track", arguments: '{"order":"20481"}' },
    });
    const streamed = await openai.chat.completions.create({
      model: "mock",
      messages: [{ role: "user", content: "track" }],
      tools,
      stream: true,
    });
    const calls: Record<number, { name: string; arguments: string }> = {};
    let finish: string | null | undefined;
    for await (const chunk of streamed) {
      for (const delta of chunk.choices[0]?.delta.tool_calls ?? []) {
        calls[delta.index] ??= { name: "", arguments: "" };
        const call = calls[delta.index] as { name: string; arguments: string };
        call.name += delta.function?.name ?? "";
        call.arguments += delta.function?.arguments ?? "";
      }
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(calls[0]).toEqual({ name: "track", arguments: '{"order":"20481"}' });
    expect(finish).toBe("tool_calls");
  });

  it("errors are OpenAI error objects: bad bodies, unsupported fields, unknown models, a wrong key, an over-long body", async () => {
    const lines: string[] = [];
    await using server = await serve({
      target: new MockChatTarget({ modelId: "mock" }),
      port: 0,
      apiKey: "sk-serve-secret-0123456789",
      maxBodyBytes: 2048,
      log: (line) => lines.push(line),
    });
    await server.ready;
    const openai = client(server.url, "sk-serve-secret-0123456789");
    const failure = (promise: Promise<unknown>) =>
      promise.then(
        () => undefined,
        (error) => error as InstanceType<typeof OpenAI.APIError>,
      );
    const messages = [{ role: "user" as const, content: "hi" }];
    const unknown = await failure(openai.chat.completions.create({ model: "nope", messages }));
    expect(unknown?.status).toBe(404);
    expect(unknown?.error).toMatchObject({
      type: "invalid_request_error",
      param: "model",
      code: "model_not_found",
    });
    const n = await failure(openai.chat.completions.create({ model: "mock", messages, n: 2 }));
    expect(n?.status).toBe(400);
    expect(n?.error).toMatchObject({ param: "n", code: "unsupported_parameter" });
    const penalty = await failure(
      openai.chat.completions.create({ model: "mock", messages, presence_penalty: 0.5 }),
    );
    expect((penalty?.error as { param?: string } | undefined)?.param).toBe("presence_penalty");
    const format = await failure(
      openai.chat.completions.create({ model: "mock", messages, response_format: { type: "json_object" } }),
    );
    expect((format?.error as { param?: string } | undefined)?.param).toBe("response_format");
    // Fields that change nothing are accepted.
    const fine = await openai.chat.completions.create({
      model: "mock",
      messages,
      user: "u1",
      presence_penalty: 0,
      logit_bias: {},
    });
    expect(fine.choices[0]?.message.content).toBe("echo: hi");
    const bad = await failure(openai.chat.completions.create({ model: "mock", messages: [] }));
    expect(bad?.status).toBe(400);
    const big = await failure(
      openai.chat.completions.create({
        model: "mock",
        messages: [{ role: "user", content: "x".repeat(5000) }],
      }),
    );
    expect(big?.status).toBe(413);
    const wrongKey = await failure(
      client(server.url, "sk-wrong").chat.completions.create({ model: "mock", messages }),
    );
    expect(wrongKey?.status).toBe(401);
    // Still up, and no key in any log line.
    expect((await openai.chat.completions.create({ model: "mock", messages })).choices).toHaveLength(1);
    expect(lines.join("\n")).not.toContain("sk-serve-secret");
    const health = await fetch(server.url.replace("/v1", "/health"));
    expect(health.status).toBe(200);
  });

  it("a full queue answers 429 with retry-after; a client that disconnects cancels its request", async () => {
    let aborted = 0;
    const slow = new MockChatTarget({
      modelId: "slow",
      reply: "a b c d e f g h i j k l m n o p",
      delayMs: 30,
    });
    const original = slow.completeStream.bind(slow);
    slow.completeStream = (messages, options = {}) => {
      options.signal?.addEventListener("abort", () => aborted++, { once: true });
      return original(messages, options);
    };
    await using server = await serve({ target: slow, port: 0, maxBatch: 1, maxQueue: 1 });
    await server.ready;
    const body = JSON.stringify({ model: "slow", messages: [{ role: "user", content: "x" }], stream: true });
    const url = new URL(`${server.url}/chat/completions`);
    // The first holds the only slot; the second waits; the third finds the queue full.
    const first = httpRequest(url, { method: "POST", headers: { "content-type": "application/json" } });
    first.end(body);
    await new Promise((resolve) => first.once("response", resolve));
    const second = fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body });
    await new Promise((resolve) => setTimeout(resolve, 20));
    const third = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body });
    expect(third.status).toBe(429);
    expect(third.headers.get("retry-after")).toBe("1");
    expect(((await third.json()) as { error: { code: string } }).error.code).toBe("queue_full");
    first.destroy(); // the client goes away mid-stream
    const answer = await second;
    expect(answer.status).toBe(200);
    expect(await answer.text()).toContain("data: [DONE]");
    expect(aborted).toBe(1);
  });

  it("close() lets a request in flight finish, then stops", async () => {
    const slow = new MockChatTarget({ modelId: "slow", reply: "a b c d e", delayMs: 20 });
    const server = await serve({ target: slow, port: 0 });
    await server.ready;
    const pending = client(server.url).chat.completions.create({
      model: "slow",
      messages: [{ role: "user", content: "x" }],
      stream: true,
    });
    const stream = await pending;
    const closing = server.close();
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
    await closing;
    expect(text).toBe("a b c d e");
    await expect(fetch(`${server.url}/models`)).rejects.toThrow();
  });

  it("/v1/completions needs a model that takes a prompt; its unsupported fields are refused by name", async () => {
    await using server = await serve({ target: new MockChatTarget({ modelId: "mock" }), port: 0 });
    await server.ready;
    const failure = (promise: Promise<unknown>) =>
      promise.then(
        () => undefined,
        (error) => error as InstanceType<typeof OpenAI.APIError>,
      );
    const chatOnly = await failure(client(server.url).completions.create({ model: "mock", prompt: "x" }));
    expect(chatOnly?.status).toBe(400);
    expect(chatOnly?.error).toMatchObject({ code: "unsupported_model" });
    const echo = await failure(
      client(server.url).completions.create({ model: "mock", prompt: "x", echo: true }),
    );
    expect(echo?.error).toMatchObject({ param: "echo", code: "unsupported_parameter" });
  });

  it("/metrics is Prometheus text", async () => {
    await using server = await serve({ target: new MockChatTarget({ modelId: "mock" }), port: 0 });
    await server.ready;
    await client(server.url).chat.completions.create({
      model: "mock",
      messages: [{ role: "user", content: "hi" }],
    });
    const text = await (await fetch(server.url.replace("/v1", "/metrics"))).text();
    const samples = text.split("\n").filter((line) => line && !line.startsWith("#"));
    for (const line of samples) expect(line).toMatch(/^[a-z_]+(\{[a-z]+="[^"]*"\})? -?[\d.e+-]+$/);
    expect(text).toContain('tunekit_requests_total{status="200"} 1');
    expect(text).toMatch(/tunekit_completion_tokens_total [1-9]/);
  });
});

/** Two adapters on a tiny model, each changed by one training step on its own fixed batch. */
async function tinyWithAdapters(dir: string): Promise<{ model: string; adapters: Record<string, string> }> {
  const model = await writeTinyModel(join(dir, "tiny"), TINY_LLAMA);
  const adapters: Record<string, string> = {};
  for (const [name, seed] of [
    ["support", 1],
    ["sales", 2],
  ] as const) {
    await using loaded = await LocalModel.load(model, { quantization: "none" });
    loaded.attachLora({ r: 2, seed });
    const ids = Array.from({ length: 12 }, (_, index) => 5 + ((index * (seed + 2)) % 20));
    await loaded.forwardBackward({ inputIds: ids, labels: ids });
    await loaded.optimizerStep({ learningRate: 0.5 });
    adapters[name] = join(dir, name);
    await loaded.saveAdapter(adapters[name] as string);
  }
  return { model, adapters };
}

describe("serve({ model, adapters })", () => {
  it("/health answers 503 while the model loads, and says so when loading failed", async () => {
    // A Hub on loopback that holds the first request until the test lets it go (then: no such repo).
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let asked!: () => void;
    const reached = new Promise<void>((resolve) => {
      asked = resolve;
    });
    const hub = createServer((_request, response) => {
      asked();
      void held.then(() => {
        response.writeHead(404, { "content-type": "application/json", "x-error-code": "RepoNotFound" });
        response.end(JSON.stringify({ error: "Repository not found" }));
      });
    });
    await new Promise<void>((listening) => hub.listen(0, "127.0.0.1", () => listening()));
    vi.stubEnv("HF_ENDPOINT", `http://127.0.0.1:${(hub.address() as AddressInfo).port}`);
    vi.stubEnv("HF_HOME", await tempDir());
    vi.stubEnv("HF_HUB_OFFLINE", "");
    try {
      await using server = await serve({ model: "org/slow-model", port: 0 });
      await reached;
      const loading = await fetch(server.url.replace("/v1", "/health"));
      expect(loading.status).toBe(503);
      expect(await loading.json()).toEqual({ status: "loading" });
      const early = await client(server.url)
        .chat.completions.create({ model: "org/slow-model", messages: [{ role: "user", content: "hi" }] })
        .catch((error) => error);
      expect(early.status).toBe(503);
      expect(early.headers?.get?.("retry-after")).toBe("1");
      release();
      await expect(server.ready).rejects.toThrow();
      const failed = await fetch(server.url.replace("/v1", "/health"));
      expect(failed.status).toBe(503);
      expect(await failed.json()).toMatchObject({
        status: "failed",
        error: expect.stringMatching(/org\/slow-model/),
      });
    } finally {
      release();
      vi.unstubAllEnvs();
      await new Promise((closed) => hub.close(closed));
    }
  });

  it("concurrent requests on the base and two adapters are decoded together, each as it is alone", {
    timeout: 60_000,
  }, async () => {
    const { model, adapters } = await tinyWithAdapters(await tempDir());
    await using server = await serve({ model, adapters, port: 0, quantization: "none" });
    await server.ready;
    const openai = client(server.url);
    const requests = ["tiny", "support", "sales", "support", "tiny", "sales"].map((name, index) => ({
      model: name,
      messages: [{ role: "user" as const, content: `request ${index}: hello there` }],
      max_tokens: 12 + index,
      temperature: index % 2 ? 0.9 : 0,
      seed: 100 + index,
    }));
    const alone = [];
    for (const request of requests)
      alone.push((await openai.chat.completions.create(request)).choices[0]?.message.content);
    expect(new Set(alone).size).toBeGreaterThan(3);
    // Together: streamed and whole, each started before the one before it has finished.
    const scrape = async () => {
      const text = await (await fetch(server.url.replace("/v1", "/metrics"))).text();
      const value = (name: string) => Number(new RegExp(`^${name} (\\d+)`, "m").exec(text)?.[1]);
      return { steps: value("tunekit_decode_steps_total"), rows: value("tunekit_decode_rows_total") };
    };
    const before = await scrape();
    const together = await Promise.all(
      requests.map(async (request, index) => {
        await new Promise((wait) => setTimeout(wait, index * 3));
        if (index % 2 === 0)
          return (await openai.chat.completions.create(request)).choices[0]?.message.content;
        const stream = await openai.chat.completions.create({ ...request, stream: true });
        let text = "";
        for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
        return text;
      }),
    );
    expect(together).toEqual(alone);
    const after = await scrape();
    expect((after.rows - before.rows) / (after.steps - before.steps)).toBeGreaterThan(1.5);
  });

  it("streams each token's log-probabilities with its content", { timeout: 60_000 }, async () => {
    const { model, adapters } = await tinyWithAdapters(await tempDir());
    await using server = await serve({ model, adapters, port: 0, quantization: "none" });
    await server.ready;
    const openai = client(server.url);
    const request = {
      model: "sales",
      messages: [{ role: "user" as const, content: "hello" }],
      max_tokens: 6,
      temperature: 0,
      logprobs: true,
      top_logprobs: 2,
    };
    const whole = await openai.chat.completions.create(request);
    const content = whole.choices[0]?.logprobs?.content ?? [];
    expect(content.length).toBeGreaterThan(0);
    const stream = await openai.chat.completions.create({ ...request, stream: true });
    const streamed = [];
    let carrying = 0;
    for await (const chunk of stream) {
      const entries = chunk.choices[0]?.logprobs?.content ?? [];
      if (entries.length > 0 && chunk.choices[0]?.finish_reason === null) carrying++;
      streamed.push(...entries);
    }
    expect(carrying).toBeGreaterThan(1);
    expect(streamed).toEqual(content);
    for (const entry of content) {
      expect(entry.top_logprobs).toHaveLength(2);
      expect(entry.logprob).toBeLessThanOrEqual(0);
      expect(entry.top_logprobs[0]?.logprob).toBeGreaterThanOrEqual(entry.top_logprobs[1]?.logprob as number);
    }
  });

  it("the base and two adapters, picked by model; an adapter of another base is refused", {
    timeout: 60_000,
  }, async () => {
    const dir = await tempDir();
    const { model, adapters } = await tinyWithAdapters(dir);
    await using server = await serve({ model, adapters, port: 0, quantization: "none" });
    await server.ready;
    expect((await fetch(server.url.replace("/v1", "/health"))).status).toBe(200);
    const openai = client(server.url);
    const listed = await openai.models.list();
    expect(listed.data.map((entry) => [entry.id, (entry as { parent?: string }).parent])).toEqual([
      ["tiny", undefined],
      ["support", "tiny"],
      ["sales", "tiny"],
    ]);
    const ask = async (name: string) =>
      (
        await openai.chat.completions.create({
          model: name,
          messages: [{ role: "user", content: "hello" }],
          max_tokens: 8,
          temperature: 0,
        })
      ).choices[0]?.message.content;
    const [base, support, sales] = await Promise.all([ask("tiny"), ask("support"), ask("sales")]);
    expect(await ask("tiny")).toBe(base);
    expect(new Set([base, support, sales]).size).toBeGreaterThan(1);

    // /v1/completions: the prompt as it is, whole and streamed agree; OpenAI's default of 16 tokens.
    const whole = await openai.completions.create({
      model: "support",
      prompt: "Once upon a time",
      max_tokens: 6,
      temperature: 0,
    });
    expect(whole.object).toBe("text_completion");
    expect(whole.usage?.completion_tokens).toBe(6);
    expect(whole.choices[0]?.finish_reason).toBe("length");
    const streamed = await openai.completions.create({
      model: "support",
      prompt: "Once upon a time",
      max_tokens: 6,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage: { completion_tokens: number } | undefined;
    for await (const chunk of streamed) {
      text += chunk.choices[0]?.text ?? "";
      usage = chunk.usage ?? usage;
    }
    expect(text).toBe(whole.choices[0]?.text);
    expect(usage?.completion_tokens).toBe(6);
    const defaulted = await openai.completions.create({ model: "tiny", prompt: "Once", temperature: 0 });
    expect(defaulted.usage?.completion_tokens).toBeLessThanOrEqual(16);

    // Adapter updates are off unless asked for.
    const off = await fetch(`${server.url}/load_lora_adapter`, {
      method: "POST",
      body: JSON.stringify({ lora_name: "x", lora_path: dir }),
    });
    expect(off.status).toBe(404);

    const other = await writeTinyModel(join(dir, "other"), TINY_LLAMA);
    const foreign = join(dir, "foreign");
    {
      await using loaded = await LocalModel.load(other, { quantization: "none" });
      loaded.attachLora({ r: 2 });
      await loaded.saveAdapter(foreign);
    }
    const refused = await serve({ model, adapters: { foreign }, port: 0, quantization: "none" });
    await expect(refused.ready).rejects.toThrow(/adapter foreign was trained on .*other, not on .*tiny/);
    await refused.close();
  });

  it("loads and unloads an adapter at run time with vLLM's routes, when allowed", {
    timeout: 60_000,
  }, async () => {
    const dir = await tempDir();
    const model = await writeTinyModel(join(dir, "tiny"), TINY_LLAMA);
    const adapter = join(dir, "late");
    {
      await using loaded = await LocalModel.load(model, { quantization: "none" });
      loaded.attachLora({ r: 2 });
      await loaded.saveAdapter(adapter);
    }
    await using server = await serve({ model, port: 0, quantization: "none", allowAdapterUpdates: true });
    await server.ready;
    const post = (route: string, body: unknown) =>
      fetch(`${server.url}/${route}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    const added = await post("load_lora_adapter", { lora_name: "late", lora_path: adapter });
    expect(added.status).toBe(200);
    expect(await added.text()).toBe("Success: LoRA adapter 'late' added successfully.");
    expect(server.models).toEqual(["tiny", "late"]);
    const openai = client(server.url);
    const reply = await openai.chat.completions.create({
      model: "late",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 3,
    });
    expect(reply.model).toBe("late");
    expect((await post("load_lora_adapter", { lora_name: "late", lora_path: adapter })).status).toBe(400);
    expect((await post("load_lora_adapter", { lora_name: "bad", lora_path: join(dir, "nope") })).status).toBe(
      400,
    );
    const removed = await post("unload_lora_adapter", { lora_name: "late" });
    expect(removed.status).toBe(200);
    expect(server.models).toEqual(["tiny"]);
    expect((await post("unload_lora_adapter", { lora_name: "late" })).status).toBe(404);
    const gone = await openai.chat.completions
      .create({ model: "late", messages: [{ role: "user", content: "hi" }] })
      .catch((error) => error);
    expect(gone.status).toBe(404);
  });
});
