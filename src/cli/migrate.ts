/** `tunekit migrate openai`: the way off an OpenAI fine-tune, step by step (src/migrate/migrate.ts). */
import type { MigrationEvent, MigrationStep } from "../migrate/migrate.js";
import type { OpenAIProvider } from "../providers/openai/provider.js";
import { integerFlag, numberFlag, parseFlags, quantizationFlag } from "./args.js";
import { type CliIO, processIO, UsageError } from "./io.js";
import { providerNamed } from "./jobs.js";

export const MIGRATE_USAGE = `  migrate openai --model FT_ID --to local:BASE|together:BASE [--cases FILE] [--dir DIR]
                 [--step STEP …] [--epochs N] [--learning-rate X] [--quantization nf4|none]
      Replace an OpenAI fine-tune with an open model you own: find it, record its answers to the
      cases (while it still answers), get its training data back, train BASE on it (else on the
      recording), evaluate the replacement against the recording, and print the tunekit serve
      command that serves it under the old id. Each step resumes from DIR (default ./migration);
      --step runs only some (inventory, record, retrieve, train, evaluate, serve).`;

const DESCRIPTIONS: Record<MigrationStep, string> = {
  inventory: "find the fine-tune, its base model, its days left and its files",
  record: "ask it every case and keep its answers (DIR/recording.jsonl)",
  retrieve: "download its training and validation files where OpenAI lets them out",
  train: "train the open model on them (else on the recording) with FineTuneJob",
  evaluate: "the replacement against the recording, beside the base (and the old model while it answers)",
  serve: "the command that serves the replacement under the old model's id",
};

export async function runMigrate(argv: string[], io: CliIO): Promise<number> {
  const [source, ...rest] = argv;
  if (source === undefined || source === "--help" || source === "-h") {
    io.stdout(`Usage: tunekit${MIGRATE_USAGE.slice(1)}\n`);
    return source === undefined ? 2 : 0;
  }
  if (source !== "openai")
    throw new UsageError(
      `migrate takes the provider left behind: migrate openai, not "${source}"`,
      "migrate",
    );
  const { values, positionals, help } = parseFlags("migrate openai", rest, {
    model: { type: "string" },
    to: { type: "string" },
    cases: { type: "string" },
    dir: { type: "string" },
    step: { type: "multiple" },
    epochs: { type: "string" },
    "learning-rate": { type: "string" },
    quantization: { type: "string" },
    "api-key": { type: "string" },
  });
  if (help) {
    io.stdout(`Usage: tunekit${MIGRATE_USAGE.slice(1)}\n`);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`migrate openai takes no file arguments`, "migrate");
  if (!values.model?.startsWith("ft:"))
    throw new UsageError(
      "migrate openai needs --model FT_ID, a fine-tuned model id (ft:…; see tunekit openai inventory)",
      "migrate",
    );
  const to = /^(local|together):(.+)$/.exec(values.to ?? "");
  if (!to) throw new UsageError("migrate openai needs --to local:BASE or --to together:BASE", "migrate");
  const { MIGRATION_STEPS, migrateFromOpenAI } = await import("../migrate/migrate.js");
  const steps = (values.step ?? []) as MigrationStep[];
  for (const step of steps)
    if (!(MIGRATION_STEPS as readonly string[]).includes(step))
      throw new UsageError(`--step: unknown step "${step}"; use ${MIGRATION_STEPS.join(", ")}`, "migrate");
  const quantization = quantizationFlag(values.quantization, "migrate");
  const epochs = integerFlag(values.epochs, "--epochs", { command: "migrate" });
  const learningRate = numberFlag(values["learning-rate"], "--learning-rate", { command: "migrate" });
  const dir = values.dir ?? "migration";
  const openai = (await providerNamed(
    "openai",
    io,
    { ...(values["api-key"] ? { "api-key": values["api-key"] } : {}) },
    "migrate",
  )) as OpenAIProvider;
  const target =
    to[1] === "local"
      ? { provider: "local" as const, base: to[2] as string, quantization }
      : {
          provider: "together" as const,
          base: to[2] as string,
          together: await providerNamed("together", io, {}),
        };

  const planned = (steps.length > 0 ? steps : [...MIGRATION_STEPS]).filter(
    (step) => step !== "record" || values.cases !== undefined,
  );
  io.stdout(`Migration of ${values.model} to ${values.to}, kept in ${dir}:\n`);
  for (const [index, step] of planned.entries())
    io.stdout(`  ${index + 1}. ${step.padEnd(9)} ${DESCRIPTIONS[step]}\n`);
  if (values.cases === undefined)
    io.stdout("  (no --cases: nothing is recorded, and there is no evaluation)\n");
  io.stdout("\n");

  const controller = new AbortController();
  const unsubscribe = (io.onInterrupt ?? processIO.onInterrupt)?.(() => controller.abort());
  const progress = (event: MigrationEvent) => {
    if (event.type === "message") io.stdout(`  ${event.message}\n`);
    else if (event.type === "step") {
      if (event.status === "start") io.stdout(`${event.step}…\n`);
      else if (event.status === "skipped")
        io.stdout(`${event.step}: skipped (${event.detail ?? "done before"})\n`);
      else io.stdout(`  done${event.detail ? `: ${event.detail}` : ""}\n`);
    } else if (event.event.type === "failed")
      io.stderr(`  case ${event.event.caseId} failed: ${event.event.error}\n`);
  };
  try {
    const state = await migrateFromOpenAI({
      openai,
      model: values.model,
      to: target,
      ...(values.cases !== undefined ? { cases: values.cases } : {}),
      dir,
      ...(steps.length > 0 ? { steps } : {}),
      hyperparameters: {
        ...(epochs !== undefined ? { epochs } : {}),
        ...(learningRate !== undefined ? { learningRate } : {}),
      },
      signal: controller.signal,
      onProgress: progress,
    });
    if (state.serve)
      io.stdout(
        `\nServe it where the app can reach it, then change only its baseURL:\n  ${state.serve.command}\n`,
      );
    return 0;
  } catch (error) {
    if (controller.signal.aborted) {
      io.stderr(`stopped: what was done is kept in ${dir}; run the same command to go on\n`);
      return 130;
    }
    throw error;
  } finally {
    unsubscribe?.();
  }
}
