import type { Distribution } from "../core/stats.js";
import type { Problem } from "../data/problem.js";
import type { ValidationTarget } from "./rules/rule-set.js";

/** Token and shape statistics of the valid examples, as the OpenAI Cookbook reports them. */
export interface ValidationStats {
  /** Chat examples with no system message. */
  missingSystem: number;
  /** Chat examples with no user message. */
  missingUser: number;
  /** Examples longer than the model's context limit: they will be truncated. */
  overLimit: number;
  /**
   * Examples whose counts are not exact: a run of more than `LONG_RUN` (1,024) characters without a
   * space, counted in pieces, or counting stopped past the context limit (the count is a lower bound).
   */
  approximate: number;
  messages: Distribution;
  totalTokens: Distribution;
  assistantTokens: Distribution;
}

export interface CostEstimate {
  /** Σ min(limit, tokens) over the examples: the tokens of one epoch. */
  billedTokens: number;
  /** The epochs given, or the provider's default for this many examples. */
  epochs: number;
  /** epochs × billedTokens. */
  totalTokens: number;
  /** USD per million training tokens, when known. */
  pricePerMillion?: number;
  /** totalTokens × price, when the price is known. */
  estimatedUSD?: number;
}

/** Everything the Validator found: never stops at the first problem. */
export interface ValidationReport {
  /** True when there is no error (warnings allowed). */
  ok: boolean;
  target: ValidationTarget;
  model: string | undefined;
  /** The tokenizer that counted the tokens. */
  tokenizer: string;
  contextLimit: number | undefined;
  /** Records read (not counting blank lines). */
  examples: number;
  /** Examples without an error: the ones that count for stats and cost. */
  valid: number;
  errors: Problem[];
  warnings: Problem[];
  /**
   * What concerns the target rather than the data: OpenAI's wind-down of fine-tuning, a base model
   * that shuts down soon (warnings) or has shut down (an error, which makes `ok` false).
   */
  notices: Problem[];
  /** Problems beyond `maxProblems`, counted but not listed. */
  omitted: { errors: number; warnings: number };
  /** Problems per code, all of them, listed or not. */
  counts: Record<string, number>;
  stats: ValidationStats;
  cost: CostEstimate;
}

/** Collects problems up to a cap, counting every one. */
export class ProblemLog {
  readonly errors: Problem[] = [];
  readonly warnings: Problem[] = [];
  readonly omitted = { errors: 0, warnings: 0 };
  readonly counts: Record<string, number> = {};

  constructor(private readonly max: number) {}

  add(entry: Problem): void {
    this.counts[entry.code] = (this.counts[entry.code] ?? 0) + 1;
    const list = entry.severity === "error" ? this.errors : this.warnings;
    if (this.errors.length + this.warnings.length < this.max) list.push(entry);
    else if (entry.severity === "error") this.omitted.errors++;
    else this.omitted.warnings++;
  }
}
