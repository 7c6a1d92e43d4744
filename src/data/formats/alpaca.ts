import { z } from "zod";
import { defineFormat, has } from "./format.js";
import { exampleToTurns, turnsToMessages } from "./turns.js";

/**
 * Alpaca: `{"instruction", "input", "output"}`, with the optional `system` and `history`
 * (`[[user, assistant], …]` turns before this one) that LLaMA-Factory adds. The input, when present,
 * follows the instruction after a blank line in the user turn.
 */
export const alpacaFormat = defineFormat({
  name: "alpaca",
  detect: (record) => has(record, "instruction", "output"),
  schema: z.object({
    instruction: z.string(),
    input: z.string().optional(),
    output: z.string(),
    system: z.string().optional(),
    history: z.array(z.tuple([z.string(), z.string()])).optional(),
  }),
  toExample(record) {
    const pairs = (record.history ?? []).map(([user, assistant]) => ({ user, assistant }));
    const user = record.input ? `${record.instruction}\n\n${record.input}` : record.instruction;
    pairs.push({ user, assistant: record.output });
    return {
      kind: "chat",
      messages: turnsToMessages(record.system === undefined ? { pairs } : { system: record.system, pairs }),
    };
  },
  fromExample(example) {
    const turns = exampleToTurns(example, "alpaca");
    const last = turns.pairs.pop() as { user: string; assistant: string };
    const record: Record<string, unknown> = { instruction: last.user, input: "", output: last.assistant };
    if (turns.system !== undefined) record.system = turns.system;
    if (turns.pairs.length > 0) record.history = turns.pairs.map((pair) => [pair.user, pair.assistant]);
    return record;
  },
});
