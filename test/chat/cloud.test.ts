/**
 * The `ChatTarget` contract (./contract.ts) for the cloud targets against their msw fakes (the real
 * APIs' shapes, streamed as server-sent events) and for the test doubles; test/chat/local.test.ts
 * runs it on the local targets.
 */
import { setupServer } from "msw/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthenticationError, RateLimitError } from "../../src/core/errors.js";
import { fireworks } from "../../src/providers/fireworks/index.js";
import { nebius } from "../../src/providers/nebius/index.js";
import { openai } from "../../src/providers/openai/index.js";
import { together } from "../../src/providers/together/index.js";
import { chatCompletionsHandlers } from "../../src/testing/chat-completions.js";
import { fireworksFineTuningHandlers } from "../../src/testing/fireworks.js";
import { MockChatTarget } from "../../src/testing/mock-chat-target.js";
import { MockProvider } from "../../src/testing/mock-provider.js";
import {
  nebiusFineTuningHandlers,
  OPENAI_TEST_API_KEY,
  openaiFineTuningHandlers,
  releaseResponseCopies,
} from "../../src/testing/openai.js";
import { togetherFineTuningHandlers } from "../../src/testing/together.js";
import { chatTargetContract } from "./contract.js";

const server = setupServer();
releaseResponseCopies(server);
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterAll(() => server.close());

const messages = [
  { role: "system" as const, content: "Answer briefly." },
  { role: "user" as const, content: "Tell me about the weather on the coast today, please" },
];
let fakes = 0;
/** Streamed chunks take a little time, as a model's do, so a stream can be aborted under way. */
const STREAM_DELAY_MS = 4;

function openaiFake(failures: { status: number }[] = []) {
  const baseURL = `https://openai-chat-${++fakes}.test/v1`;
  server.use(
    ...openaiFineTuningHandlers({ baseURL, chatStreamDelayMs: STREAM_DELAY_MS, failures: failures as never })
      .handlers,
  );
  return openai({ apiKey: OPENAI_TEST_API_KEY, baseURL, maxRetries: 0 });
}

chatTargetContract("openai().chat() against the OpenAI fake", {
  subject: async () => ({ target: openaiFake().chat("gpt-4o-mini-2024-07-18"), messages }),
  failing: async () => ({
    target: openaiFake([{ status: 429 }, { status: 429 }, { status: 429 }]).chat("gpt-4o-mini-2024-07-18"),
    error: RateLimitError,
    code: "rate_limited",
  }),
});

function togetherFake(failures: { status: number; times?: number }[] = []) {
  const id = ++fakes;
  const baseURL = `https://together-chat-${id}.test/v1`;
  const apiKey = "together-chat-key";
  server.use(
    ...togetherFineTuningHandlers({ apiKey, baseURL, chatStreamDelayMs: STREAM_DELAY_MS, failures }).handlers,
  );
  return together({ apiKey, baseURL, maxRetries: 0 });
}

chatTargetContract("together().chat() against the Together fake", {
  subject: async () => ({ target: togetherFake().chat("meta-llama/Llama-3.3-70B-Instruct-Turbo"), messages }),
  failing: async () => ({
    target: togetherFake([{ status: 429, times: 3 }]).chat("meta-llama/Llama-3.3-70B-Instruct-Turbo"),
    error: RateLimitError,
    code: "rate_limited",
  }),
});

function fireworksFake(failures: { status: number; times?: number }[] = []) {
  const id = ++fakes;
  const inferenceURL = `https://fireworks-chat-${id}.test/inference/v1`;
  const apiKey = "fireworks-chat-key";
  server.use(
    ...fireworksFineTuningHandlers({
      apiKey,
      baseURL: `https://fireworks-chat-${id}.test/v1`,
      inferenceURL,
      chatStreamDelayMs: STREAM_DELAY_MS,
      failures,
    }).handlers,
  );
  return fireworks({ apiKey, accountId: "tunekit-test", inferenceBaseURL: inferenceURL, maxRetries: 0 });
}

chatTargetContract("fireworks().chat() against the Fireworks fake", {
  subject: async () => ({
    target: fireworksFake().chat("accounts/fireworks/models/llama-v3p1-8b-instruct"),
    messages,
  }),
  failing: async () => ({
    target: fireworksFake([{ status: 429, times: 3 }]).chat(
      "accounts/fireworks/models/llama-v3p1-8b-instruct",
    ),
    error: RateLimitError,
    code: "rate_limited",
  }),
});

/** Each Nebius fake at an address of its own (its own address is tested in test/providers/nebius.test.ts). */
function nebiusFake(failures: { status: number }[] = []) {
  const baseURL = `https://nebius-chat-${++fakes}.test/v1`;
  server.use(
    ...nebiusFineTuningHandlers({ baseURL, chatStreamDelayMs: STREAM_DELAY_MS, failures: failures as never })
      .handlers,
  );
  return nebius({ apiKey: OPENAI_TEST_API_KEY, baseURL, maxRetries: 0 });
}

chatTargetContract("nebius().chat() against the Nebius fake", {
  subject: async () => ({ target: nebiusFake().chat("meta-llama/Llama-3.3-70B-Instruct"), messages }),
  failing: async () => ({
    target: nebiusFake([{ status: 429 }, { status: 429 }, { status: 429 }]).chat(
      "meta-llama/Llama-3.3-70B-Instruct",
    ),
    error: RateLimitError,
    code: "rate_limited",
  }),
});

function compatibleServer(apiKey?: string) {
  const baseURL = `http://127.0.0.${++fakes % 200}:8080/v1`;
  const fake = chatCompletionsHandlers({
    baseURL,
    streamDelayMs: STREAM_DELAY_MS,
    ...(apiKey ? { apiKey } : {}),
  });
  server.use(...fake.handlers);
  return { baseURL, fake };
}

chatTargetContract("openai({ baseURL }).chat() against an OpenAI-compatible server without keys", {
  subject: async () => ({
    target: openai({ baseURL: compatibleServer().baseURL }).chat("qwen2.5-0.5b"),
    messages,
  }),
  failing: async () => ({
    target: openai({ baseURL: compatibleServer("a-key-we-do-not-have").baseURL, maxRetries: 0 }).chat(
      "qwen2.5-0.5b",
    ),
    error: AuthenticationError,
    code: "authentication",
  }),
});

chatTargetContract("MockProvider.chat()", {
  subject: async () => ({
    target: new MockProvider({
      chat: "Sunny with a light breeze from the west.",
      chatStreamDelayMs: STREAM_DELAY_MS,
    }).chat("m"),
    messages,
  }),
  failing: async () => ({
    target: new MockProvider({
      chat: () => {
        throw new RateLimitError("rate_limited", "slow down", { provider: "mock", status: 429 });
      },
    }).chat("m"),
    error: RateLimitError,
    code: "rate_limited",
  }),
});

chatTargetContract("MockChatTarget", {
  subject: async () => ({
    target: new MockChatTarget({
      reply: "Sunny with a light breeze from the west.",
      delayMs: STREAM_DELAY_MS,
    }),
    messages,
  }),
  failing: async () => ({
    target: new MockChatTarget({
      reply: new RateLimitError("rate_limited", "slow down", { provider: "mock", status: 429 }),
    }),
    error: RateLimitError,
    code: "rate_limited",
  }),
});

describe("the cloud targets on the wire", () => {
  it("send the real APIs' fields: max_completion_tokens to OpenAI, max_tokens elsewhere, stop, seed, tools, logprobs", async () => {
    const { baseURL, fake } = compatibleServer();
    const tools = [
      { type: "function" as const, function: { name: "weather", parameters: { type: "object" } } },
    ];
    await openai({ baseURL })
      .chat("m")
      .complete(messages, {
        maxTokens: 5,
        temperature: 0.2,
        topP: 0.9,
        stop: ["."],
        seed: 3,
        tools,
        logprobs: true,
        topLogprobs: 2,
      });
    expect(fake.requests[0]?.body).toEqual({
      model: "m",
      messages,
      max_tokens: 5,
      temperature: 0.2,
      top_p: 0.9,
      stop: ["."],
      seed: 3,
      tools,
      logprobs: true,
      top_logprobs: 2,
    });
    // No key was given, so none is sent, even with OPENAI_API_KEY set: it is OpenAI's.
    expect(fake.requests[0]?.headers.authorization).toBeUndefined();
  });

  it("openai({ baseURL }) never sends OPENAI_API_KEY to another server", async () => {
    const { baseURL, fake } = compatibleServer();
    const saved = process.env.OPENAI_API_KEY;
    process.env.OPENAI_API_KEY = "sk-openai-secret-key-1234";
    try {
      await openai({ baseURL }).chat("m").complete(messages);
      await openai({ baseURL, apiKey: "server-key" }).chat("m").complete(messages);
    } finally {
      if (saved === undefined) delete process.env.OPENAI_API_KEY;
      else process.env.OPENAI_API_KEY = saved;
    }
    expect(fake.requests.map((request) => request.headers.authorization)).toEqual([
      undefined,
      "Bearer server-key",
    ]);
  });

  it("tool calls come back whole and streamed, in pieces joined by index", async () => {
    const baseURL = `https://openai-chat-${++fakes}.test/v1`;
    server.use(
      ...openaiFineTuningHandlers({
        baseURL,
        chatReply: () => ({ toolCalls: [{ name: "weather", arguments: { city: "Porto" } }] }),
      }).handlers,
    );
    const target = openai({ apiKey: OPENAI_TEST_API_KEY, baseURL }).chat("gpt-4o-mini-2024-07-18");
    const tools = [
      { type: "function" as const, function: { name: "weather", parameters: { type: "object" } } },
    ];
    const whole = await target.complete(messages, { tools });
    expect(whole.finishReason).toBe("tool_calls");
    expect(whole.toolCalls).toEqual([
      {
        id: expect.stringMatching(/^call_/),
        type: "function",
        function: { name: "weather", arguments: '{"city":"Porto"}' },
      },
    ]);
    const stream = target.completeStream(messages, { tools });
    const pieces: string[] = [];
    for await (const delta of stream)
      for (const call of delta.toolCalls ?? []) pieces.push(call.arguments ?? "");
    expect(pieces.join("")).toBe('{"city":"Porto"}');
    expect((await stream.result).toolCalls?.[0]?.function).toEqual({
      name: "weather",
      arguments: '{"city":"Porto"}',
    });
  });

  it("Together's logprobs and finish reasons read as OpenAI's", async () => {
    const target = togetherFake().chat("meta-llama/Llama-3.3-70B-Instruct-Turbo");
    const result = await target.complete(messages, { logprobs: true, topLogprobs: 2, maxTokens: 2 });
    expect(result.finishReason).toBe("length");
    expect(result.logprobs?.map((entry) => entry.token)).toEqual(["Hello", " from"]);
    expect(result.logprobs?.[0]?.topLogprobs?.map((entry) => entry.token)).toEqual(["Hello", "Hello1"]);
  });
});
