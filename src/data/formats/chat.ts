import { z } from "zod";
import type { ChatExample } from "../example.js";
import { cannotWrite, defineFormat, has } from "./format.js";
import {
  asChat,
  functionsSchema,
  messageSchema,
  toCanonicalMessages,
  toCanonicalTools,
  toolsSchema,
  toWireMessage,
} from "./messages.js";

/** OpenAI's chat fine-tuning format: `{"messages": [...], "tools"?: [...], "parallel_tool_calls"?: bool}`. */
export const chatFormat = defineFormat({
  name: "chat",
  detect: (record) => has(record, "messages"),
  schema: z.object({
    messages: z.array(messageSchema).min(1),
    tools: toolsSchema.optional(),
    functions: functionsSchema.optional(),
    parallel_tool_calls: z.boolean().optional(),
  }),
  toExample(record) {
    const example: ChatExample = { kind: "chat", messages: toCanonicalMessages(record.messages) };
    const tools = toCanonicalTools(record.tools, record.functions);
    if (tools) example.tools = tools;
    if (record.parallel_tool_calls !== undefined) example.parallel_tool_calls = record.parallel_tool_calls;
    return example;
  },
  fromExample(example) {
    const messages = asChat(example);
    if (!messages) throw cannotWrite(example, "chat");
    const record: Record<string, unknown> = { messages: messages.map(toWireMessage) };
    if (example.kind === "chat") {
      if (example.tools) record.tools = example.tools;
      if (example.parallel_tool_calls !== undefined) record.parallel_tool_calls = example.parallel_tool_calls;
    }
    return record;
  },
});
