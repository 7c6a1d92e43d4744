import { parseArgs } from "node:util";
import { TunekitError } from "../core/errors.js";
import { Dataset } from "../data/dataset.js";
import { FORMAT_NAMES, type FormatName, isFormatName } from "../data/formats/index.js";
import { type ValidationTarget, Validator } from "../validate/validator.js";
import { formatDatasetStats, formatReport, formatStats } from "./format.js";
import { type CliIO, processIO, UsageError } from "./io.js";
import { JOBS_USAGE, runJobs } from "./jobs.js";
import { runTrain, TRAIN_USAGE } from "./train.js";

const USAGE = `Usage: tunekit <command> [options]

Commands:
  validate FILE [--target openai|together|local] [--model ID] [--format F] [--json] [--max-problems N]
      Check a training file against a provider's rules; exit 1 when it has errors.
      With --target local, --model is a model folder or Hugging Face Hub id (its tokenizer counts).
  convert IN OUT --to FORMAT [--format F]
      Write IN as JSON Lines in FORMAT (${FORMAT_NAMES.join(", ")}).
  stats FILE [--target openai|together|local] [--model ID] [--format F] [--json]
      Print counts and token statistics.

${JOBS_USAGE}
${TRAIN_USAGE}

Files: .jsonl, .json, .csv, .parquet (and .gz of the text ones).`;

function formatOption(value: string | undefined): FormatName | undefined {
  if (value === undefined) return undefined;
  if (!isFormatName(value))
    throw new UsageError(`unknown format "${value}"; use one of ${FORMAT_NAMES.join(", ")}`);
  return value;
}

function targetOption(value: string | undefined): ValidationTarget | undefined {
  if (value === undefined || value === "openai" || value === "together" || value === "local") return value;
  throw new UsageError(`unknown target "${value}"; use openai, together or local`);
}

function positionalCount(positionals: string[], count: number, command: string): void {
  if (positionals.length !== count)
    throw new UsageError(`${command} takes ${count} file argument${count > 1 ? "s" : ""}`);
}

async function main(argv: string[], io: CliIO): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === "--help" || command === "-h" || command === "help") {
    io.stdout(`${USAGE}\n`);
    return command ? 0 : 2;
  }
  if (command === "jobs") return runJobs(rest, io);
  if (command === "train") return runTrain(rest, io);
  const out = (text: string) => io.stdout(`${text}\n`);
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      target: { type: "string" },
      model: { type: "string" },
      format: { type: "string" },
      to: { type: "string" },
      json: { type: "boolean", default: false },
      "max-problems": { type: "string" },
    },
  });
  const format = formatOption(values.format);
  const readOptions = format ? { format } : {};
  const validatorOptions = () => {
    const target = targetOption(values.target);
    const maxProblems = values["max-problems"] === undefined ? undefined : Number(values["max-problems"]);
    if (maxProblems !== undefined && !(Number.isInteger(maxProblems) && maxProblems > 0)) {
      throw new UsageError("--max-problems takes a whole number > 0");
    }
    return {
      ...(target ? { target } : {}),
      ...(values.model ? { model: values.model } : {}),
      ...(maxProblems ? { maxProblems } : {}),
    };
  };

  switch (command) {
    case "validate": {
      positionalCount(positionals, 1, "validate");
      const file = positionals[0] as string;
      const report = await new Validator(validatorOptions()).validate(file, readOptions);
      out(values.json ? JSON.stringify(report, null, 2) : formatReport(file, report));
      return report.ok ? 0 : 1;
    }
    case "convert": {
      positionalCount(positionals, 2, "convert");
      const to = formatOption(values.to);
      if (!to) throw new UsageError("convert needs --to FORMAT");
      const [input, output] = positionals as [string, string];
      const dataset = await Dataset.fromFile(input, readOptions);
      const { examples } = await dataset.toJSONL(output, { format: to });
      out(`wrote ${examples} examples to ${output} as ${to}`);
      return 0;
    }
    case "stats": {
      positionalCount(positionals, 1, "stats");
      const file = positionals[0] as string;
      const dataset = await Dataset.fromFile(file, readOptions);
      const [counts, report] = await Promise.all([
        dataset.stats(),
        new Validator(validatorOptions()).validate(dataset),
      ]);
      if (values.json)
        out(JSON.stringify({ ...counts, tokens: report.stats, tokenizer: report.tokenizer }, null, 2));
      else out([formatDatasetStats(file, counts), ...formatStats(report.stats)].join("\n"));
      return 0;
    }
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

/**
 * Runs the CLI on `argv` (without `node tunekit`) and returns the exit code: 0 success, 1 errors in the
 * data or a failed job, 2 a usage error. Never throws.
 */
export async function run(argv: string[], io: CliIO = processIO): Promise<number> {
  try {
    return await main(argv, io);
  } catch (error) {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      io.stderr(`tunekit: ${(error as Error).message}\n\n${USAGE}\n`);
      return 2;
    }
    if (TunekitError.isInstance(error)) {
      io.stderr(`tunekit: ${error.message}\n`);
      // A file that cannot be opened at all is the caller's mistake, like a bad flag.
      return ["file_not_found", "not_a_file", "unknown_file_type", "invalid_argument"].includes(error.code)
        ? 2
        : 1;
    }
    io.stderr(`tunekit: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    return 1;
  }
}
