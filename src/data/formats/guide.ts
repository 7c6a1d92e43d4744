import { z } from "zod";
import { defineFormat, has } from "./format.js";
import { exampleToTurns, turnsToMessages } from "./turns.js";

/** The fine-tuning guide's raw form: `{"system"?: "...", "turns": [{"user": "...", "assistant": "..."}]}`. */
export const guideFormat = defineFormat({
  name: "guide",
  detect: (record) => has(record, "turns"),
  schema: z.object({
    system: z.string().optional(),
    turns: z.array(z.object({ user: z.string(), assistant: z.string() })),
  }),
  toExample: (record) => ({
    kind: "chat",
    messages: turnsToMessages(
      record.system === undefined ? { pairs: record.turns } : { system: record.system, pairs: record.turns },
    ),
  }),
  fromExample(example) {
    const turns = exampleToTurns(example, "guide");
    return turns.system === undefined ? { turns: turns.pairs } : { system: turns.system, turns: turns.pairs };
  },
});
