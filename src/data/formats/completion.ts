import { z } from "zod";
import { contentText } from "../example.js";
import { cannotWrite, defineFormat, has } from "./format.js";

/** Prompt and completion: `{"prompt": "...", "completion": "..."}` (Together's instruction format). */
export const completionFormat = defineFormat({
  name: "completion",
  detect: (record) => has(record, "prompt", "completion"),
  schema: z.object({ prompt: z.string(), completion: z.string() }),
  toExample: (record) => ({ kind: "completion", prompt: record.prompt, completion: record.completion }),
  fromExample(example) {
    if (example.kind === "completion") return { prompt: example.prompt, completion: example.completion };
    if (example.kind === "chat") {
      const [user, assistant, ...rest] = example.messages;
      if (user?.role === "user" && assistant?.role === "assistant" && rest.length === 0) {
        return { prompt: contentText(user.content), completion: contentText(assistant.content) };
      }
      throw cannotWrite(example, "completion", "only a single user turn followed by one assistant turn fits");
    }
    throw cannotWrite(example, "completion");
  },
});
