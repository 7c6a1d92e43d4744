import { z } from "zod";
import type { PreferenceExample } from "../example.js";
import { cannotWrite, defineFormat, has } from "./format.js";
import {
  messageSchema,
  toCanonicalMessages,
  toCanonicalTools,
  toolsSchema,
  toWireMessage,
} from "./messages.js";

/**
 * OpenAI's preference (DPO) format, which Together reads too:
 * `{"input": {"messages": [...]}, "preferred_output": [...], "non_preferred_output": [...]}`.
 */
export const preferenceFormat = defineFormat({
  name: "preference",
  detect: (record) => has(record, "input", "preferred_output", "non_preferred_output"),
  schema: z.object({
    input: z.object({
      messages: z.array(messageSchema),
      tools: toolsSchema.optional(),
      parallel_tool_calls: z.boolean().optional(),
    }),
    preferred_output: z.array(messageSchema),
    non_preferred_output: z.array(messageSchema),
  }),
  toExample(record) {
    const example: PreferenceExample = {
      kind: "preference",
      input: toCanonicalMessages(record.input.messages),
      preferred: toCanonicalMessages(record.preferred_output),
      rejected: toCanonicalMessages(record.non_preferred_output),
    };
    const tools = toCanonicalTools(record.input.tools, undefined);
    if (tools) example.tools = tools;
    if (record.input.parallel_tool_calls !== undefined) {
      example.parallel_tool_calls = record.input.parallel_tool_calls;
    }
    return example;
  },
  fromExample(example) {
    if (example.kind !== "preference") throw cannotWrite(example, "preference");
    const input: Record<string, unknown> = { messages: example.input.map(toWireMessage) };
    if (example.tools) input.tools = example.tools;
    if (example.parallel_tool_calls !== undefined) input.parallel_tool_calls = example.parallel_tool_calls;
    return {
      input,
      preferred_output: example.preferred.map(toWireMessage),
      non_preferred_output: example.rejected.map(toWireMessage),
    };
  },
});
