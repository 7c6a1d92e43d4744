import { problem } from "../../data/problem.js";
import { isObject } from "./messages.js";
import { openaiRules } from "./openai.js";
import type { RuleSet } from "./rule-set.js";

const ROLES = new Set(["system", "user", "assistant", "tool"]);

/**
 * Fireworks AI's rules for supervised fine-tuning (docs.fireworks.ai/fine-tuning/fine-tuning-models,
 * "Prepare a dataset"): JSON Lines in the OpenAI-compatible chat format, each line a `messages` list
 * with roles system, user and assistant (tool messages with tool calls too, OpenAI's way), at least 3
 * and at most 3 million examples. Prompt/completion examples go up as conversations; plain text and
 * preference pairs have no place in a supervised job (DPO is an API of its own there).
 */
export const fireworksRules: RuleSet = {
  target: "fireworks",
  nativeFormats: ["chat"],
  uploadFormat(example) {
    if (example.kind === "chat" || example.kind === "completion") return "chat";
    return {
      unsupported: `Fireworks' supervised fine-tuning reads conversations, not ${example.kind} examples`,
    };
  },
  check(record, _format, location) {
    const problems = openaiRules.check(record, "chat", location);
    const messages = Array.isArray(record.messages) ? record.messages : [];
    for (const [index, message] of messages.entries()) {
      if (!isObject(message) || typeof message.role !== "string" || ROLES.has(message.role)) continue;
      if (problems.some((entry) => entry.path === `messages[${index}].role`)) continue;
      problems.push(
        problem(
          "error",
          "unrecognized_role",
          `Fireworks takes the roles system, user, assistant and tool, not ${JSON.stringify(message.role)}`,
          location,
          `messages[${index}].role`,
        ),
      );
    }
    return problems;
  },
  minExamples: 3,
  maxExamples: 3_000_000,
  maxFileBytes: undefined,
};
