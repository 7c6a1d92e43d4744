/**
 * `tunekit train`: flags → `LocalTrainer` options, the run's events → the terminal (a bar redrawn in
 * place), plain lines, or JSON lines; Ctrl-C → `abort()`. No training logic lives here.
 */
import { join } from "node:path";
import { formatLocation, TunekitError } from "../core/errors.js";
import { Dataset } from "../data/dataset.js";
import { type FormatName, isFormatName } from "../data/formats/index.js";
import { readModelConfig } from "../engine/config.js";
import type { LoadProgressEvent } from "../engine/local-model.js";
import { modelFolder } from "../engine/model-source.js";
import { LocalTrainer, type TrainOptions } from "../local/trainer.js";
import type { RunPlan, RunSummary, StepEvent, TrainingRunEvent } from "../local/training-run.js";
import { Validator } from "../validate/validator.js";
import {
  bytesFlag,
  computeDtypeFlag,
  integerFlag,
  numberFlag,
  parseFlags,
  quantizationFlag,
  quoteArg,
} from "./args.js";
import { formatReport, plural } from "./format.js";
import { type CliIO, processIO, UsageError } from "./io.js";

export const TRAIN_USAGE = `  train --model PATH|HUB_ID --data FILE [--output DIR] [--resume [latest|DIR]]
        [--epochs N] [--lr X] [--batch-size N] [--grad-accum N] [--max-seq-length N] [--seed N]
        [--lora-r N] [--lora-alpha N] [--quantization nf4|none] [--compute-dtype f32|bf16]
        [--threads N] [--validation FILE|RATIO] [--eval-steps N] [--logging-steps N] [--save-steps N]
        [--format F] [--max-record-bytes SIZE] [--json]
      Fine-tune a LoRA adapter on this machine (QLoRA by default); checkpoints and the adapter go
      to --output (default ./tunekit-output). Ctrl-C stops after the current step with a checkpoint;
      --resume continues from the newest one (or DIR) with the settings it was trained with.`;

const DEFAULT_OUTPUT = "tunekit-output";
const BF16_UNAVAILABLE =
  "--compute-dtype bf16: this CPU has no AVX-512 BF16 (or another kernel path is forced); computing in fp32";
/** Data warnings printed before training; the rest are counted. */
const SHOWN_WARNINGS = 5;

/** What the flags ask for, checked. */
interface TrainCommand {
  model: string;
  data: string;
  format: FormatName | undefined;
  maxRecordBytes: number | undefined;
  quantization: "nf4" | "none";
  computeDtype: "f32" | "bf16" | undefined;
  threads: number | undefined;
  /** A ratio, or a file to read. */
  validation: number | string | undefined;
  options: TrainOptions;
  mode: "tty" | "plain" | "json";
}

const integer = (value: string | undefined, flag: string, min = 1) =>
  integerFlag(value, flag, { min, command: "train" });
const positive = (value: string | undefined, flag: string) => numberFlag(value, flag, { command: "train" });

/** A number in (0, 1) is a share of the training data; anything else names a file. */
function validationOption(value: string | undefined): number | string | undefined {
  if (value === undefined || !/^[\d.eE+-]+$/.test(value)) return value;
  const ratio = Number(value);
  if (!(ratio > 0 && ratio < 1))
    throw new UsageError(`--validation takes a file or a ratio in (0, 1), got "${value}"`, "train");
  return ratio;
}

function parseTrainArgs(argv: string[], io: CliIO): TrainCommand | "help" {
  const { values, positionals, help } = parseFlags("train", argv, {
    model: { type: "string" },
    data: { type: "string" },
    format: { type: "string" },
    output: { type: "string" },
    resume: { type: "optional", bare: "latest" },
    "max-record-bytes": { type: "string" },
    epochs: { type: "string" },
    lr: { type: "string" },
    "batch-size": { type: "string" },
    "grad-accum": { type: "string" },
    "max-seq-length": { type: "string" },
    seed: { type: "string" },
    "lora-r": { type: "string" },
    "lora-alpha": { type: "string" },
    quantization: { type: "string" },
    "compute-dtype": { type: "string" },
    threads: { type: "string" },
    validation: { type: "string" },
    "eval-steps": { type: "string" },
    "logging-steps": { type: "string" },
    "save-steps": { type: "string" },
    json: { type: "boolean" },
  });
  if (help) return "help";
  if (positionals.length > 0)
    throw new UsageError(`train takes no file arguments; use --data ${positionals[0]}`, "train");
  if (!values.model) throw new UsageError("train needs --model PATH|HUB_ID", "train");
  if (!values.data) throw new UsageError("train needs --data FILE", "train");
  if (values.format !== undefined && !isFormatName(values.format))
    throw new UsageError(`--format: unknown format "${values.format}"`, "train");
  const quantization = quantizationFlag(values.quantization, "train");

  const options: TrainOptions = { outputDir: values.output ?? DEFAULT_OUTPUT };
  const set = <K extends keyof TrainOptions>(key: K, value: TrainOptions[K] | undefined) => {
    if (value !== undefined) options[key] = value;
  };
  set("epochs", integer(values.epochs, "--epochs"));
  set("learningRate", positive(values.lr, "--lr"));
  set("batchSize", integer(values["batch-size"], "--batch-size"));
  set("gradientAccumulation", integer(values["grad-accum"], "--grad-accum"));
  set("maxSeqLength", integer(values["max-seq-length"], "--max-seq-length"));
  set("seed", integer(values.seed, "--seed", 0));
  set("evalSteps", integer(values["eval-steps"], "--eval-steps"));
  set("loggingSteps", integer(values["logging-steps"], "--logging-steps"));
  set("saveSteps", integer(values["save-steps"], "--save-steps"));
  set("resumeFrom", values.resume);
  const r = integer(values["lora-r"], "--lora-r");
  const alpha = positive(values["lora-alpha"], "--lora-alpha");
  if (r !== undefined || alpha !== undefined)
    options.lora = { ...(r !== undefined ? { r } : {}), ...(alpha !== undefined ? { alpha } : {}) };
  return {
    model: values.model,
    data: values.data,
    format: values.format,
    maxRecordBytes: bytesFlag(values["max-record-bytes"], "--max-record-bytes", "train"),
    quantization,
    computeDtype: computeDtypeFlag(values["compute-dtype"], "train"),
    threads: integer(values.threads, "--threads"),
    validation: validationOption(values.validation),
    options,
    mode: values.json ? "json" : io.isTTY ? "tty" : "plain",
  };
}

// ── what the user sees ─────────────────────────────────────────────────────────────────────────

const count = (value: number) => value.toLocaleString("en-US");

/** `0:42`, `12:03`, `1:02:03`. */
function clock(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const total = Math.max(0, Math.round(seconds));
  const [h, m, s] = [Math.floor(total / 3600), Math.floor((total % 3600) / 60), total % 60];
  const pad = (value: number) => String(value).padStart(2, "0");
  return h > 0 ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

const megabytes = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

function planLines(plan: RunPlan): string[] {
  const dropped = [
    plan.truncated > 0 ? `${plan.truncated} truncated` : "",
    plan.skipped > 0 ? `${plan.skipped} skipped` : "",
  ].filter(Boolean);
  const lines = [
    `plan: ${plural(plan.examples, "example")}${dropped.length > 0 ? ` (${dropped.join(", ")})` : ""}, ` +
      `${count(plan.tokens)} tokens (${count(plan.trainedTokens)} trained) in ${plural(plan.blocks, "block")} → ` +
      `${plural(plan.steps, "step")} over ${plural(plan.epochs, "epoch")}`,
  ];
  if (plan.validation)
    lines.push(
      `validation: ${plural(plan.validation.examples, "example")} (${count(plan.validation.trainedTokens)} trained tokens)`,
    );
  if (plan.resume)
    lines.push(
      plan.resume.step >= plan.steps
        ? `nothing left to train: ${plan.resume.checkpoint} is at step ${count(plan.resume.step)} and this plan has ${plural(plan.steps, "step")}`
        : `resumed from ${plan.resume.checkpoint} (step ${count(plan.resume.step)} of ${count(plan.steps)})`,
    );
  return lines;
}

/** One line per logged step, for logs and pipes. */
function stepLine(event: StepEvent): string {
  return [
    `step ${event.step}/${event.totalSteps}`,
    `epoch ${event.epoch.toFixed(2)}`,
    `loss ${event.loss.toFixed(4)}`,
    `lr ${event.learningRate.toExponential(2)}`,
    `grad norm ${event.gradNorm.toFixed(3)}`,
    `${count(Math.round(event.tokensPerSecond))} tok/s`,
    `ETA ${clock(event.eta)}`,
  ].join("  ");
}

/** `[██████░░░░] 12/40  loss 1.2345  1,234 tok/s  ETA 0:42`, fitted to the terminal. */
function progressBar(event: StepEvent, columns: number): string {
  const tail = `${event.step}/${event.totalSteps}  loss ${event.loss.toFixed(4)}  ${count(Math.round(event.tokensPerSecond))} tok/s  ETA ${clock(event.eta)}`;
  const width = Math.max(10, Math.min(30, columns - tail.length - 4));
  const filled = Math.round((width * event.step) / Math.max(1, event.totalSteps));
  const line = `[${"█".repeat(filled)}${"░".repeat(width - filled)}] ${tail}`;
  return line.slice(0, Math.max(1, columns - 1));
}

function summaryLines(summary: RunSummary, aborted: boolean): string[] {
  const loss = summary.finalLoss === undefined ? "" : `, final loss ${summary.finalLoss.toFixed(4)}`;
  const resumed = summary.trainedSteps < summary.steps ? `; ${count(summary.trainedSteps)} in this run` : "";
  // A resume with nothing left has said so in its plan; it trained nothing to report.
  const lines =
    summary.trainedSteps === 0 && !aborted
      ? []
      : [
          `${aborted ? "stopped" : "done"}: ${plural(summary.steps, "step")} (${summary.epochs.toFixed(2)} epochs${resumed})${loss}, ` +
            `${count(summary.tokens)} tokens in ${clock(summary.seconds)}`,
        ];
  if (summary.eval)
    lines.push(
      `last eval: loss ${summary.eval.loss.toFixed(4)}, perplexity ${summary.eval.perplexity.toFixed(2)}, token accuracy ${(100 * summary.eval.tokenAccuracy).toFixed(1)}%`,
    );
  const checkpoint = summary.checkpoints.at(-1);
  if (aborted) {
    if (checkpoint) lines.push(`checkpoint: ${checkpoint}`, "continue with the same command and --resume");
  } else if (summary.adapterPath) lines.push(`adapter: ${summary.adapterPath}`);
  return lines;
}

/** A TunekitError's code and message; anything else as a message. */
function errorJSON(error: unknown): { code?: string; message: string } {
  if (TunekitError.isInstance(error)) return { code: error.code, message: error.message };
  return { message: error instanceof Error ? error.message : String(error) };
}

/**
 * Prints loading progress and run events in one of three modes: a bar redrawn with `\r` on a terminal
 * (other lines print above it), one plain line each elsewhere, or one JSON object per event per line.
 */
class Display {
  readonly #io: CliIO;
  readonly #mode: TrainCommand["mode"];
  readonly #quantization: TrainCommand["quantization"];
  /** The line being redrawn on the terminal, to put back after a line printed above it. */
  #live = "";
  #lastDraw = 0;
  readonly #files = new Set<string>();
  readonly #warned = new Set<string>();

  constructor(io: CliIO, { mode, quantization }: Pick<TrainCommand, "mode" | "quantization">) {
    this.#io = io;
    this.#mode = mode;
    this.#quantization = quantization;
  }

  get #columns(): number {
    // A pseudo-terminal without a window size reports 0.
    const columns = this.#io.columns ?? 0;
    return columns > 0 ? columns : 80;
  }

  /** Lines for people: above the bar on a terminal, not at all with --json. */
  line(text: string, stream: "stdout" | "stderr" = "stdout"): void {
    if (this.#mode === "json" && stream === "stdout") return;
    if (this.#mode === "tty" && this.#live) this.#io.stdout("\r\x1b[2K");
    this.#io[stream](`${text}\n`);
    if (this.#mode === "tty" && this.#live) this.#io.stdout(this.#live);
  }

  /** A warning, once per message (the data's check and the run's plan may find the same one). */
  warning(message: string, where?: string): void {
    if (this.#warned.has(message)) return;
    this.#warned.add(message);
    this.line(`warning: ${where ? `${where}: ` : ""}${message}`, this.#mode === "json" ? "stderr" : "stdout");
  }

  #draw(text: string, force: boolean): void {
    const now = Date.now();
    if (!force && now - this.#lastDraw < 100) return;
    this.#lastDraw = now;
    this.#live = text;
    this.#io.stdout(`\r\x1b[2K${text}`);
  }

  /** Ends the redrawn line so that what follows starts on a line of its own. */
  #settle(): void {
    if (this.#live) this.#io.stdout("\n");
    this.#live = "";
  }

  loading(event: LoadProgressEvent): void {
    if (this.#mode === "json") return;
    if (event.type === "download-progress") {
      if (this.#mode === "tty") {
        const total = event.totalBytes === undefined ? "" : `/${megabytes(event.totalBytes)}`;
        const done = event.totalBytes !== undefined && event.loadedBytes >= event.totalBytes;
        this.#draw(
          `downloading ${event.file}  ${megabytes(event.loadedBytes)}${total}`.slice(0, this.#columns - 1),
          done,
        );
      } else if (!this.#files.has(event.file)) {
        this.#files.add(event.file);
        this.line(`downloading ${event.file}`);
      }
      return;
    }
    this.#settle();
    if (event.type === "load-start")
      this.line(
        `loading ${event.path}: ${count(event.tensors)} tensors, ${megabytes(event.bytes)}${this.#quantization === "nf4" ? ", quantizing to NF4" : ""}`,
      );
    else this.line(`loaded in ${event.seconds.toFixed(1)} s`);
  }

  event(event: TrainingRunEvent): void {
    if (this.#mode === "json") {
      const printable = event.type === "run-failed" ? { ...event, error: errorJSON(event.error) } : event;
      this.#io.stdout(`${JSON.stringify(printable)}\n`);
      return;
    }
    switch (event.type) {
      case "run-start":
        for (const line of planLines(event.plan)) this.line(line);
        for (const warning of event.plan.warnings) this.warning(warning);
        return;
      case "step":
        if (this.#mode === "tty") this.#draw(progressBar(event, this.#columns), true);
        else this.line(stepLine(event));
        return;
      case "eval": {
        const { loss, perplexity, tokenAccuracy } = event;
        // The CLI's runs always have validation data at their eval points.
        if (loss === undefined || perplexity === undefined || tokenAccuracy === undefined) return;
        this.line(
          `eval at step ${event.step}: loss ${loss.toFixed(4)}, perplexity ${perplexity.toFixed(2)}, token accuracy ${(100 * tokenAccuracy).toFixed(1)}%`,
        );
        return;
      }
      case "checkpoint-saved":
        this.line(`checkpoint at step ${event.step}: ${event.path}`);
        return;
      case "run-end":
      case "run-aborted":
        this.#settle();
        for (const line of summaryLines(event.summary, event.type === "run-aborted")) this.line(line);
        return;
      case "run-failed":
        // The error itself is printed once, by the caller, on stderr.
        this.#settle();
        return;
    }
  }

  close(): void {
    if (this.#mode === "tty") this.#settle();
  }
}

// ── the command ────────────────────────────────────────────────────────────────────────────────

const isAbort = (error: unknown) => error instanceof Error && error.name === "AbortError";

/** Runs `tunekit train`: 0 when the run ends, 130 when Ctrl-C stopped it, 1 when it failed. */
export async function runTrain(argv: string[], io: CliIO): Promise<number> {
  const command = parseTrainArgs(argv, io);
  if (command === "help") {
    io.stdout(`Usage: tunekit${TRAIN_USAGE.slice(1)}\n`);
    return 0;
  }
  const display = new Display(io, command);
  const controller = new AbortController();
  let interrupts = 0;
  let training = false;
  const subscribe = io.onInterrupt ?? processIO.onInterrupt;
  const unsubscribe = subscribe?.(() => {
    interrupts++;
    if (interrupts === 1) {
      display.line(
        training
          ? `stopping after the current step; its checkpoint goes to ${command.options.outputDir} (Ctrl-C again to quit now)`
          : "stopping (Ctrl-C again to quit now)",
        "stderr",
      );
      controller.abort();
    } else {
      display.close();
      unsubscribe?.();
      (io.exit ?? processIO.exit)?.(130);
    }
  });
  const { signal } = controller;
  try {
    const readOptions = {
      ...(command.format ? { format: command.format } : {}),
      ...(command.maxRecordBytes ? { maxRecordBytes: command.maxRecordBytes } : {}),
    };
    const data = await Dataset.fromFile(command.data, readOptions);
    // A resume that contradicts its checkpoint, or names none, fails before anything loads.
    if (command.options.resumeFrom !== undefined) {
      const dir = await modelFolder(command.model, { weights: false, signal });
      const config = await readModelConfig(join(dir, "config.json"));
      await LocalTrainer.checkResume(command.options, { name: command.model, config });
    }
    let validation: TrainOptions["validation"];
    if (typeof command.validation === "string")
      validation = await Dataset.fromFile(command.validation, readOptions);
    else validation = command.validation;
    // Stop on bad data before a model is downloaded or loaded; the trainer reads the same records.
    const { maxSeqLength, epochs } = command.options;
    const validator = new Validator({
      target: "local",
      model: command.model,
      ...(maxSeqLength !== undefined ? { contextLimit: maxSeqLength } : {}),
      ...(epochs !== undefined ? { epochs } : {}),
    });
    const files: Array<[string, Dataset]> = [[command.data, data]];
    if (validation instanceof Dataset) files.push([validation.source, validation]);
    for (const [file, dataset] of files) {
      const report = await validator.validate(dataset, { signal });
      if (!report.ok) {
        io.stderr(`${formatReport(file, report)}\n`);
        return 1;
      }
      const untrained = report.counts.no_trained_tokens ?? 0;
      if (report.valid > 0 && untrained >= report.valid) {
        const first = report.warnings.find((entry) => entry.code === "no_trained_tokens");
        const limit = maxSeqLength !== undefined ? ` within --max-seq-length ${maxSeqLength}` : "";
        io.stderr(
          `tunekit: nothing to train on in ${file}: no example has a trained token${limit}` +
            `${first ? ` (the first: ${formatLocation(first)}: ${first.message})` : ""}\n`,
        );
        return 1;
      }
      for (const entry of report.warnings.slice(0, SHOWN_WARNINGS))
        display.warning(entry.message, formatLocation(entry));
      const more = report.warnings.length + report.omitted.warnings - SHOWN_WARNINGS;
      if (more > 0)
        display.warning(
          `${more} more; \`tunekit validate ${quoteArg(file)} --target local --model ${quoteArg(command.model)}\` lists them`,
          file,
        );
    }
    signal.throwIfAborted();

    const trainer = await LocalTrainer.load(command.model, {
      quantization: command.quantization,
      ...(command.computeDtype !== undefined ? { computeDtype: command.computeDtype } : {}),
      ...(command.threads !== undefined ? { threads: command.threads } : {}),
      signal,
      onProgress: (event) => display.loading(event),
    });
    try {
      if (command.computeDtype === "bf16" && trainer.engine.computeDtype !== "bf16")
        display.warning(BF16_UNAVAILABLE);
      signal.throwIfAborted();
      training = true;
      const run = trainer.train(data, {
        ...command.options,
        ...(validation !== undefined ? { validation } : {}),
        signal,
      });
      let aborted = false;
      for await (const event of run) {
        display.event(event);
        if (event.type === "run-aborted") aborted = true;
      }
      await run.done();
      return aborted ? 130 : 0;
    } finally {
      trainer.dispose();
    }
  } catch (error) {
    if (signal.aborted && isAbort(error)) {
      display.line("stopped before training began", "stderr");
      return 130;
    }
    throw error;
  } finally {
    unsubscribe?.();
    display.close();
  }
}
