/**
 * `judge`: an LLM grades each output against a rubric, through any ChatTarget. The judge answers in
 * JSON (`{"reasoning": "...", "score": 0-10}`); the score is parsed and validated (an answer that is
 * not such JSON is asked again, then recorded as the case's error), divided by 10, and `pass` is
 * tunekit's threshold on it: a pass flag the judge writes is not trusted. The reasoning is kept.
 * Threshold 0.7.
 */
import { z } from "zod";
import type { ChatTarget } from "../../core/chat.js";
import { contentText } from "../../data/example.js";
import type { EvalCase } from "../types.js";
import { defineMetric, type MetricOptions } from "./metric.js";

const VERDICT = z.object({ reasoning: z.string(), score: z.number().min(0).max(10) });

export interface JudgeOptions extends MetricOptions {
  /** The model that judges (temperature 0). */
  target: ChatTarget;
  /** What a good answer is, in words. */
  rubric: string;
  /** Attempts at a parseable verdict. Default 2. */
  attempts?: number;
}

/** The verdict in a judge's reply: the JSON object in it (fenced or not), checked. */
export function parseVerdict(reply: string): { reasoning: string; score: number } | undefined {
  return jsonIn(reply, VERDICT);
}

/** The JSON object in a reply (fenced or not, text around it), checked by `schema`. */
function jsonIn<T>(reply: string, schema: z.ZodType<T>): T | undefined {
  const start = reply.indexOf("{");
  const end = reply.lastIndexOf("}");
  if (start === -1 || end <= start) return undefined;
  try {
    const parsed = schema.safeParse(JSON.parse(reply.slice(start, end + 1)));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** The conversation a judge reads: one "role: text" line per message. */
function conversationText(testCase: EvalCase): string {
  return testCase.input.map((message) => `${message.role}: ${contentText(message.content)}`).join("\n");
}

/** Asks a judge (temperature 0) until `parse` finds a verdict in its reply, `attempts` times at most. */
async function askJudge<T>(
  target: ChatTarget,
  prompt: string,
  parse: (reply: string) => T | undefined,
  attempts: number,
  signal: AbortSignal,
): Promise<T> {
  let last = "";
  for (let attempt = 0; attempt < attempts; attempt++) {
    const reply = await target.complete([{ role: "user", content: prompt }], {
      temperature: 0,
      maxTokens: 400,
      signal,
    });
    last = reply.text;
    const verdict = parse(reply.text);
    if (verdict !== undefined) return verdict;
  }
  throw new Error(
    `the judge gave no verdict in ${attempts} attempts (last reply: ${JSON.stringify(last.slice(0, 200))})`,
  );
}

export function judgePrompt(rubric: string, question: string, answer: string, expected?: string): string {
  return [
    "You grade an assistant's answer against a rubric. Be strict and consistent.",
    "",
    `Rubric: ${rubric}`,
    "",
    `Conversation so far:\n${question}`,
    "",
    ...(expected !== undefined ? [`A reference answer: ${expected}`, ""] : []),
    `The answer to grade:\n${answer}`,
    "",
    'Reply with JSON only: {"reasoning": "<one or two sentences>", "score": <an integer from 0 (fails the rubric) to 10 (meets it fully)>}',
  ].join("\n");
}

export function judge(options: JudgeOptions) {
  const attempts = options.attempts ?? 2;
  return defineMetric({
    name: "judge",
    threshold: 0.7,
    kind: "score",
    options,
    score: async ({ output, testCase, signal }) => {
      const question = conversationText(testCase);
      const prompt = judgePrompt(options.rubric, question, output, testCase.expected);
      const verdict = await askJudge(options.target, prompt, parseVerdict, attempts, signal);
      return {
        score: verdict.score / 10,
        reason: verdict.reasoning,
        details: { judge: options.target.identity },
      };
    },
  });
}

const PAIR_VERDICT = z.object({ reasoning: z.string(), winner: z.enum(["A", "B", "tie"]) });

/** A pairwise verdict in a judge's reply, checked. */
export function parsePairVerdict(
  reply: string,
): { reasoning: string; winner: "A" | "B" | "tie" } | undefined {
  return jsonIn(reply, PAIR_VERDICT);
}

/** A judge of two answers to the same case: which is better, and by the rubric. */
export interface PairwiseJudge {
  readonly name: string;
  /**
   * +1 when `second` is better in both orders, −1 when `first` is, 0.5 / −0.5 when the orders
   * disagree with a tie, 0 when they cancel: position bias averages out.
   */
  compare(
    testCase: EvalCase,
    first: string,
    second: string,
    signal: AbortSignal,
  ): Promise<{ preference: number; reasons: [string, string] }>;
}

/**
 * The judge in pairwise mode: A against B in both orders (A first, then B first), each answer a
 * parsed `{"reasoning", "winner": "A" | "B" | "tie"}`; the preference is the mean of the two orders'
 * verdicts for the second target. Given to the Evaluator as `pairwise: [...]`.
 */
export function pairwiseJudge(options: Omit<JudgeOptions, "threshold"> & { name?: string }): PairwiseJudge {
  const attempts = options.attempts ?? 2;
  const ask = async (testCase: EvalCase, a: string, b: string, signal: AbortSignal) => {
    const question = conversationText(testCase);
    const prompt = [
      "You compare two assistants' answers to the same conversation against a rubric. Judge the content, not the order or the length.",
      "",
      `Rubric: ${options.rubric}`,
      "",
      `Conversation so far:\n${question}`,
      "",
      ...(testCase.expected !== undefined ? [`A reference answer: ${testCase.expected}`, ""] : []),
      `Answer A:\n${a}`,
      "",
      `Answer B:\n${b}`,
      "",
      'Reply with JSON only: {"reasoning": "<one or two sentences>", "winner": "A" | "B" | "tie"}',
    ].join("\n");
    return askJudge(options.target, prompt, parsePairVerdict, attempts, signal);
  };
  return {
    name: options.name ?? "pairwise-judge",
    async compare(testCase, first, second, signal) {
      const forward = await ask(testCase, first, second, signal); // second is B
      const backward = await ask(testCase, second, first, signal); // second is A
      const score = (winner: "A" | "B" | "tie", secondIs: "A" | "B") =>
        winner === "tie" ? 0 : winner === secondIs ? 1 : -1;
      return {
        preference: (score(forward.winner, "B") + score(backward.winner, "A")) / 2,
        reasons: [forward.reasoning, backward.reasoning],
      };
    },
  };
}
