import { describe, expect, it } from "vitest";
import { DataFormatError } from "../../src/core/errors.js";
import type { Example } from "../../src/data/example.js";
import { detectFormat, type FormatName, formatExample, parseRecord } from "../../src/data/formats/index.js";

function parse(record: unknown, format?: FormatName): Example {
  const name = format ?? detectFormat(record);
  if (!name) throw new Error("not detected");
  const result = parseRecord(record, name);
  if (!result.ok) throw new Error(JSON.stringify(result.problems));
  return result.example;
}

const chat: Example = {
  kind: "chat",
  messages: [
    { role: "system", content: "You are TechCorp support." },
    { role: "user", content: "Reset my password" },
    { role: "assistant", content: "Go to techcorp.com/login." },
    { role: "user", content: "Thanks" },
    { role: "assistant", content: "You're welcome!" },
  ],
};

describe("formats: each one read into canonical form and written back", () => {
  const cases: Array<[FormatName, Record<string, unknown>, Example]> = [
    [
      "chat",
      {
        messages: [
          { role: "user", content: "hi" },
          { role: "assistant", content: "hello", weight: 1 },
        ],
      },
      {
        kind: "chat",
        messages: [
          { role: "user", content: "hi" },
          { role: "assistant", content: "hello", weight: 1 },
        ],
      },
    ],
    [
      "preference",
      {
        input: { messages: [{ role: "user", content: "Hi" }] },
        preferred_output: [{ role: "assistant", content: "Hello! How can I help?" }],
        non_preferred_output: [{ role: "assistant", content: "What." }],
      },
      {
        kind: "preference",
        input: [{ role: "user", content: "Hi" }],
        preferred: [{ role: "assistant", content: "Hello! How can I help?" }],
        rejected: [{ role: "assistant", content: "What." }],
      },
    ],
    [
      "completion",
      { prompt: "2+2=", completion: "4" },
      { kind: "completion", prompt: "2+2=", completion: "4" },
    ],
    ["text", { text: "Once upon a time" }, { kind: "text", text: "Once upon a time" }],
    [
      "alpaca",
      {
        instruction: "Reset my password",
        input: "",
        output: "Go to techcorp.com/login.",
        system: "You are TechCorp support.",
      },
      {
        kind: "chat",
        messages: [
          { role: "system", content: "You are TechCorp support." },
          { role: "user", content: "Reset my password" },
          { role: "assistant", content: "Go to techcorp.com/login." },
        ],
      },
    ],
    [
      "sharegpt",
      {
        conversations: [
          { from: "system", value: "You are TechCorp support." },
          { from: "human", value: "Reset my password" },
          { from: "gpt", value: "Go to techcorp.com/login." },
        ],
      },
      {
        kind: "chat",
        messages: [
          { role: "system", content: "You are TechCorp support." },
          { role: "user", content: "Reset my password" },
          { role: "assistant", content: "Go to techcorp.com/login." },
        ],
      },
    ],
    [
      "guide",
      {
        system: "You are TechCorp support.",
        turns: [{ user: "Reset my password", assistant: "Go to techcorp.com/login." }],
      },
      {
        kind: "chat",
        messages: [
          { role: "system", content: "You are TechCorp support." },
          { role: "user", content: "Reset my password" },
          { role: "assistant", content: "Go to techcorp.com/login." },
        ],
      },
    ],
  ];

  for (const [format, record, example] of cases) {
    it(`${format}: detected, read, and written back unchanged`, () => {
      expect(detectFormat(record)).toBe(format);
      expect(parse(record)).toEqual(example);
      expect(formatExample(example, format)).toEqual(record);
    });
  }

  it("alpaca: input follows the instruction after a blank line; history becomes earlier turns", () => {
    const example = parse({
      instruction: "Summarize",
      input: "Long text",
      output: "Short",
      history: [["hi", "hello"]],
    });
    expect(example).toEqual({
      kind: "chat",
      messages: [
        { role: "user", content: "hi" },
        { role: "assistant", content: "hello" },
        { role: "user", content: "Summarize\n\nLong text" },
        { role: "assistant", content: "Short" },
      ],
    });
    expect(formatExample(chat, "alpaca")).toEqual({
      instruction: "Thanks",
      input: "",
      output: "You're welcome!",
      system: "You are TechCorp support.",
      history: [["Reset my password", "Go to techcorp.com/login."]],
    });
  });

  it("multi-turn chat converts to guide and sharegpt and back without loss", () => {
    for (const format of ["guide", "sharegpt", "alpaca", "chat"] as const) {
      expect(parse(formatExample(chat, format), format)).toEqual(chat);
    }
  });

  it("chat keeps tool calls, tool results, tools and parallel_tool_calls", () => {
    const record = {
      messages: [
        { role: "user", content: "Weather in Paris?" },
        {
          role: "assistant",
          content: null,
          tool_calls: [
            { id: "call_1", type: "function", function: { name: "weather", arguments: '{"city":"Paris"}' } },
          ],
        },
        { role: "tool", tool_call_id: "call_1", content: "18C" },
        { role: "assistant", content: "18C in Paris." },
      ],
      tools: [{ type: "function", function: { name: "weather", parameters: { type: "object" } } }],
      parallel_tool_calls: false,
    };
    const example = parse(record);
    expect(example).toMatchObject({ kind: "chat", parallel_tool_calls: false, tools: record.tools });
    expect(formatExample(example, "chat")).toEqual(record);
  });

  it("legacy function_call and functions become tool calls and tools", () => {
    const example = parse({
      messages: [
        { role: "user", content: "Weather?" },
        { role: "assistant", function_call: { name: "weather", arguments: "{}" } },
        { role: "function", name: "weather", content: "sunny" },
        { role: "assistant", content: "Sunny." },
      ],
      functions: [{ name: "weather", parameters: { type: "object" } }],
    });
    expect(example).toEqual({
      kind: "chat",
      messages: [
        { role: "user", content: "Weather?" },
        {
          role: "assistant",
          content: null,
          tool_calls: [{ id: "call_1", type: "function", function: { name: "weather", arguments: "{}" } }],
        },
        { role: "tool", name: "weather", tool_call_id: "call_1", content: "sunny" },
        { role: "assistant", content: "Sunny." },
      ],
      tools: [{ type: "function", function: { name: "weather", parameters: { type: "object" } } }],
    });
  });

  it("sharegpt function_call and observation turns become tool calls and tool messages", () => {
    const example = parse({
      conversations: [
        { from: "human", value: "Weather?" },
        { from: "function_call", value: '{"name":"weather","arguments":{"city":"Paris"}}' },
        { from: "observation", value: "18C" },
        { from: "gpt", value: "18C." },
      ],
    });
    expect(example.kind === "chat" && example.messages[1]).toEqual({
      role: "assistant",
      content: null,
      tool_calls: [
        { id: "call_1", type: "function", function: { name: "weather", arguments: '{"city":"Paris"}' } },
      ],
    });
    expect(example.kind === "chat" && example.messages[2]).toEqual({
      role: "tool",
      content: "18C",
      tool_call_id: "call_1",
    });
    expect(formatExample(example, "sharegpt")).toEqual({
      conversations: [
        { from: "human", value: "Weather?" },
        { from: "function_call", value: '{"name":"weather","arguments":{"city":"Paris"}}' },
        { from: "observation", value: "18C" },
        { from: "gpt", value: "18C." },
      ],
    });
  });

  it("completion ↔ chat for a single turn; other shapes are refused with a named error", () => {
    expect(formatExample({ kind: "completion", prompt: "p", completion: "c" }, "chat")).toEqual({
      messages: [
        { role: "user", content: "p" },
        { role: "assistant", content: "c" },
      ],
    });
    expect(
      formatExample(
        parse({
          messages: [
            { role: "user", content: "p" },
            { role: "assistant", content: "c" },
          ],
        }),
        "completion",
      ),
    ).toEqual({ prompt: "p", completion: "c" });
    expect(() => formatExample(chat, "completion")).toThrow(DataFormatError);
    expect(() => formatExample({ kind: "text", text: "t" }, "chat")).toThrow(
      /a text example cannot be written as chat/,
    );
    expect(() => formatExample(chat, "text")).toThrow(DataFormatError);
    expect(() => formatExample(chat, "preference")).toThrow(DataFormatError);
  });

  it("a bad record names the JSON path of the fault", () => {
    const result = parseRecord({ messages: [{ role: "user", content: 42 }] }, "chat");
    expect(result.ok).toBe(false);
    expect(!result.ok && result.problems[0]).toMatchObject({
      code: "invalid_record",
      path: "messages[0].content",
    });
    const sharegpt = parseRecord({ conversations: [{ from: "robot", value: "x" }] }, "sharegpt");
    expect(!sharegpt.ok && sharegpt.problems[0]?.path).toBe("conversations[0].from");
  });

  it("detects nothing for unknown keys", () => {
    expect(detectFormat({ question: "q", answer: "a" })).toBeUndefined();
    expect(detectFormat([1, 2])).toBeUndefined();
  });
});
