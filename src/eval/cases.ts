/**
 * Test cases from an array, a JSONL file or a `Dataset`: `{ id?, input, expected?, expectedTopics?,
 * references?, metadata? }`, or a chat example, whose input is every message before its last
 * assistant turn and whose `expected` is that turn. Every bad case is refused with its location.
 */
import { z } from "zod";
import { DataFormatError, ValidationError } from "../core/errors.js";
import { Dataset } from "../data/dataset.js";
import { type ChatMessage, contentText, type Example } from "../data/example.js";
import { readFile } from "../data/readers/index.js";
import type { CaseInput, EvalCase } from "./types.js";

const message = z
  .object({
    role: z.enum(["system", "user", "assistant", "tool"]),
    content: z.union([z.string(), z.null(), z.array(z.any())]),
  })
  .passthrough();

const caseSchema = z.strictObject({
  id: z.union([z.string().min(1), z.number()]).optional(),
  input: z.union([z.string(), z.array(message).min(1)]),
  expected: z.string().optional(),
  expectedTopics: z.array(z.string()).optional(),
  references: z.array(z.string()).optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
});

export type CaseSource =
  | Iterable<CaseInput | Example>
  | AsyncIterable<CaseInput | Example>
  | Dataset
  | string;

/** A chat example as a case: what comes before its last assistant turn, and that turn. */
function fromChat(messages: readonly ChatMessage[], id: string): EvalCase {
  const last = messages.findLastIndex((entry) => entry.role === "assistant");
  if (last <= 0)
    throw new ValidationError(
      "invalid_argument",
      `case ${id}: a chat example needs a message before an assistant turn`,
    );
  return {
    id,
    input: messages.slice(0, last),
    expected: contentText((messages[last] as ChatMessage).content),
  };
}

function toCase(value: unknown, index: number, where: string): EvalCase {
  const fallback = `case-${index + 1}`;
  if (typeof value === "object" && value !== null && "kind" in value) {
    const example = value as Example;
    if (example.kind === "chat") return fromChat(example.messages, fallback);
    if (example.kind === "completion")
      return {
        id: fallback,
        input: [{ role: "user", content: example.prompt }],
        expected: example.completion,
      };
    throw new ValidationError("invalid_argument", `${where}: a ${example.kind} example is not a test case`);
  }
  if (typeof value === "object" && value !== null && "messages" in value && !("input" in value)) {
    // A recording's line (`record`) keeps its case's id and metadata.
    const { messages, metadata } = value as { messages: ChatMessage[]; metadata?: Record<string, unknown> };
    const recorded = (metadata?.tunekit_record as { case_id?: unknown } | undefined)?.case_id;
    const chat = fromChat(messages, typeof recorded === "string" ? recorded : fallback);
    return metadata && typeof metadata === "object" ? { ...chat, metadata } : chat;
  }
  const parsed = caseSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue?.path.join(".");
    throw new ValidationError(
      "invalid_argument",
      `${where}: not a test case${path ? ` (${path}: ${issue?.message})` : ` (${issue?.message})`}; a case is { id?, input, expected?, expectedTopics?, references?, metadata? }`,
    );
  }
  const { id, input, ...rest } = parsed.data;
  return {
    ...rest,
    id: id === undefined ? fallback : String(id),
    input: typeof input === "string" ? [{ role: "user", content: input }] : (input as ChatMessage[]),
  } as EvalCase;
}

/** Reads the cases of `source`, checked; ids must be unique. */
export async function loadCases(source: CaseSource): Promise<EvalCase[]> {
  const cases: EvalCase[] = [];
  if (typeof source === "string") {
    let index = 0;
    for await (const record of readFile(source)) {
      if (record.problem) {
        if (record.problem.severity === "warning") continue;
        throw new DataFormatError(record.problem.code, record.problem.message, { location: record.location });
      }
      cases.push(toCase(record.value, index++, `${source}:${record.location.line}`));
    }
  } else if (source instanceof Dataset) {
    let index = 0;
    for await (const example of source)
      cases.push(toCase(example, index, `${source.source} case ${++index}`));
  } else {
    let index = 0;
    for await (const value of source as AsyncIterable<unknown>) {
      cases.push(toCase(value, index, `case ${index + 1}`));
      index++;
    }
  }
  const seen = new Set<string>();
  for (const entry of cases) {
    if (seen.has(entry.id))
      throw new ValidationError("invalid_argument", `two cases have the id "${entry.id}"`);
    seen.add(entry.id);
  }
  if (cases.length === 0) throw new ValidationError("no_examples", "there are no test cases");
  return cases;
}
