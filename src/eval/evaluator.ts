/**
 * `Evaluator`: did the fine-tune help? It runs cases through one target (`run`) or several
 * (`compare`), scores every output with its metrics, and reports means with bootstrap intervals and,
 * for every pair of targets, the paired difference with a paired test. Long work comes as an
 * `EvaluationRun`: typed events, `done()`, `abort()`.
 */
import { setMaxListeners } from "node:events";
import type { ChatResult, ChatTarget, ChatUsage } from "../core/chat.js";
import { TunekitError, ValidationError } from "../core/errors.js";
import { EventLog } from "../core/event-log.js";
import { pool, withRetries } from "../core/work.js";
import type { ChatMessage } from "../data/example.js";
import { cacheKey, defaultCacheDir, OutputCache } from "./cache.js";
import { type CaseSource, loadCases } from "./cases.js";
import type { PairwiseJudge } from "./metrics/judge.js";
import {
  type CaseReport,
  type Comparison,
  EvaluationReport,
  type MetricSummary,
  type TargetOutput,
} from "./report.js";
import { bootstrapInterval, mean, signTest, wilcoxon } from "./statistics.js";
import { type EvalCase, type GenerationOptions, isApplicable, type Metric } from "./types.js";

/** A function target: messages in, text out. Cached only when it has a `cacheKey`. */
export type TargetFunction = ((
  messages: ChatMessage[],
  options: { signal: AbortSignal },
) => Promise<string>) & {
  cacheKey?: string;
};
/**
 * What answers the cases: any ChatTarget, a function, or an earlier report (its recorded outputs for
 * the target of the same name, or its only target, are reused: a baseline run compared again).
 */
export type EvalTarget = ChatTarget | TargetFunction | EvaluationReport;

export interface EvaluatorOptions {
  metrics: Metric[];
  /**
   * Judges of two targets' answers to the same case (`metrics.pairwiseJudge`), run for every pair of
   * targets in both orders; their preferences join the comparisons (test: sign).
   */
  pairwise?: PairwiseJudge[];
  /** How every target answers. Default: greedy (temperature 0), 256 new tokens. */
  generation?: GenerationOptions;
  /** Cases a remote target answers at once. Default 4. */
  concurrency?: number;
  /** Conversations a target with `completeBatch` (a local model) decodes together. Default 8. */
  batchSize?: number;
  /** Tries of a case on transient errors (429, 5xx, a dropped connection), with backoff. Default 3. */
  attempts?: number;
  /** Resamples of the bootstrap intervals. Default 10,000. */
  resamples?: number;
  /** Seeds the bootstrap. Default 0. */
  seed?: number;
  /**
   * The on-disk cache of outputs, keyed by the target's `identity`, the input and `generation`
   * (see `cacheKey`). Default `{ dir: defaultCacheDir() }`; `false` turns it off.
   */
  cache?: false | { dir?: string };
  /** Backoff before retry k (1-based), in ms. Default 500 × 2^(k−1). */
  retryDelayMs?: (attempt: number) => number;
}

export interface RunOptions {
  signal?: AbortSignal;
  /** false: neither read nor write the output cache in this run (a model whose weights change). */
  cache?: boolean;
}

export type EvaluationEvent =
  | { type: "run-start"; targets: string[]; cases: number }
  | { type: "case-start"; caseId: string; target: string }
  | { type: "case-end"; caseId: string; target: string; output: TargetOutput }
  | { type: "run-end"; report: EvaluationReport }
  | { type: "run-failed"; error: unknown }
  | { type: "run-aborted" };

/** An evaluation under way: iterate its events, or await `done()` for the report. */
export class EvaluationRun {
  readonly #log = new EventLog<EvaluationEvent>();
  readonly #controller = new AbortController();
  readonly #done: Promise<EvaluationReport>;

  /** @internal */
  constructor(
    body: (emit: (event: EvaluationEvent) => void, signal: AbortSignal) => Promise<EvaluationReport>,
    signal?: AbortSignal,
  ) {
    const forward = () => this.#controller.abort(signal?.reason);
    if (signal) {
      if (signal.aborted) this.#controller.abort(signal.reason);
      else signal.addEventListener("abort", forward, { once: true });
    }
    this.#done = body((event) => this.#log.push(event), this.#controller.signal).then(
      (report) => {
        signal?.removeEventListener("abort", forward);
        this.#log.close();
        return report;
      },
      (error: unknown) => {
        signal?.removeEventListener("abort", forward);
        this.#log.push(
          this.#controller.signal.aborted ? { type: "run-aborted" } : { type: "run-failed", error },
        );
        this.#log.close();
        throw error;
      },
    );
    this.#done.catch(() => undefined);
  }

  [Symbol.asyncIterator](): AsyncIterator<EvaluationEvent> {
    return this.#log.read()[Symbol.asyncIterator]();
  }

  on<T extends EvaluationEvent["type"]>(
    type: T,
    listener: (event: Extract<EvaluationEvent, { type: T }>) => void,
  ): this {
    this.#log.on(type, listener);
    return this;
  }

  off<T extends EvaluationEvent["type"]>(
    type: T,
    listener: (event: Extract<EvaluationEvent, { type: T }>) => void,
  ): this {
    this.#log.off(type, listener);
    return this;
  }

  /** Resolves with the report; rejects when the run fails or is aborted (an `AbortError`). */
  done(): Promise<EvaluationReport> {
    return this.#done;
  }

  /** Stops: cases under way finish, no new ones start, `done()` rejects with an `AbortError`. */
  abort(): void {
    this.#controller.abort();
  }
}

const isChatTarget = (target: EvalTarget): target is ChatTarget =>
  typeof target === "object" && target !== null && (target as ChatTarget).specificationVersion === "v2";

const describeError = (error: unknown) =>
  TunekitError.isInstance(error)
    ? `${error.message} [${error.code}]`
    : error instanceof Error
      ? error.message
      : String(error);

/** Every pair of targets, in order, `base` against `tuned` first when both are there. */
function orientedPairs(names: readonly string[]): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (let i = 0; i < names.length; i++)
    for (let j = i + 1; j < names.length; j++) pairs.push([names[i] as string, names[j] as string]);
  const baseFirst = pairs.findIndex(
    ([a, b]) => (a === "base" && b === "tuned") || (a === "tuned" && b === "base"),
  );
  if (baseFirst > 0) pairs.unshift(...pairs.splice(baseFirst, 1));
  return pairs.map(([a, b]): [string, string] =>
    a === "tuned" && b === "base" ? ["base", "tuned"] : [a, b],
  );
}

export class Evaluator {
  readonly options: Readonly<EvaluatorOptions>;
  readonly #generation: GenerationOptions;
  readonly #cache: OutputCache | undefined;

  constructor(options: EvaluatorOptions) {
    if (!Array.isArray(options?.metrics) || options.metrics.length === 0)
      throw new ValidationError("invalid_argument", "an Evaluator needs at least one metric");
    const names = new Set<string>();
    for (const metric of options.metrics) {
      if (names.has(metric.name))
        throw new ValidationError(
          "invalid_argument",
          `two metrics are named "${metric.name}": give one a name option`,
        );
      names.add(metric.name);
    }
    for (const key of ["concurrency", "batchSize", "attempts", "resamples"] as const) {
      const value = options[key];
      if (value !== undefined && !(Number.isInteger(value) && value >= 1))
        throw new ValidationError("invalid_argument", `${key} must be a whole number >= 1, got ${value}`);
    }
    this.options = options;
    this.#generation = { temperature: 0, maxTokens: 256, ...options.generation };
    this.#cache =
      options.cache === false ? undefined : new OutputCache(options.cache?.dir ?? defaultCacheDir());
  }

  /** Evaluates one target. */
  run(target: EvalTarget, cases: CaseSource, options: RunOptions = {}): EvaluationRun {
    return this.compare({ [isChatTarget(target) ? target.modelId : "target"]: target }, cases, options);
  }

  /**
   * Evaluates several targets on the same cases and compares every pair (`base` against `tuned`
   * first when both are there): name them as they should appear in the report.
   */
  compare(targets: Record<string, EvalTarget>, cases: CaseSource, options: RunOptions = {}): EvaluationRun {
    const names = Object.keys(targets);
    if (names.length === 0)
      throw new ValidationError("invalid_argument", "compare needs at least one target");
    for (const [name, target] of Object.entries(targets))
      if (!isChatTarget(target) && typeof target !== "function" && !(target instanceof EvaluationReport))
        throw new ValidationError(
          "invalid_argument",
          `target "${name}" is neither a ChatTarget, a function nor an EvaluationReport`,
        );
    const useCache = options.cache !== false;
    return new EvaluationRun(
      (emit, signal) => this.#evaluate(targets, cases, emit, signal, useCache),
      options.signal,
    );
  }

  async #evaluate(
    targets: Record<string, EvalTarget>,
    source: CaseSource,
    emit: (event: EvaluationEvent) => void,
    signal: AbortSignal,
    useCache: boolean,
  ): Promise<EvaluationReport> {
    // Every request under way listens to the run's signal: as many as `concurrency` at once.
    setMaxListeners(Math.max(10, 4 * (this.options.concurrency ?? 4)), signal);
    const cases = await loadCases(source);
    const names = Object.keys(targets);
    emit({ type: "run-start", targets: names, cases: cases.length });
    const reports: CaseReport[] = cases.map((entry) => ({
      id: entry.id,
      input: entry.input,
      ...(entry.expected !== undefined ? { expected: entry.expected } : {}),
      outputs: {},
    }));
    for (const name of names) {
      const target = targets[name] as EvalTarget;
      const finished = async (
        index: number,
        output: Omit<TargetOutput, "scores">,
        recorded?: TargetOutput["scores"],
      ) => {
        const testCase = cases[index] as EvalCase;
        const scored = await this.#score(name, target, testCase, output, signal, recorded);
        (reports[index] as CaseReport).outputs[name] = scored;
        emit({ type: "case-end", caseId: testCase.id, target: name, output: scored });
      };
      if (target instanceof EvaluationReport) await this.#reuse(name, target, cases, emit, signal, finished);
      else await this.#generate(name, target, cases, emit, signal, finished, useCache);
      signal.throwIfAborted();
    }
    const failures = await this.#judgePairs(orientedPairs(names), cases, reports, signal);
    const report = this.#report(names, cases, reports);
    if (failures.length > 0)
      report.data.warnings.push(
        `the pairwise judge failed on ${failures.length} case${failures.length === 1 ? "" : "s"} (first: ${failures[0]})`,
      );
    return report;
  }

  /** The outputs an earlier report recorded for this target (or its only one), case by case id. */
  async #reuse(
    name: string,
    report: EvaluationReport,
    cases: EvalCase[],
    emit: (event: EvaluationEvent) => void,
    signal: AbortSignal,
    finished: (
      index: number,
      output: Omit<TargetOutput, "scores">,
      recorded?: TargetOutput["scores"],
    ) => Promise<void>,
  ): Promise<void> {
    const recordedName = report.data.targets.includes(name)
      ? name
      : report.data.targets.length === 1
        ? (report.data.targets[0] as string)
        : undefined;
    if (recordedName === undefined)
      throw new ValidationError(
        "invalid_argument",
        `the report given as "${name}" has no target of that name (it has ${report.data.targets.join(", ")})`,
      );
    const byId = new Map(report.data.cases.map((entry) => [entry.id, entry]));
    for (const [index, testCase] of cases.entries()) {
      signal.throwIfAborted();
      emit({ type: "case-start", caseId: testCase.id, target: name });
      const output = byId.get(testCase.id)?.outputs[recordedName];
      if (!output)
        await finished(index, {
          text: "",
          latencyMs: 0,
          error: `case ${testCase.id} is not in the report given as "${name}"`,
        });
      else await finished(index, { ...output, cached: true }, output.scores);
    }
  }

  /** Every case's output from one target: from the cache, in batches, or `concurrency` at a time. */
  async #generate(
    name: string,
    target: ChatTarget | TargetFunction,
    cases: EvalCase[],
    emit: (event: EvaluationEvent) => void,
    signal: AbortSignal,
    finished: (index: number, output: Omit<TargetOutput, "scores">) => Promise<void>,
    useCache: boolean,
  ): Promise<void> {
    const generation = this.#generation;
    const identity = isChatTarget(target) ? target.identity : target.cacheKey;
    const cache = identity === undefined || !useCache ? undefined : this.#cache;
    const pending: number[] = [];
    for (const [index, testCase] of cases.entries()) {
      const cached = cache
        ? await cache.get(cacheKey(identity as string, testCase.input, generation))
        : undefined;
      if (cached) {
        emit({ type: "case-start", caseId: testCase.id, target: name });
        await finished(index, {
          text: cached.text,
          latencyMs: 0,
          cached: true,
          ...(cached.usage ? { usage: cached.usage } : {}),
        });
      } else pending.push(index);
    }
    const store = async (
      index: number,
      result: { text: string; usage?: ChatUsage; finishReason?: ChatResult["finishReason"] },
    ) => {
      if (cache)
        await cache.set(cacheKey(identity as string, (cases[index] as EvalCase).input, generation), {
          text: result.text,
          ...(result.finishReason ? { finishReason: result.finishReason } : {}),
          ...(result.usage ? { usage: result.usage } : {}),
        });
    };
    if (isChatTarget(target) && target.completeBatch) {
      const size = this.options.batchSize ?? 8;
      for (let first = 0; first < pending.length; first += size) {
        signal.throwIfAborted();
        const chunk = pending.slice(first, first + size);
        for (const index of chunk)
          emit({ type: "case-start", caseId: (cases[index] as EvalCase).id, target: name });
        const started = performance.now();
        let results: ChatResult[] | undefined;
        let failure: unknown;
        try {
          results = await target.completeBatch(
            chunk.map((index) => (cases[index] as EvalCase).input),
            { ...generation, signal },
          );
        } catch (error) {
          if (signal.aborted) throw error;
          failure = error;
        }
        const latencyMs = (performance.now() - started) / chunk.length;
        for (const [position, index] of chunk.entries()) {
          const result = results?.[position];
          if (result) {
            await store(index, result);
            await finished(index, {
              text: result.text,
              latencyMs,
              ...(result.usage ? { usage: result.usage } : {}),
            });
          } else await finished(index, { text: "", latencyMs, error: describeError(failure) });
        }
      }
      return;
    }
    await pool(pending, this.options.concurrency ?? 4, async (index) => {
      signal.throwIfAborted();
      const testCase = cases[index] as EvalCase;
      emit({ type: "case-start", caseId: testCase.id, target: name });
      const started = performance.now();
      try {
        const result = await this.#attempt(target, testCase.input, signal);
        await store(index, result);
        await finished(index, {
          text: result.text,
          latencyMs: performance.now() - started,
          ...(result.usage ? { usage: result.usage } : {}),
        });
      } catch (error) {
        if (signal.aborted) throw error;
        await finished(index, {
          text: "",
          latencyMs: performance.now() - started,
          error: describeError(error),
        });
      }
    });
  }

  /** One answer, tried again with backoff on transient errors. */
  async #attempt(
    target: ChatTarget | TargetFunction,
    input: ChatMessage[],
    signal: AbortSignal,
  ): Promise<{ text: string; usage?: ChatUsage; finishReason?: ChatResult["finishReason"] }> {
    return withRetries(
      async () => {
        if (isChatTarget(target)) return await target.complete(input, { ...this.#generation, signal });
        const text = await target(input, { signal });
        if (typeof text !== "string")
          throw new TypeError(`the target function returned ${typeof text}, not a string`);
        return { text };
      },
      {
        ...(this.options.attempts !== undefined ? { attempts: this.options.attempts } : {}),
        ...(this.options.retryDelayMs !== undefined ? { retryDelayMs: this.options.retryDelayMs } : {}),
        signal,
      },
    );
  }

  /** Every metric on one output; a metric that throws records the error and scores nothing. */
  async #score(
    name: string,
    target: EvalTarget,
    testCase: EvalCase,
    output: Omit<TargetOutput, "scores">,
    signal: AbortSignal,
    recorded?: TargetOutput["scores"],
  ): Promise<TargetOutput> {
    const scores: TargetOutput["scores"] = {};
    const errors: string[] = output.error ? [output.error] : [];
    if (output.error === undefined) {
      const handle = {
        name,
        ...(isChatTarget(target) && target.answerLoss
          ? {
              answerLoss: (messages: ChatMessage[], expected: string, options: { perToken?: boolean } = {}) =>
                target.answerLoss?.(messages, expected, { ...options, signal }) as Promise<
                  import("../core/chat.js").AnswerLoss
                >,
            }
          : {}),
      };
      for (const metric of this.options.metrics) {
        // A reused output keeps the scores it was given (its model may not be here to score again).
        const kept = recorded?.[metric.name];
        if (kept) {
          scores[metric.name] = kept;
          continue;
        }
        try {
          scores[metric.name] = await metric.score({ output: output.text, testCase, target: handle, signal });
        } catch (error) {
          if (signal.aborted) throw error;
          errors.push(`${metric.name}: ${describeError(error)}`);
        }
      }
    }
    return { ...output, scores, ...(errors.length > 0 ? { error: errors.join("; ") } : {}) };
  }

  /** Every pairwise judge on every pair of answers both targets gave; returns what failed. */
  async #judgePairs(
    pairs: Array<[string, string]>,
    cases: EvalCase[],
    reports: CaseReport[],
    signal: AbortSignal,
  ): Promise<string[]> {
    const judges = this.options.pairwise ?? [];
    const failures: string[] = [];
    const work = judges.flatMap((judge) =>
      pairs.flatMap(([a, b]) =>
        reports.map((report, index) => ({ judge, a, b, report, testCase: cases[index] as EvalCase })),
      ),
    );
    await pool(work, this.options.concurrency ?? 4, async ({ judge, a, b, report, testCase }) => {
      const first = report.outputs[a];
      const second = report.outputs[b];
      if (!first || !second || first.error !== undefined || second.error !== undefined) return;
      try {
        const { preference, reasons } = await judge.compare(testCase, first.text, second.text, signal);
        report.judgements ??= [];
        report.judgements.push({ judge: judge.name, a, b, preference, reasons });
      } catch (error) {
        if (signal.aborted) throw error;
        failures.push(`${report.id}: ${describeError(error)}`);
      }
    });
    return failures;
  }

  #report(names: string[], cases: EvalCase[], reports: CaseReport[]): EvaluationReport {
    const resamples = this.options.resamples ?? 10_000;
    const seed = this.options.seed ?? 0;
    const metrics = this.options.metrics;
    const summary: Record<string, Record<string, MetricSummary>> = {};
    for (const metric of metrics) {
      summary[metric.name] = {};
      for (const name of names) {
        const outcomes = reports
          .map((entry) => entry.outputs[name]?.scores[metric.name])
          .filter(isApplicable);
        const values = outcomes.map((outcome) => outcome.score);
        const entry: MetricSummary = {
          mean: mean(values),
          ci95: bootstrapInterval(values, { resamples, seed }),
          passRate:
            values.length === 0
              ? Number.NaN
              : outcomes.filter((outcome) => outcome.pass).length / values.length,
          n: values.length,
        };
        const corpus = metric.corpus?.(
          reports.map((report) => report.outputs[name]?.text ?? ""),
          cases,
        );
        if (corpus !== undefined) entry.corpus = corpus;
        (summary[metric.name] as Record<string, MetricSummary>)[name] = entry;
      }
    }
    const oriented = orientedPairs(names);
    // Which expected tokens b made more likely than a, where both targets kept per-token losses.
    for (const [a, b] of oriented)
      for (const metric of metrics)
        for (const entry of reports) {
          const first = entry.outputs[a]?.scores[metric.name];
          const second = entry.outputs[b]?.scores[metric.name];
          const before = isApplicable(first)
            ? (first.details?.perToken as Array<{ token: string; loss: number }> | undefined)
            : undefined;
          const after = isApplicable(second)
            ? (second.details?.perToken as Array<{ token: string; loss: number }> | undefined)
            : undefined;
          if (!before || !after || before.length !== after.length) continue;
          if (!before.every((token, index) => token.token === after[index]?.token)) continue;
          entry.tokenChanges ??= [];
          entry.tokenChanges.push({
            metric: metric.name,
            a,
            b,
            tokens: before.map((token, index) => ({
              token: token.token,
              change: token.loss - (after[index]?.loss ?? 0),
            })),
          });
        }
    const comparisons: Comparison[] = [];
    /** b − a over the cases both have: the mean, its interval, wins and losses, the paired test. */
    const compare = (
      a: string,
      b: string,
      metric: string,
      differences: number[],
      test: "sign" | "wilcoxon",
    ) => {
      if (differences.length === 0) return;
      const wins = differences.filter((value) => value > 0).length;
      const losses = differences.filter((value) => value < 0).length;
      comparisons.push({
        a,
        b,
        metric,
        meanDifference: mean(differences),
        ci95: bootstrapInterval(differences, { resamples, seed }),
        wins,
        ties: differences.length - wins - losses,
        losses,
        pValue: test === "sign" ? signTest(wins, losses) : wilcoxon(differences).pValue,
        test,
        n: differences.length,
      });
    };
    for (const [a, b] of oriented)
      for (const metric of metrics) {
        const differences: number[] = [];
        for (const entry of reports) {
          const first = entry.outputs[a]?.scores[metric.name];
          const second = entry.outputs[b]?.scores[metric.name];
          if (isApplicable(first) && isApplicable(second)) differences.push(second.score - first.score);
        }
        compare(a, b, metric.name, differences, metric.kind === "pass" ? "sign" : "wilcoxon");
      }
    for (const [a, b] of oriented)
      for (const judge of this.options.pairwise ?? []) {
        const preferences = reports.flatMap(
          (entry) =>
            entry.judgements
              ?.filter((item) => item.judge === judge.name && item.a === a && item.b === b)
              .map((item) => item.preference) ?? [],
        );
        compare(a, b, judge.name, preferences, "sign");
      }
    const warnings: string[] = [];
    if (cases.length < 10)
      warnings.push(
        `only ${cases.length} case${cases.length === 1 ? "" : "s"}: an interval this wide says little`,
      );
    for (const name of names) {
      const failed = reports.filter((entry) => entry.outputs[name]?.error !== undefined);
      if (failed.length > 0)
        warnings.push(
          `${name} failed on ${failed.length} of ${cases.length} cases (first: ${failed[0]?.id}: ${failed[0]?.outputs[name]?.error})`,
        );
    }
    for (const [a, b] of oriented) {
      const same = reports.every((entry) => {
        const first = entry.outputs[a];
        const second = entry.outputs[b];
        return first?.error === undefined && second?.error === undefined && first?.text === second?.text;
      });
      if (same)
        warnings.push(`${a} and ${b} gave identical outputs on every case: the adapter changed nothing?`);
    }
    return new EvaluationReport({
      targets: names,
      metrics: metrics.map((metric) => ({
        name: metric.name,
        threshold: metric.threshold,
        kind: metric.kind,
      })),
      cases: reports,
      summary,
      comparisons,
      warnings,
    });
  }
}
