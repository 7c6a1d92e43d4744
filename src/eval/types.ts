/** The shapes an evaluation works with: cases, targets as the Evaluator holds them, metric results. */
import type { AnswerLoss, ChatOptions } from "../core/chat.js";
import type { ChatMessage } from "../data/example.js";

/** One test case: what goes in, and what a good answer looks like. */
export interface EvalCase {
  /** Stable across runs (the cache and comparisons use it). Default: `case-<n>` (1-based). */
  id: string;
  /** The conversation the target answers. */
  input: ChatMessage[];
  /** The expected answer (`contains`, ROUGE, BLEU, chrF, `answerLoss` compare with it). */
  expected?: string;
  /** Topics a good answer mentions (`topicCoverage`). */
  expectedTopics?: string[];
  /** More acceptable answers beside `expected` (BLEU and chrF use them all). */
  references?: string[];
  metadata?: Record<string, unknown>;
}

/** A case as written: `input` may be a plain string (one user message). */
export interface CaseInput extends Omit<EvalCase, "id" | "input"> {
  id?: string;
  input: string | ChatMessage[];
}

/** What a metric says of one output. `pass` is `score >= threshold`. */
export interface MetricScore {
  /** In [0, 1]; higher is better. */
  score: number;
  pass: boolean;
  reason?: string;
  details?: Record<string, unknown>;
}

/** A metric that cannot judge this case or target (no `expected`, no `answerLoss`): never a 0. */
export interface NotApplicable {
  notApplicable: true;
  reason: string;
}

export type MetricOutcome = MetricScore | NotApplicable;

export const isApplicable = (outcome: MetricOutcome | undefined): outcome is MetricScore =>
  outcome !== undefined && !("notApplicable" in outcome);

/** What a metric is given for one case and one target. */
export interface MetricInput {
  output: string;
  testCase: EvalCase;
  /** The target's name in the run, and its loss of an expected answer when it has one. */
  target: {
    name: string;
    answerLoss?: (
      messages: ChatMessage[],
      expected: string,
      options?: { perToken?: boolean },
    ) => Promise<AnswerLoss>;
  };
  signal: AbortSignal;
}

export interface Metric {
  readonly name: string;
  /** `pass` is `score >= threshold`. */
  readonly threshold: number;
  /**
   * `"pass"`: scores are 0 or 1 (the sign test compares targets); `"score"`: graded (Wilcoxon's
   * signed-rank test).
   */
  readonly kind: "pass" | "score";
  score(input: MetricInput): MetricOutcome | Promise<MetricOutcome>;
  /** A corpus-level figure over every case of one target (BLEU, chrF), beside the mean. */
  corpus?(outputs: readonly string[], cases: readonly EvalCase[]): number | undefined;
}

/** Generation settings every target answers with. */
export type GenerationOptions = Omit<ChatOptions, "signal" | "tools" | "logprobs" | "topLogprobs">;
