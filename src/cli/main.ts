import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { formatLocation, TunekitError } from "../core/errors.js";
import { Dataset } from "../data/dataset.js";
import { FORMAT_NAMES, type FormatName, isFormatName } from "../data/formats/index.js";
import { type ValidationTarget, Validator } from "../validate/validator.js";
import { bytesFlag, type FlagValues, integerFlag, parseFlags, quoteArg, suggestion } from "./args.js";
import { EVAL_USAGE, runEval } from "./eval.js";
import { EXPORT_USAGE, runExport } from "./export.js";
import { formatDatasetStats, formatReport, formatStats, plural } from "./format.js";
import { type CliIO, processIO, UsageError } from "./io.js";
import { JOBS_USAGE, runJobs } from "./jobs.js";
import { MIGRATE_USAGE, runMigrate } from "./migrate.js";
import { OPENAI_USAGE, runOpenAI } from "./openai.js";
import { RECORD_USAGE, runRecord } from "./record.js";
import { runServe, SERVE_USAGE } from "./serve.js";
import { runTrain, TRAIN_USAGE } from "./train.js";

const COMMAND_USAGE = {
  validate: `  validate FILE [--target openai|together|fireworks|nebius|local] [--model ID] [--format F]
                [--json] [--max-problems N] [--max-record-bytes SIZE]
      Check a training file against a provider's rules; exit 1 when it has errors.
      With --target local, --model is a model folder or Hugging Face Hub id (its tokenizer counts).`,
  convert: `  convert IN OUT --to FORMAT [--format F] [--skip-unfit] [--max-record-bytes SIZE]
      Write IN in FORMAT (${FORMAT_NAMES.join(", ")}): JSON Lines when OUT ends in .jsonl,
      a JSON array when it ends in .json. --skip-unfit skips the examples FORMAT cannot hold.`,
  stats: `  stats FILE [--target openai|together|fireworks|nebius|local] [--model ID] [--format F]
             [--json] [--max-record-bytes SIZE]
      Print counts and token statistics; exit 1 when no record is valid.`,
};

const USAGE = `Usage: tunekit <command> [options]

Commands:
${COMMAND_USAGE.validate}
${COMMAND_USAGE.convert}
${COMMAND_USAGE.stats}

${JOBS_USAGE}
${TRAIN_USAGE}
${EVAL_USAGE}
${SERVE_USAGE}
${EXPORT_USAGE}
${OPENAI_USAGE}
${RECORD_USAGE}
${MIGRATE_USAGE}

Files: .jsonl, .json, .csv, .parquet (and .gz of the text ones). Records over --max-record-bytes
(default 16 MiB) are reported and skipped. Exit codes: 0 done, 1 bad data or a failed job, 2 a wrong
command, flag or file name, 130 stopped with Ctrl-C. tunekit --version prints the version.`;

const COMMANDS = [
  "validate",
  "convert",
  "stats",
  "jobs",
  "train",
  "eval",
  "serve",
  "export",
  "openai",
  "record",
  "migrate",
  "help",
];

/** The usage text of one command, or of all. */
export function usageOf(command: string | undefined): string {
  if (command === "jobs") return `Usage: tunekit${JOBS_USAGE.slice(1)}`;
  if (command === "train") return `Usage: tunekit${TRAIN_USAGE.slice(1)}`;
  if (command === "eval") return `Usage: tunekit${EVAL_USAGE.slice(1)}`;
  if (command === "serve") return `Usage: tunekit${SERVE_USAGE.slice(1)}`;
  if (command === "export") return `Usage: tunekit${EXPORT_USAGE.slice(1)}`;
  if (command === "openai") return `Usage: tunekit${OPENAI_USAGE.slice(1)}`;
  if (command === "record") return `Usage: tunekit${RECORD_USAGE.slice(1)}`;
  if (command === "migrate") return `Usage: tunekit${MIGRATE_USAGE.slice(1)}`;
  if (command && command in COMMAND_USAGE)
    return `Usage: tunekit${COMMAND_USAGE[command as keyof typeof COMMAND_USAGE].slice(1)}`;
  return USAGE;
}

/** This package's version, from its package.json (two folders up from src/cli and dist/cli). */
function version(): string {
  try {
    const file = fileURLToPath(new URL("../../package.json", import.meta.url));
    return (JSON.parse(readFileSync(file, "utf8")) as { version: string }).version;
  } catch {
    return "unknown";
  }
}

function formatOption(value: string | undefined, flag = "--format"): FormatName | undefined {
  if (value === undefined) return undefined;
  if (!isFormatName(value))
    throw new UsageError(`${flag}: unknown format "${value}"; use one of ${FORMAT_NAMES.join(", ")}`);
  return value;
}

function targetOption(value: string | undefined): ValidationTarget | undefined {
  if (
    value === undefined ||
    value === "openai" ||
    value === "together" ||
    value === "fireworks" ||
    value === "nebius" ||
    value === "local"
  )
    return value;
  throw new UsageError(
    `--target: unknown target "${value}"; use openai, together, fireworks, nebius or local`,
  );
}

function positionalCount(positionals: string[], count: number, command: string): void {
  if (positionals.length !== count) {
    const names = count === 1 ? "FILE" : "IN OUT";
    const got = positionals.length === 0 ? "none" : positionals.map((entry) => `"${entry}"`).join(", ");
    throw new UsageError(`${command} takes ${names}, got ${got}`, command);
  }
}

/** The flags that `validate` and `stats` were given, as a command line for a hint that runs. */
function validateHint(file: string, values: { target?: string; model?: string; format?: string }): string {
  const parts = ["tunekit validate", quoteArg(file)];
  if (values.target) parts.push("--target", values.target);
  if (values.model) parts.push("--model", quoteArg(values.model));
  if (values.format) parts.push("--format", values.format);
  return parts.join(" ");
}

const FLAGS = {
  target: { type: "string" },
  model: { type: "string" },
  format: { type: "string" },
  to: { type: "string" },
  json: { type: "boolean" },
  "max-problems": { type: "string" },
  "max-record-bytes": { type: "string" },
  "skip-unfit": { type: "boolean" },
} as const;

/** The flags each data command takes. */
const DATA_FLAGS: Record<string, Array<keyof typeof FLAGS>> = {
  validate: ["target", "model", "format", "json", "max-problems", "max-record-bytes"],
  convert: ["to", "format", "skip-unfit", "max-record-bytes"],
  stats: ["target", "model", "format", "json", "max-record-bytes"],
};

async function main(argv: string[], io: CliIO): Promise<number> {
  const [command, ...rest] = argv;
  if (command === "--version" || command === "-v") {
    io.stdout(`${version()}\n`);
    return 0;
  }
  if (!command || command === "--help" || command === "-h" || command === "help") {
    const topic = command === "help" ? rest[0] : undefined;
    io.stdout(`${usageOf(topic)}\n`);
    return command ? 0 : 2;
  }
  if (command === "jobs") return runJobs(rest, io);
  if (command === "train") return runTrain(rest, io);
  if (command === "eval") return runEval(rest, io);
  if (command === "serve") return runServe(rest, io);
  if (command === "export") return runExport(rest, io);
  if (command === "openai") return runOpenAI(rest, io);
  if (command === "record") return runRecord(rest, io);
  if (command === "migrate") return runMigrate(rest, io);
  const allowed = DATA_FLAGS[command];
  if (!allowed) throw new UsageError(`unknown command "${command}"${suggestion(command, COMMANDS, "")}`);
  const spec = Object.fromEntries(allowed.map((name) => [name, FLAGS[name]]));
  const { values, positionals, help } = parseFlags(command, rest, spec) as {
    values: FlagValues<typeof FLAGS>;
    positionals: string[];
    help: boolean;
  };
  if (help) {
    io.stdout(`${usageOf(command)}\n`);
    return 0;
  }
  const out = (text: string) => io.stdout(`${text}\n`);
  const format = formatOption(values.format);
  const maxRecordBytes = bytesFlag(values["max-record-bytes"], "--max-record-bytes", command);
  const readOptions = { ...(format ? { format } : {}), ...(maxRecordBytes ? { maxRecordBytes } : {}) };
  const validatorOptions = () => {
    const target = targetOption(values.target);
    const maxProblems = integerFlag(values["max-problems"], "--max-problems", { command });
    if (target === "local" && !values.model)
      throw new UsageError(
        "--target local needs --model PATH|HUB_ID (the model whose tokenizer counts the tokens)",
        command,
      );
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
      const to = formatOption(values.to, "--to");
      if (!to) throw new UsageError("convert needs --to FORMAT", command);
      const [input, output] = positionals as [string, string];
      const kind = outputKind(output);
      const dataset = await Dataset.fromFile(input, readOptions);
      const options = { format: to, ...(values["skip-unfit"] ? { skipUnfit: true } : {}) };
      const result =
        kind === "json" ? await dataset.toJSON(output, options) : await dataset.toJSONL(output, options);
      const { count, first } = result.skipped;
      out(
        `wrote ${plural(result.examples, "example")} to ${output} as ${to}${kind === "json" ? " (a JSON array)" : ""}`,
      );
      if (count > 0) {
        out(`skipped ${plural(count, "example")} that ${to} cannot hold; the first:`);
        for (const entry of first) out(`  ${formatLocation(entry)}: ${entry.message}`);
      }
      if (result.examples === 0) {
        io.stderr(`tunekit: ${input} holds no example that ${to} can hold\n`);
        return 1;
      }
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
      // Problems of the data itself (not of a provider's rules): what stats could not count.
      const unread = report.errors.filter((entry) => DATA_CODES.has(entry.code));
      if (values.json)
        out(JSON.stringify({ ...counts, tokens: report.stats, tokenizer: report.tokenizer }, null, 2));
      else if (counts.examples > 0)
        out([formatDatasetStats(file, counts), ...formatStats(report.stats)].join("\n"));
      if (counts.invalid > 0 || counts.examples === 0) {
        const shown = unread
          .slice(0, 3)
          .map((entry) => `  ${formatLocation(entry)}: ${entry.message} [${entry.code}]`);
        const lines =
          counts.examples === 0
            ? [`tunekit: ${file} has no valid record`, ...shown]
            : [`${plural(counts.invalid, "record")} could not be read; the first:`, ...shown];
        lines.push(`  \`${validateHint(file, values)}\` lists them all`);
        (counts.examples === 0 ? io.stderr : io.stdout)(`${lines.join("\n")}\n`);
      }
      return counts.examples === 0 ? 1 : 0;
    }
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

/** Problem codes that mean a record could not be read at all (as opposed to a provider's rule). */
const DATA_CODES = new Set([
  "invalid_json",
  "invalid_utf8",
  "too_deep",
  "record_too_long",
  "empty_file",
  "invalid_csv",
  "invalid_parquet",
  "data_type",
  "unknown_format",
  "mixed_formats",
  "invalid_record",
]);

/** `.jsonl` / `.ndjson` → JSON Lines, `.json` → a JSON array; any other name is refused. */
function outputKind(output: string): "jsonl" | "json" {
  const lower = output.toLowerCase();
  if (lower.endsWith(".jsonl") || lower.endsWith(".ndjson")) return "jsonl";
  if (lower.endsWith(".json")) return "json";
  const extension = /\.[^./\\]+$/.exec(output)?.[0];
  throw new UsageError(
    `cannot write ${output}: convert writes JSON Lines (.jsonl) or a JSON array (.json), not ${extension ?? "a file without an extension"}`,
    "convert",
  );
}

/**
 * Runs the CLI on `argv` (without `node tunekit`) and returns the exit code: 0 success, 1 errors in the
 * data or a failed job, 2 a usage error. Never throws.
 */
export async function run(argv: string[], io: CliIO = processIO): Promise<number> {
  try {
    return await main(argv, io);
  } catch (error) {
    if (error instanceof UsageError) {
      const command = error.command ?? (COMMANDS.includes(argv[0] ?? "") ? argv[0] : undefined);
      io.stderr(`tunekit: ${error.message}\nSee \`tunekit ${command ? `${command} ` : ""}--help\`.\n`);
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
