import type { FineTuneJobEvent } from "../jobs/events.js";
import { FineTuneJob } from "../jobs/fine-tune-job.js";
import type { FineTuningProvider, Hyperparameters, JobInfo, JobMetrics } from "../providers/spec.js";
import { InvalidDatasetError } from "../validate/validator.js";
import { integerFlag, numberFlag, parseFlags, suggestion } from "./args.js";
import { formatReport } from "./format.js";
import { type CliIO, UsageError } from "./io.js";

export const JOBS_USAGE = `  jobs create --provider openai|together|fireworks|nebius|local --model ID --training FILE
              [--validation FILE] [--epochs N] [--batch-size N] [--learning-rate X]
              [--learning-rate-multiplier X] [--suffix S] [--seed N] [--watch] [--json]
              [--api-key KEY] [--account ID] [--output DIR]
      Validate, upload and start a fine-tuning job. Keys come from OPENAI_API_KEY / TOGETHER_API_KEY /
      FIREWORKS_API_KEY / NEBIUS_API_KEY (or --api-key), Fireworks' account from FIREWORKS_ACCOUNT_ID
      (or --account); --provider local trains here, keeping its jobs in --output DIR.
  jobs list|get ID|events ID|watch ID|cancel ID --provider openai|together|fireworks|nebius|local
                [--json] [--output DIR] [--limit N]
      List jobs, show one, print its events, follow it live, or cancel it.
  jobs download ID --provider together|fireworks|nebius --dir DIR [--step N] [--merged]
      Bring a job's trained adapter home (its last checkpoint, or step N), checked as a PEFT adapter;
      --merged brings the base model with the adapter merged in (Together).`;

const PROVIDERS = {
  openai: { key: "OPENAI_API_KEY", baseURL: "OPENAI_BASE_URL", label: "OpenAI" },
  together: { key: "TOGETHER_API_KEY", baseURL: "TOGETHER_BASE_URL", label: "Together" },
  fireworks: { key: "FIREWORKS_API_KEY", baseURL: "FIREWORKS_BASE_URL", label: "Fireworks" },
  nebius: { key: "NEBIUS_API_KEY", baseURL: "NEBIUS_BASE_URL", label: "Nebius" },
} as const;

const ACTIONS = ["create", "list", "get", "events", "watch", "cancel", "download"];

/** The provider a name stands for; adapters load on demand so one provider's code never loads another's. */
export async function providerNamed(
  name: string | undefined,
  io: CliIO,
  flags: { "api-key"?: string; output?: string; account?: string },
  command = "jobs",
): Promise<FineTuningProvider> {
  if (name === "local") {
    if (!flags.output)
      throw new UsageError("--provider local needs --output DIR (the folder its jobs are kept in)", command);
    const { local } = await import("../providers/local/index.js");
    return local({ outputDir: flags.output });
  }
  if (name === "openai" || name === "together" || name === "fireworks" || name === "nebius") {
    const { key, baseURL: baseVariable, label } = PROVIDERS[name];
    const apiKey = flags["api-key"] ?? io.env[key];
    const baseURL = io.env[baseVariable];
    if (!apiKey && !baseURL)
      throw new UsageError(
        `no ${label} API key: set ${key} in the environment, or pass --api-key KEY`,
        command,
      );
    const options = { ...(baseURL ? { baseURL } : {}), ...(apiKey ? { apiKey } : {}) };
    if (name === "openai") {
      const { openai } = await import("../providers/openai/index.js");
      return openai(options);
    }
    if (name === "nebius") {
      const { nebius } = await import("../providers/nebius/index.js");
      return nebius(options);
    }
    if (name === "fireworks") {
      const accountId = flags.account ?? io.env.FIREWORKS_ACCOUNT_ID;
      if (!accountId)
        throw new UsageError(
          "no Fireworks account: set FIREWORKS_ACCOUNT_ID in the environment, or pass --account ID",
          command,
        );
      const { fireworks } = await import("../providers/fireworks/index.js");
      return fireworks({ ...options, accountId });
    }
    const { together } = await import("../providers/together/index.js");
    return together(options);
  }
  throw new UsageError(
    name
      ? `unknown provider "${name}"; use openai, together, fireworks, nebius or local`
      : "--provider openai|together|fireworks|nebius|local is required",
    command,
  );
}

const clock = (ms: number) => new Date(ms).toISOString().slice(11, 19);

/** `running  step 120/300  train loss 0.873  00:03:12`: one line of progress. */
function progressLine(job: JobInfo, metrics: JobMetrics | undefined, elapsed: number): string {
  const parts = [job.status.padEnd(10)];
  if (metrics) {
    parts.push(`step ${metrics.step}${metrics.totalSteps ? `/${metrics.totalSteps}` : ""}`);
    if (metrics.trainLoss !== undefined) parts.push(`train loss ${metrics.trainLoss.toFixed(4)}`);
    if (metrics.validLoss !== undefined) parts.push(`valid loss ${metrics.validLoss.toFixed(4)}`);
  }
  parts.push(clock(elapsed));
  return parts.join("  ");
}

function describeEvent(event: FineTuneJobEvent): string {
  if (event.type === "message") return `${event.createdAt.toISOString()} ${event.level} ${event.message}`;
  if (event.type === "checkpoint-created") {
    const { step, model } = event.checkpoint;
    return `checkpoint at step ${step}${model ? `: ${model}` : ""}`;
  }
  return event.type;
}

/** Follows a job to its end with a live progress line; exit 0 when it succeeds. */
async function watch(job: FineTuneJob, io: CliIO, pollInterval: number | undefined): Promise<number> {
  const started = job.info.createdAt.getTime();
  let metrics: JobMetrics | undefined;
  let last = "";
  for await (const event of job.events(pollInterval ? { pollInterval } : {})) {
    // Metrics may come from two sources (Together: step counts on events, losses apart): keep what
    // the newest lacks from the one before.
    if (event.type === "metrics") metrics = { ...metrics, ...event.metrics };
    if (!io.isTTY && (event.type === "message" || event.type === "checkpoint-created")) {
      io.stdout(`${describeEvent(event)}\n`);
    }
    const line = progressLine(job.info, metrics, Math.max(0, Date.now() - started));
    if (line === last) continue;
    last = line;
    io.stdout(io.isTTY ? `\r\x1b[2K${line}` : `${line}\n`);
  }
  if (io.isTTY) io.stdout("\n");
  try {
    const result = await job.wait();
    io.stdout(`succeeded: ${result.fineTunedModel ?? "(no model name given)"}\n`);
    return 0;
  } catch (error) {
    io.stderr(`tunekit: ${(error as Error).message}\n`);
    return 1;
  }
}

export async function runJobs(argv: string[], io: CliIO): Promise<number> {
  const [action, ...rest] = argv;
  if (action === undefined || action === "--help" || action === "-h") {
    io.stdout(`Usage: tunekit${JOBS_USAGE.slice(1)}\n`);
    return action === undefined ? 2 : 0;
  }
  const { values, positionals, help } = parseFlags(`jobs ${action}`, rest, {
    provider: { type: "string" },
    model: { type: "string" },
    training: { type: "string" },
    validation: { type: "string" },
    epochs: { type: "string" },
    "batch-size": { type: "string" },
    "learning-rate": { type: "string" },
    "learning-rate-multiplier": { type: "string" },
    suffix: { type: "string" },
    seed: { type: "string" },
    limit: { type: "string" },
    "poll-interval": { type: "string" },
    watch: { type: "boolean" },
    json: { type: "boolean" },
    "api-key": { type: "string" },
    account: { type: "string" },
    output: { type: "string" },
    dir: { type: "string" },
    step: { type: "string" },
    merged: { type: "boolean" },
  });
  if (help) {
    io.stdout(`Usage: tunekit${JOBS_USAGE.slice(1)}\n`);
    return 0;
  }
  const number = (value: string | undefined, flag: string) => numberFlag(value, flag, { command: "jobs" });
  const whole = (value: string | undefined, flag: string, min = 1) =>
    integerFlag(value, flag, { min, command: "jobs" });
  const provider = () => providerNamed(values.provider, io, values);
  const out = (value: unknown) =>
    io.stdout(`${typeof value === "string" ? value : JSON.stringify(value, null, 2)}\n`);
  const pollSeconds = number(values["poll-interval"], "--poll-interval");
  const pollInterval = pollSeconds === undefined ? undefined : pollSeconds * 1000;
  const jobId = () => {
    if (positionals.length !== 1) throw new UsageError(`jobs ${action} takes one job id`, "jobs");
    return positionals[0] as string;
  };
  switch (action) {
    case "create": {
      if (!values.model || !values.training)
        throw new UsageError("jobs create needs --model and --training", "jobs");
      const chosen = await provider();
      const hyperparameters: Hyperparameters = {};
      const epochs = whole(values.epochs, "--epochs");
      const batchSize = whole(values["batch-size"], "--batch-size");
      const learningRate = number(values["learning-rate"], "--learning-rate");
      const multiplier = number(values["learning-rate-multiplier"], "--learning-rate-multiplier");
      if (epochs !== undefined) hyperparameters.epochs = epochs;
      if (batchSize !== undefined) hyperparameters.batchSize = batchSize;
      if (learningRate !== undefined) hyperparameters.learningRate = learningRate;
      if (multiplier !== undefined) hyperparameters.learningRateMultiplier = multiplier;
      const seed = whole(values.seed, "--seed", 0);
      let job: FineTuneJob;
      try {
        job = await FineTuneJob.create({
          provider: chosen,
          model: values.model,
          training: values.training,
          ...(values.validation ? { validation: values.validation } : {}),
          hyperparameters,
          ...(values.suffix !== undefined ? { suffix: values.suffix } : {}),
          ...(seed !== undefined ? { seed } : {}),
          ...(pollInterval ? { pollInterval } : {}),
        });
      } catch (error) {
        if (!(error instanceof InvalidDatasetError)) throw error;
        io.stderr(`${formatReport(values.training, error.report)}\n`);
        return 1;
      }
      for (const warning of job.warnings) io.stderr(`warning: ${warning.message}\n`);
      if (values.json) out(job.info.raw);
      else out(`created ${job.id} (${job.status}) on ${chosen.name}`);
      // A local job trains in this process: it lives only while the command runs.
      if (values.watch || chosen.name === "local") return watch(job, io, pollInterval);
      job.stop();
      return 0;
    }
    case "list": {
      const limit = whole(values.limit, "--limit") ?? 20;
      const jobs: JobInfo[] = [];
      for await (const info of FineTuneJob.list(await provider())) {
        jobs.push(info);
        if (jobs.length >= limit) break;
      }
      if (values.json) out(jobs.map((info) => info.raw));
      else if (jobs.length === 0) out("no jobs");
      else
        for (const info of jobs)
          out(`${info.id}  ${info.status.padEnd(10)}  ${info.model}  ${info.fineTunedModel ?? ""}`.trimEnd());
      return 0;
    }
    case "get": {
      const info = await (await provider()).retrieveJob(jobId());
      if (values.json) out(info.raw);
      else {
        out(`${info.id}: ${info.status} (${info.rawStatus}), model ${info.model}`);
        if (info.fineTunedModel) out(`fine-tuned model: ${info.fineTunedModel}`);
        if (info.error) out(`error: ${info.error.message}${info.error.code ? ` [${info.error.code}]` : ""}`);
      }
      return 0;
    }
    case "events": {
      const events = await (await provider()).listEvents(jobId());
      if (values.json) out(events.map((event) => event.raw));
      else
        for (const event of events) out(`${event.createdAt.toISOString()} ${event.level} ${event.message}`);
      return 0;
    }
    case "watch": {
      const job = await FineTuneJob.attach(await provider(), jobId(), pollInterval ? { pollInterval } : {});
      if (values.json) {
        for await (const event of job.events()) io.stdout(`${JSON.stringify(event)}\n`);
        return job.status === "succeeded" ? 0 : 1;
      }
      return watch(job, io, pollInterval);
    }
    case "cancel": {
      const info = await (await provider()).cancelJob(jobId());
      out(`${info.id}: ${info.status} (${info.rawStatus})`);
      return 0;
    }
    case "download": {
      if (!values.dir)
        throw new UsageError("jobs download needs --dir DIR, a new folder for the adapter", "jobs");
      const target = await provider();
      if (!target.downloadAdapter)
        throw new UsageError(`--provider ${values.provider}: its jobs' weights cannot be downloaded`, "jobs");
      const step = whole(values.step, "--step", 0);
      const downloaded = await target.downloadAdapter(jobId(), values.dir, {
        ...(step !== undefined ? { step } : {}),
        ...(values.merged ? { kind: "merged" as const } : {}),
      });
      const what = downloaded.kind === "merged" ? "the merged model" : "the adapter";
      const of = downloaded.step === undefined ? "" : ` of step ${downloaded.step}`;
      out(`${downloaded.dir}: ${what}${of} (${downloaded.files.join(", ")})`);
      return 0;
    }
    default:
      throw new UsageError(
        `unknown jobs action "${action}"${suggestion(action, ACTIONS, "")}; use ${ACTIONS.join(", ")}`,
        "jobs",
      );
  }
}
