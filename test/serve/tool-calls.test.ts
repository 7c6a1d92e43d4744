/**
 * Tool calls as real models write them, parsed back, and end to end through `serve({ target })` and
 * the openai client, whole and streamed.
 */
import OpenAI from "openai";
import { describe, expect, it } from "vitest";
import type { ToolDefinition } from "../../src/data/example.js";
import { parseToolCalls } from "../../src/engine/tool-calls.js";
import { serve } from "../../src/serve/index.js";
import { MockChatTarget } from "../../src/testing/mock-chat-target.js";

const tools: ToolDefinition[] = [
  {
    type: "function",
    function: { name: "get_current_temperature", parameters: { type: "object", properties: {} } },
  },
  {
    type: "function",
    function: { name: "get_temperature_date", parameters: { type: "object", properties: {} } },
  },
];

describe("tool calls as Qwen 2.5 and Llama 3.x write them", () => {
  it("Qwen 2.5: <tool_call> JSON blocks, two in one reply (Qwen's function-calling guide)", () => {
    const reply =
      '<tool_call>\n{"name": "get_current_temperature", "arguments": {"location": "San Francisco, CA, USA"}}\n</tool_call>\n' +
      '<tool_call>\n{"name": "get_temperature_date", "arguments": {"location": "San Francisco, CA, USA", "date": "2024-10-01"}}\n</tool_call>';
    const { content, toolCalls } = parseToolCalls(reply, tools);
    expect(content).toBe("");
    expect(toolCalls.map((call) => [call.function.name, JSON.parse(call.function.arguments)])).toEqual([
      ["get_current_temperature", { location: "San Francisco, CA, USA" }],
      ["get_temperature_date", { location: "San Francisco, CA, USA", date: "2024-10-01" }],
    ]);
  });

  it("Llama 3.1 / 3.2: a JSON object with parameters, with or without <|python_tag|>", () => {
    for (const reply of [
      '{"name": "get_current_temperature", "parameters": {"location": "Paris"}}',
      '<|python_tag|>{"name": "get_current_temperature", "parameters": {"location": "Paris"}}',
    ]) {
      const { content, toolCalls } = parseToolCalls(reply, tools);
      expect(content).toBe("");
      expect(toolCalls[0]?.function).toEqual({
        name: "get_current_temperature",
        arguments: '{"location":"Paris"}',
      });
    }
    // A tool that was not offered is text, not a call.
    expect(parseToolCalls('{"name": "rm_rf", "parameters": {}}', tools).toolCalls).toEqual([]);
  });
});

describe("tool calls through serve and the openai client", () => {
  it("whole and streamed, read back as tool_calls with finish_reason tool_calls", async () => {
    const target = new MockChatTarget({
      modelId: "mock",
      reply: {
        text: "Let me check.",
        finishReason: "tool_calls",
        toolCalls: [
          {
            id: "call_a",
            type: "function",
            function: { name: "get_current_temperature", arguments: '{"location":"Paris"}' },
          },
        ],
      },
    });
    await using server = await serve({ target, port: 0 });
    await server.ready;
    const openai = new OpenAI({ baseURL: server.url, apiKey: "none", maxRetries: 0 });
    const request = { model: "mock", messages: [{ role: "user" as const, content: "Paris?" }], tools };
    const whole = await openai.chat.completions.create(request);
    expect(whole.choices[0]?.finish_reason).toBe("tool_calls");
    expect(whole.choices[0]?.message).toMatchObject({
      content: "Let me check.",
      tool_calls: [
        {
          id: "call_a",
          type: "function",
          function: { name: "get_current_temperature", arguments: '{"location":"Paris"}' },
        },
      ],
    });
    // The openai client's stream helper assembles the deltas into the same message.
    const runner = openai.chat.completions.stream(request);
    const final = await runner.finalChatCompletion();
    expect(final.choices[0]?.finish_reason).toBe("tool_calls");
    expect(final.choices[0]?.message.content).toBe("Let me check.");
    expect(final.choices[0]?.message.tool_calls?.[0]).toMatchObject({
      id: "call_a",
      function: { name: "get_current_temperature", arguments: '{"location":"Paris"}' },
    });
  });
});
