import { problem } from "../../data/problem.js";
import { checkStrings, isObject } from "./messages.js";
import { openaiRules } from "./openai.js";
import type { RuleSet } from "./rule-set.js";

/**
 * Nebius Token Factory's rules (docs.tokenfactory.nebius.com/post-training/datasets): JSONL in the
 * conversational (OpenAI chat) or instruction (`prompt` / `completion`) format, files up to 5 GB, and
 * a conversation's last message must be the assistant's (it is what the job learns).
 */
export const nebiusRules: RuleSet = {
  target: "nebius",
  nativeFormats: ["chat", "completion"],
  uploadFormat(example) {
    if (example.kind === "chat" || example.kind === "completion") return example.kind;
    return {
      unsupported: `Nebius fine-tunes on conversations or prompt/completion pairs, not ${example.kind} examples`,
    };
  },
  check(record, format, location) {
    if (format === "completion") return checkStrings(record, ["prompt", "completion"], location);
    const problems = openaiRules.check(record, "chat", location);
    const messages = Array.isArray(record.messages) ? record.messages.filter(isObject) : [];
    const last = messages.at(-1);
    if (last && last.role !== "assistant" && !problems.some((entry) => entry.severity === "error"))
      problems.push(
        problem(
          "error",
          "example_missing_assistant_message",
          "the last message must be the assistant's: Nebius learns the conversation's last turn",
          location,
          `messages[${messages.length - 1}].role`,
        ),
      );
    return problems;
  },
  minExamples: 1,
  maxFileBytes: 5 * 1024 ** 3,
};
