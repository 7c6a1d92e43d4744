/**
 * `TrainingRun`: one local fine-tune as long-running work in tunekit's shape — an async iterator of
 * typed events (every reader gets all of them from the start), the same events on an emitter,
 * `done()` for the summary, `abort()` (or the options' signal) to stop after the current step, with a
 * final checkpoint.
 */
import { EventLog } from "../core/event-log.js";
import type { ReportData } from "../eval/report.js";

/** The plan of a run, once its data is tokenized and packed. */
export interface RunPlan {
  examples: number;
  /** Labelled tokens per epoch. */
  trainedTokens: number;
  tokens: number;
  blocks: number;
  steps: number;
  epochs: number;
  truncated: number;
  skipped: number;
  warnings: string[];
  /** The held-out examples, when the run evaluates. */
  validation?: { examples: number; trainedTokens: number; truncated: number; skipped: number };
  /** The checkpoint the run continues from (what changed since is in `warnings`). */
  resume?: { checkpoint: string; step: number };
}

export interface StepEvent {
  type: "step";
  step: number;
  totalSteps: number;
  epoch: number;
  loss: number;
  learningRate: number;
  gradNorm: number;
  tokensPerSecond: number;
  /** Seconds left at the current speed. */
  eta: number;
}

/**
 * The adapter measured at an eval point (dropout off): on the validation examples (`loss` …
 * `tokens`, when the run has validation data) and on `evalCases` (`cases`, when given).
 */
export interface EvalEvent {
  type: "eval";
  step: number;
  epoch: number;
  /** Mean cross-entropy over the labelled tokens. */
  loss?: number;
  /** exp(loss). */
  perplexity?: number;
  /** Share of labelled tokens the greedy choice predicts. */
  tokenAccuracy?: number;
  /** Labelled tokens evaluated. */
  tokens?: number;
  /** The evaluation of `evalCases`: tuned against base. */
  cases?: Pick<ReportData, "summary" | "comparisons" | "warnings">;
}

export interface RunSummary {
  /** The step the run ended at (counting a resumed checkpoint's steps). */
  steps: number;
  /** Steps this run trained: `steps` less the checkpoint's; 0 when a resume found nothing left. */
  trainedSteps: number;
  epochs: number;
  /** Mean loss of the last logged steps. */
  finalLoss: number | undefined;
  /** Labelled tokens trained on. */
  tokens: number;
  seconds: number;
  /** The final adapter, in PEFT format. */
  adapterPath: string | undefined;
  checkpoints: string[];
  /** The last evaluation, when the run had validation data. */
  eval?: { loss: number; perplexity: number; tokenAccuracy: number };
}

export type TrainingRunEvent =
  | { type: "run-start"; plan: RunPlan }
  | StepEvent
  | EvalEvent
  | { type: "checkpoint-saved"; step: number; path: string }
  | { type: "run-end"; summary: RunSummary }
  | { type: "run-failed"; error: unknown }
  | { type: "run-aborted"; summary: RunSummary };

export class TrainingRun {
  readonly #log = new EventLog<TrainingRunEvent>();
  readonly #controller = new AbortController();
  readonly #done: Promise<RunSummary>;

  /** @internal `body` runs the loop; it reports through `emit` and stops when `signal` aborts. */
  constructor(
    body: (emit: (event: TrainingRunEvent) => void, signal: AbortSignal) => Promise<RunSummary>,
    signal?: AbortSignal,
  ) {
    if (signal) {
      if (signal.aborted) this.#controller.abort(signal.reason);
      else signal.addEventListener("abort", () => this.#controller.abort(signal.reason), { once: true });
    }
    this.#done = body((event) => this.#log.push(event), this.#controller.signal).then(
      (summary) => {
        this.#log.close();
        return summary;
      },
      (error: unknown) => {
        this.#log.push({ type: "run-failed", error });
        this.#log.close();
        throw error;
      },
    );
    // A run nobody awaits must not crash the process with an unhandled rejection; done() still rejects.
    this.#done.catch(() => undefined);
  }

  /** Every event from the start, then the live ones, until the run ends. */
  [Symbol.asyncIterator](): AsyncIterator<TrainingRunEvent> {
    return this.#log.read()[Symbol.asyncIterator]();
  }

  events(signal?: AbortSignal): AsyncGenerator<TrainingRunEvent, void, undefined> {
    return this.#log.read(signal);
  }

  on<T extends TrainingRunEvent["type"]>(
    type: T,
    listener: (event: Extract<TrainingRunEvent, { type: T }>) => void,
  ): this {
    this.#log.on(type, listener);
    return this;
  }

  off<T extends TrainingRunEvent["type"]>(
    type: T,
    listener: (event: Extract<TrainingRunEvent, { type: T }>) => void,
  ): this {
    this.#log.off(type, listener);
    return this;
  }

  /** Resolves with the summary when the run ends (also when aborted); rejects when it fails. */
  done(): Promise<RunSummary> {
    return this.#done;
  }

  /** Stops after the current step, writing a final checkpoint; `done()` then resolves. */
  abort(): void {
    this.#controller.abort();
  }
}
