/** `tunekit openai …`: what an OpenAI organisation owns in fine-tuning, before it goes. */
import type { FineTunedModel, InventoryFile } from "../providers/openai/inventory.js";
import type { OpenAIProvider } from "../providers/openai/provider.js";
import { parseFlags } from "./args.js";
import { plural } from "./format.js";
import { type CliIO, UsageError } from "./io.js";
import { providerNamed } from "./jobs.js";

export const OPENAI_USAGE = `  openai inventory [--json] [--api-key KEY]
      Every fine-tuned model your OpenAI organisation owns, soonest shut down first: its base model,
      shutdown date and days left, the job with its hyperparameters, and whether its training and
      validation files can still be downloaded. The key comes from OPENAI_API_KEY.`;

const bytes = (count: number | undefined) =>
  count === undefined
    ? ""
    : count < 1024
      ? ` (${count} B)`
      : count < 1024 * 1024
        ? ` (${(count / 1024).toFixed(1)} KB)`
        : ` (${(count / 1024 / 1024).toFixed(1)} MB)`;

function file(entry: InventoryFile | undefined): string {
  if (!entry) return "none";
  const name = entry.filename ? ` ${entry.filename}` : "";
  return `${entry.id}${name}${bytes(entry.bytes)}: ${entry.downloadable ? "downloadable" : `not downloadable (${entry.reason ?? "no reason given"})`}`;
}

function shutdown(item: FineTunedModel): string {
  if (item.shutdownDate === undefined || item.daysLeft === undefined) return "no shutdown date known";
  const source = item.shutdownSource === "api" ? "from the API" : "from tunekit's table";
  return item.daysLeft <= 0
    ? `shut down on ${item.shutdownDate} (${source})`
    : `shuts down on ${item.shutdownDate}: ${plural(item.daysLeft, "day")} left (${source})`;
}

function job(item: FineTunedModel): string {
  if (!item.jobId) return "job: not in the jobs list";
  const h = item.hyperparameters ?? {};
  const parts = [
    h.epochs !== undefined ? `${h.epochs} epochs` : undefined,
    h.batchSize !== undefined ? `batch size ${h.batchSize}` : undefined,
    h.learningRateMultiplier !== undefined ? `learning rate × ${h.learningRateMultiplier}` : undefined,
    item.trainedTokens !== undefined
      ? `${item.trainedTokens.toLocaleString("en-US")} trained tokens`
      : undefined,
  ].filter((part) => part !== undefined);
  return `job ${item.jobId}${parts.length > 0 ? `: ${parts.join(", ")}` : ""}`;
}

/** The inventory as people read it: a block per model, soonest gone first. */
export function formatInventory(items: FineTunedModel[]): string {
  if (items.length === 0) return "No fine-tuned models in this organisation.\n";
  const lines: string[] = [];
  for (const item of items)
    lines.push(
      item.model,
      `  base ${item.baseModel}, ${shutdown(item)}`,
      `  ${job(item)}`,
      `  training file ${file(item.trainingFile)}`,
      `  validation file ${file(item.validationFile)}`,
      "",
    );
  const soon = items.filter((item) => item.daysLeft !== undefined && item.daysLeft <= 90).length;
  lines.push(
    `${plural(items.length, "fine-tuned model")}${soon > 0 ? `, ${soon} shut down within 90 days or already` : ""}.`,
    "Keep what each one does before it goes: tunekit migrate openai --model ID --to local:BASE (docs/migrate-from-openai.md).",
  );
  return `${lines.join("\n")}\n`;
}

export async function runOpenAI(argv: string[], io: CliIO): Promise<number> {
  const [action, ...rest] = argv;
  if (action === undefined || action === "--help" || action === "-h") {
    io.stdout(`Usage: tunekit${OPENAI_USAGE.slice(1)}\n`);
    return action === undefined ? 2 : 0;
  }
  if (action !== "inventory")
    throw new UsageError(`unknown action "openai ${action}"; use openai inventory`, "openai");
  const { values, positionals, help } = parseFlags("openai inventory", rest, {
    json: { type: "boolean" },
    "api-key": { type: "string" },
  });
  if (help) {
    io.stdout(`Usage: tunekit${OPENAI_USAGE.slice(1)}\n`);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError("openai inventory takes no arguments", "openai");
  const provider = (await providerNamed(
    "openai",
    io,
    { ...(values["api-key"] ? { "api-key": values["api-key"] } : {}) },
    "openai",
  )) as OpenAIProvider;
  const items = await provider.inventory();
  io.stdout(
    values.json
      ? `${JSON.stringify(
          items.map(({ job: _, ...item }) => item),
          null,
          2,
        )}\n`
      : formatInventory(items),
  );
  return 0;
}
