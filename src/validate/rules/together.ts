import type { SourceLocation } from "../../core/errors.js";
import { type Problem, problem } from "../../data/problem.js";
import { checkMessages, checkStrings, isObject, type MessageRules } from "./messages.js";
import type { RuleSet } from "./rule-set.js";

const MESSAGE_RULES: MessageRules = {
  roles: ["system", "user", "assistant"],
  keys: ["role", "content", "weight"],
  toolCalls: false,
};

/** A system message may open the conversation; then user and assistant alternate, starting with user. */
function checkTurnOrder(messages: Array<Record<string, unknown>>, location: SourceLocation): Problem[] {
  let expected = "user";
  for (const [index, message] of messages.entries()) {
    if (index === 0 && message.role === "system") continue;
    if (message.role !== expected) {
      const message_ = `expected a ${expected} message here: after an optional system message, user and assistant must alternate`;
      return [problem("error", "roles_not_alternating", message_, location, `messages[${index}].role`)];
    }
    expected = expected === "user" ? "assistant" : "user";
  }
  return [];
}

function checkChat(record: Record<string, unknown>, location: SourceLocation): Problem[] {
  const problems = checkMessages(record.messages, "messages", MESSAGE_RULES, location);
  if (!Array.isArray(record.messages)) return problems;
  const messages = record.messages.filter(isObject);
  if (!messages.some((message) => message.role === "assistant")) {
    problems.push(
      problem("error", "example_missing_assistant_message", "no assistant message to learn from", location),
    );
  }
  if (!problems.some((entry) => entry.code === "unrecognized_role"))
    problems.push(...checkTurnOrder(messages, location));
  return problems;
}

/**
 * Together AI's rules (docs: fine-tuning data preparation): conversational, instruction, generic text
 * and preference formats, one format per file, roles system/user/assistant alternating after an
 * optional system message, integer weights 0 or 1 on assistant messages, files up to 100 GB.
 */
export const togetherRules: RuleSet = {
  target: "together",
  nativeFormats: ["chat", "completion", "text", "preference"],
  uploadFormat: (example) => example.kind,
  check(record, format, location) {
    switch (format) {
      case "completion":
        return checkStrings(record, ["prompt", "completion"], location);
      case "text":
        return checkStrings(record, ["text"], location);
      case "preference": {
        const problems: Problem[] = [];
        const input = isObject(record.input) ? record.input : {};
        problems.push(...checkMessages(input.messages, "input.messages", MESSAGE_RULES, location));
        for (const key of ["preferred_output", "non_preferred_output"]) {
          problems.push(...checkMessages(record[key], key, MESSAGE_RULES, location));
        }
        return problems;
      }
      default:
        return checkChat(record, location);
    }
  },
  minExamples: 1,
  maxFileBytes: 100 * 1024 ** 3,
};
