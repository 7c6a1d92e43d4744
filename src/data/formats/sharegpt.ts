import { z } from "zod";
import type { ChatExample, ChatMessage, Role, ToolCall, ToolDefinition } from "../example.js";
import { contentText } from "../example.js";
import { cannotWrite, defineFormat, has } from "./format.js";
import { asChat, toolsSchema } from "./messages.js";

const ROLE_OF: Record<string, Role | "function_call"> = {
  system: "system",
  human: "user",
  user: "user",
  gpt: "assistant",
  assistant: "assistant",
  chatgpt: "assistant",
  model: "assistant",
  bard: "assistant",
  function_call: "function_call",
  observation: "tool",
  tool: "tool",
  function_response: "tool",
};

const callSchema = z.object({ name: z.string(), arguments: z.unknown() });

/**
 * ShareGPT: `{"conversations": [{"from": "human"|"gpt"|"system", "value": "..."}], "system"?, "tools"?}`.
 * LLaMA-Factory's `function_call` turns (a JSON `{name, arguments}` or a list of them) become an
 * assistant message with tool calls, and `observation` turns become tool messages.
 */
export const sharegptFormat = defineFormat({
  name: "sharegpt",
  detect: (record) => has(record, "conversations"),
  schema: z.object({
    conversations: z.array(
      z.object({
        from: z.string().refine((from) => from in ROLE_OF, {
          message: `from must be one of ${Object.keys(ROLE_OF).join(", ")}`,
        }),
        value: z.string(),
      }),
    ),
    system: z.string().optional(),
    tools: z.union([z.string(), toolsSchema]).optional(),
  }),
  toExample(record) {
    const messages: ChatMessage[] =
      record.system !== undefined ? [{ role: "system", content: record.system }] : [];
    let calls = 0;
    const pending: string[] = [];
    for (const turn of record.conversations) {
      const role = ROLE_OF[turn.from] as Role | "function_call";
      if (role === "function_call") {
        const parsed = JSON.parse(turn.value) as unknown;
        const list = z.array(callSchema).parse(Array.isArray(parsed) ? parsed : [parsed]);
        const toolCalls: ToolCall[] = list.map((call) => {
          const id = `call_${++calls}`;
          pending.push(id);
          const args =
            typeof call.arguments === "string" ? call.arguments : JSON.stringify(call.arguments ?? {});
          return { id, type: "function", function: { name: call.name, arguments: args } };
        });
        messages.push({ role: "assistant", content: null, tool_calls: toolCalls });
      } else if (role === "tool") {
        const id = pending.shift();
        messages.push(
          id === undefined ? { role, content: turn.value } : { role, content: turn.value, tool_call_id: id },
        );
      } else {
        messages.push({ role, content: turn.value });
      }
    }
    const example: ChatExample = { kind: "chat", messages };
    if (record.tools !== undefined) {
      const tools = typeof record.tools === "string" ? (JSON.parse(record.tools) as unknown) : record.tools;
      example.tools = toolsSchema.parse(
        (tools as Array<Record<string, unknown>>).map((tool) =>
          "function" in tool ? tool : { type: "function", function: tool },
        ),
      ) as ToolDefinition[];
    }
    return example;
  },
  fromExample(example) {
    const messages = asChat(example);
    if (!messages) throw cannotWrite(example, "sharegpt");
    const conversations = messages.map((message) => {
      if (message.tool_calls) {
        const calls = message.tool_calls.map((call) => ({
          name: call.function.name,
          arguments: parseArguments(call.function.arguments),
        }));
        return { from: "function_call", value: JSON.stringify(calls.length === 1 ? calls[0] : calls) };
      }
      const from = { system: "system", user: "human", assistant: "gpt", tool: "observation" }[message.role];
      return { from, value: contentText(message.content) };
    });
    const record: Record<string, unknown> = { conversations };
    if (example.kind === "chat" && example.tools) record.tools = JSON.stringify(example.tools);
    return record;
  },
});

function parseArguments(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
