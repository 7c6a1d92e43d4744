import { z } from "zod";
import { cannotWrite, defineFormat, has } from "./format.js";

/** Plain text: `{"text": "..."}`. Every token is trained on. */
export const textFormat = defineFormat({
  name: "text",
  detect: (record) => has(record, "text"),
  schema: z.object({ text: z.string() }),
  toExample: (record) => ({ kind: "text", text: record.text }),
  fromExample(example) {
    if (example.kind !== "text") throw cannotWrite(example, "text");
    return { text: example.text };
  },
});
