/**
 * `tunekit eval`: targets from specs, metrics from names or a config file, the Evaluator's report on
 * the terminal, as JSON or saved, and gates that set the exit code. No evaluation logic lives here.
 */
import { readFile } from "node:fs/promises";
import { z } from "zod";
import type { ChatTarget } from "../core/chat.js";
import { ValidationError } from "../core/errors.js";
import type { LocalModel } from "../engine/local-model.js";
import type { Evaluator, EvaluatorOptions } from "../eval/evaluator.js";
import type { Metric } from "../eval/types.js";
import { integerFlag, parseFlags, quantizationFlag } from "./args.js";
import { type CliIO, UsageError } from "./io.js";

export const EVAL_USAGE = `  eval --cases FILE --target NAME=SPEC [--target NAME=SPEC …] [--metric NAME …] [--config FILE]
       [--report FILE.html|.md|.json] [--json] [--gate 'METRIC:tuned>base[:MARGIN]' …]
       [--max-tokens N] [--concurrency N] [--quantization nf4|none] [--no-cache]
      Evaluate targets on test cases and compare every pair with paired statistics. SPEC is
      local:PATH[+ADAPTER_DIR], openai:MODEL, together:MODEL, fireworks:MODEL or compat:MODEL@URL (an
      OpenAI-compatible server). Exit 0, 1 when a gate fails, 2 on a usage error.`;

/** Metrics built from their common options only, by name. */
const OPTION_ONLY = [
  "jsonValid",
  "levenshtein",
  "repetition",
  "rouge1",
  "rouge2",
  "rougeL",
  "bleu",
  "chrf",
  "answerLoss",
] as const;
/** Every metric the CLI can build (jsonSchema and custom take code: use the API). */
const METRIC_NAMES = [
  "contains",
  "icontains",
  "containsAll",
  "containsAny",
  "regex",
  "exactMatch",
  "topicCoverage",
  "lengthScore",
  "judge",
  ...OPTION_ONLY,
];

const metricEntry = z.union([
  z.string(),
  z
    .object({
      name: z.string(),
      label: z.string().optional(),
      threshold: z.number().min(0).max(1).optional(),
      value: z.string().optional(),
      values: z.array(z.string()).min(1).optional(),
      pattern: z.string().optional(),
      flags: z.string().optional(),
      ignoreCase: z.boolean().optional(),
      topics: z.array(z.string()).optional(),
      min: z.number().positive().optional(),
      max: z.number().positive().optional(),
      target: z.string().optional(),
      rubric: z.string().optional(),
      attempts: z.number().int().min(1).optional(),
    })
    .strict(),
]);

const configSchema = z
  .object({
    metrics: z.array(metricEntry).optional(),
    pairwise: z
      .array(
        z
          .object({
            target: z.string(),
            rubric: z.string(),
            name: z.string().optional(),
            attempts: z.number().int().min(1).optional(),
          })
          .strict(),
      )
      .optional(),
    generation: z
      .object({
        maxTokens: z.number().int().min(1).optional(),
        temperature: z.number().min(0).optional(),
        topP: z.number().gt(0).max(1).optional(),
        stop: z.array(z.string()).optional(),
        seed: z.number().int().optional(),
      })
      .strict()
      .optional(),
    concurrency: z.number().int().min(1).optional(),
    batchSize: z.number().int().min(1).optional(),
    attempts: z.number().int().min(1).optional(),
    resamples: z.number().int().min(1).optional(),
    seed: z.number().int().optional(),
    cache: z.union([z.literal(false), z.object({ dir: z.string() }).strict()]).optional(),
  })
  .strict();

type Config = z.infer<typeof configSchema>;

interface Gate {
  metric: string;
  better: string;
  than: string;
  margin: number;
}

function parseGate(text: string): Gate {
  const match = /^([^:]+):([^:>]+)>([^:>]+)(?::([\d.]+))?$/.exec(text);
  if (!match) {
    // `--gate contains:tuned>base` unquoted: the shell took `>base` for a redirect.
    const hint = text.includes(">") ? "" : " (quote it: a shell reads > as a redirect)";
    throw new UsageError(
      `--gate takes 'METRIC:BETTER>THAN[:MARGIN]' (e.g. 'contains:tuned>base'), got "${text}"${hint}`,
      "eval",
    );
  }
  const margin = match[4] === undefined ? 0 : Number(match[4]);
  if (!(margin >= 0))
    throw new UsageError(`--gate: the margin must be a number >= 0, got "${match[4]}"`, "eval");
  return { metric: match[1] as string, better: match[2] as string, than: match[3] as string, margin };
}

/** Reads and checks `--config`; every fault names the file and the path in it. */
async function readConfig(file: string): Promise<Config> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, "utf8"));
  } catch (error) {
    const reason =
      (error as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (error as Error).message;
    throw new ValidationError("invalid_argument", reason, { location: { file } });
  }
  const parsed = configSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ValidationError("invalid_argument", `${issue?.path.join(".") || "(root)"}: ${issue?.message}`, {
      location: { file },
    });
  }
  return parsed.data;
}

/** The targets of the run, each built once; local specs on the same model share one load. */
export class Targets {
  readonly #io: CliIO;
  readonly #quantization: "nf4" | "none";
  readonly #models = new Map<string, Promise<LocalModel>>();
  readonly loaded: LocalModel[] = [];

  /** `command`: whose usage a wrong spec points to. */
  readonly #command: string;

  constructor(io: CliIO, quantization: "nf4" | "none", command = "eval") {
    this.#io = io;
    this.#quantization = quantization;
    this.#command = command;
  }

  async build(spec: string): Promise<ChatTarget> {
    const colon = spec.indexOf(":");
    const kind = colon === -1 ? "" : spec.slice(0, colon);
    const rest = spec.slice(colon + 1);
    if (kind === "local") {
      const [path, adapter] = rest.split("+") as [string, string | undefined];
      if (!path)
        throw new UsageError(`--target: local needs a model, as local:PATH[+ADAPTER_DIR]`, this.#command);
      // One load of each model serves its base and all its adapters, held side by side.
      let pending = this.#models.get(path);
      if (!pending) {
        pending = (async () => {
          const { LocalModel } = await import("../engine/local-model.js");
          const model = await LocalModel.load(path, { quantization: this.#quantization });
          this.loaded.push(model);
          return model;
        })();
        this.#models.set(path, pending);
      }
      const model = await pending;
      return adapter === undefined ? model.view({ adapter: false }) : model.openAdapter(adapter);
    }
    if (kind === "openai" || kind === "compat") {
      const { openai } = await import("../providers/openai/index.js");
      if (kind === "compat") {
        const at = rest.lastIndexOf("@");
        if (at <= 0) throw new UsageError(`--target: compat takes MODEL@URL, got "${spec}"`, this.#command);
        return openai({ baseURL: rest.slice(at + 1) }).chat(rest.slice(0, at));
      }
      const apiKey = this.#io.env.OPENAI_API_KEY;
      const baseURL = this.#io.env.OPENAI_BASE_URL;
      if (!apiKey && !baseURL)
        throw new UsageError("no OpenAI API key: set OPENAI_API_KEY in the environment", this.#command);
      return openai({ ...(apiKey ? { apiKey } : {}), ...(baseURL ? { baseURL } : {}) }).chat(rest);
    }
    if (kind === "together") {
      const { together } = await import("../providers/together/index.js");
      const apiKey = this.#io.env.TOGETHER_API_KEY;
      const baseURL = this.#io.env.TOGETHER_BASE_URL;
      if (!apiKey && !baseURL)
        throw new UsageError("no Together API key: set TOGETHER_API_KEY in the environment", this.#command);
      return together({ ...(apiKey ? { apiKey } : {}), ...(baseURL ? { baseURL } : {}) }).chat(rest);
    }
    if (kind === "fireworks") {
      const { fireworks } = await import("../providers/fireworks/index.js");
      const apiKey = this.#io.env.FIREWORKS_API_KEY;
      const inferenceBaseURL = this.#io.env.FIREWORKS_INFERENCE_URL;
      if (!apiKey && !inferenceBaseURL)
        throw new UsageError("no Fireworks API key: set FIREWORKS_API_KEY in the environment", this.#command);
      return fireworks({
        ...(apiKey ? { apiKey } : {}),
        ...(inferenceBaseURL ? { inferenceBaseURL } : {}),
      }).chat(rest);
    }
    throw new UsageError(
      `--target: unknown kind in "${spec}"; use local:PATH[+ADAPTER], openai:MODEL, together:MODEL, fireworks:MODEL or compat:MODEL@URL`,
      this.#command,
    );
  }

  dispose(): void {
    for (const model of this.loaded) model.dispose();
  }
}

async function buildMetrics(
  names: readonly string[],
  config: Config,
  target: (spec: string) => Promise<ChatTarget>,
): Promise<Metric[]> {
  const { metrics } = await import("../eval/metrics/index.js");
  const entries = [...(config.metrics ?? []), ...names];
  if (entries.length === 0) return [metrics.contains(), metrics.rougeL()];
  const built: Metric[] = [];
  for (const entry of entries) {
    const spec = typeof entry === "string" ? { name: entry } : entry;
    const common = {
      ...(spec.label !== undefined ? { name: spec.label } : {}),
      ...(spec.threshold !== undefined ? { threshold: spec.threshold } : {}),
    };
    const need = <T>(value: T | undefined, field: string): T => {
      if (value === undefined)
        throw new UsageError(`metric ${spec.name} needs "${field}" (in --config)`, "eval");
      return value;
    };
    switch (spec.name) {
      case "contains":
        built.push(metrics.contains(spec.value, common));
        break;
      case "icontains":
        built.push(metrics.icontains(spec.value, common));
        break;
      case "containsAll":
        built.push(metrics.containsAll(need(spec.values, "values"), common));
        break;
      case "containsAny":
        built.push(metrics.containsAny(need(spec.values, "values"), common));
        break;
      case "regex":
        built.push(
          metrics.regex(need(spec.pattern, "pattern"), {
            ...common,
            ...(spec.flags ? { flags: spec.flags } : {}),
          }),
        );
        break;
      case "exactMatch":
        built.push(metrics.exactMatch({ ...common, ...(spec.ignoreCase ? { ignoreCase: true } : {}) }));
        break;
      case "topicCoverage":
        built.push(metrics.topicCoverage(spec.topics, common));
        break;
      case "lengthScore":
        built.push(
          metrics.lengthScore({
            ...common,
            ...(spec.min !== undefined ? { min: spec.min } : {}),
            ...(spec.max !== undefined ? { max: spec.max } : {}),
          }),
        );
        break;
      case "judge":
        built.push(
          metrics.judge({
            ...common,
            target: await target(need(spec.target, "target")),
            rubric: need(spec.rubric, "rubric"),
            ...(spec.attempts !== undefined ? { attempts: spec.attempts } : {}),
          }),
        );
        break;
      default: {
        const name = spec.name as (typeof OPTION_ONLY)[number];
        if (!OPTION_ONLY.includes(name))
          throw new UsageError(`unknown metric "${spec.name}"; use ${METRIC_NAMES.join(", ")}`, "eval");
        built.push(metrics[name](common));
      }
    }
  }
  return built;
}

/** Runs `tunekit eval`. */
export async function runEval(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals, help } = parseFlags("eval", argv, {
    cases: { type: "string" },
    target: { type: "multiple" },
    metric: { type: "multiple" },
    config: { type: "string" },
    report: { type: "string" },
    json: { type: "boolean" },
    gate: { type: "multiple" },
    "max-tokens": { type: "string" },
    concurrency: { type: "string" },
    quantization: { type: "string" },
    "no-cache": { type: "boolean" },
  });
  if (help) {
    io.stdout(`Usage: tunekit${EVAL_USAGE.slice(1)}\n`);
    return 0;
  }
  if (positionals.length > 0)
    throw new UsageError(`eval takes no file arguments; use --cases ${positionals[0]}`, "eval");
  if (!values.cases) throw new UsageError("eval needs --cases FILE", "eval");
  const specs = (values.target ?? []).map((entry) => {
    const equals = entry.indexOf("=");
    if (equals <= 0)
      throw new UsageError(
        `--target takes NAME=SPEC (e.g. tuned=local:./model+./adapter), got "${entry}"`,
        "eval",
      );
    return { name: entry.slice(0, equals), spec: entry.slice(equals + 1) };
  });
  if (specs.length === 0) throw new UsageError("eval needs at least one --target NAME=SPEC", "eval");
  const names = new Set<string>();
  for (const { name } of specs) {
    if (names.has(name)) throw new UsageError(`--target: "${name}" is given twice`, "eval");
    names.add(name);
  }
  const gates = (values.gate ?? []).map(parseGate);
  const quantization = quantizationFlag(values.quantization, "eval", "none");
  const maxTokens = integerFlag(values["max-tokens"], "--max-tokens", { command: "eval" });
  const concurrency = integerFlag(values.concurrency, "--concurrency", { command: "eval" });
  if (values.report && !/\.(html?|md|json)$/i.test(values.report))
    throw new UsageError(`--report: use a .html, .md or .json file, got "${values.report}"`, "eval");
  const config = values.config ? await readConfig(values.config) : {};

  const targets = new Targets(io, quantization);
  try {
    const built: Record<string, ChatTarget> = {};
    for (const { name, spec } of specs) built[name] = await targets.build(spec);
    const metricList = await buildMetrics(values.metric ?? [], config, (spec) => targets.build(spec));
    const { Evaluator } = await import("../eval/evaluator.js");
    const { pairwiseJudge } = await import("../eval/metrics/judge.js");
    const pairwise = [];
    for (const entry of config.pairwise ?? [])
      pairwise.push(
        pairwiseJudge({
          target: await targets.build(entry.target),
          rubric: entry.rubric,
          ...(entry.name !== undefined ? { name: entry.name } : {}),
          ...(entry.attempts !== undefined ? { attempts: entry.attempts } : {}),
        }),
      );
    const options: EvaluatorOptions = {
      metrics: metricList,
      ...(pairwise.length > 0 ? { pairwise } : {}),
      ...(config.generation || maxTokens
        ? { generation: { ...config.generation, ...(maxTokens ? { maxTokens } : {}) } }
        : {}),
      ...((concurrency ?? config.concurrency) ? { concurrency: concurrency ?? config.concurrency } : {}),
      ...(config.batchSize ? { batchSize: config.batchSize } : {}),
      ...(config.attempts ? { attempts: config.attempts } : {}),
      ...(config.resamples ? { resamples: config.resamples } : {}),
      ...(config.seed !== undefined ? { seed: config.seed } : {}),
      ...(values["no-cache"]
        ? { cache: false as const }
        : config.cache !== undefined
          ? { cache: config.cache }
          : {}),
    } as EvaluatorOptions;
    const evaluator: Evaluator = new Evaluator(options);
    const run = evaluator.compare(built, values.cases);
    const total = { cases: 0, done: 0 };
    for await (const event of run) {
      if (event.type === "run-start") total.cases = event.cases * event.targets.length;
      if (event.type === "case-end" && io.isTTY && !values.json) {
        total.done++;
        const width = 30;
        const filled = Math.round((width * total.done) / Math.max(1, total.cases));
        io.stdout(
          `\r\x1b[2K[${"█".repeat(filled)}${"░".repeat(width - filled)}] ${total.done}/${total.cases} outputs`,
        );
      }
    }
    if (io.isTTY && !values.json) io.stdout("\r\x1b[2K");
    const report = await run.done();
    if (values.report) await report.save(values.report);
    const verdicts = gates.map((gate) => report.gate(gate));
    if (values.json) io.stdout(`${JSON.stringify({ ...report.toJSON(), gates: verdicts }, null, 2)}\n`);
    else {
      io.stdout(`${report.toMarkdown().split("\n## Cases")[0]?.trimEnd()}\n`);
      if (values.report) io.stdout(`\nreport: ${values.report}\n`);
      for (const verdict of verdicts) io.stdout(`gate ${verdict.reason}\n`);
    }
    return verdicts.every((verdict) => verdict.pass) ? 0 : 1;
  } finally {
    targets.dispose();
  }
}
