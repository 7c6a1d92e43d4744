import { plural } from "../core/plural.js";
import type { Distribution } from "../core/stats.js";
import type { DatasetStats } from "../data/dataset.js";
import type { Problem } from "../data/problem.js";
import type { ValidationReport, ValidationStats } from "../validate/report.js";

export { plural } from "../core/plural.js";

const number = (value: number, digits = 0) =>
  value.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });

function where(entry: Problem): string {
  const parts = [entry.line !== undefined ? `line ${entry.line}` : entry.file ? "file" : "data"];
  if (entry.path) parts.push(entry.path);
  return parts.join(" ");
}

function table(rows: Array<[string, Distribution]>): string[] {
  const header = ["", "min", "max", "mean", "median", "p10", "p90"];
  const body = rows.map(([name, d]) =>
    [name, d.min, d.max, d.mean, d.median, d.p10, d.p90].map((cell) =>
      typeof cell === "number" ? number(cell, 1) : cell,
    ),
  );
  const widths = header.map((_, column) =>
    Math.max(...[header, ...body].map((row) => String(row[column]).length)),
  );
  return [header, ...body].map((row) =>
    row
      .map((cell, column) =>
        column === 0 ? String(cell).padEnd(widths[0] ?? 0) : String(cell).padStart(widths[column] ?? 0),
      )
      .join("  "),
  );
}

export function formatStats(stats: ValidationStats): string[] {
  const approximate =
    stats.approximate > 0
      ? [
          `  token counts approximate for ${plural(stats.approximate, "example")} (a run of over 1,024 characters without a space is counted in pieces; counting stops past the limit)`,
        ]
      : [];
  return [
    `  missing a system message: ${stats.missingSystem}   missing a user message: ${stats.missingUser}   over the token limit: ${stats.overLimit}`,
    ...approximate,
    ...table([
      ["messages", stats.messages],
      ["total tokens", stats.totalTokens],
      ["assistant tokens", stats.assistantTokens],
    ]).map((line) => `  ${line}`),
  ];
}

/** The human-readable validation report. */
export function formatReport(file: string, report: ValidationReport): string {
  const lines: string[] = [];
  const limit = report.contextLimit ? `, limit ${number(report.contextLimit)} tokens` : "";
  lines.push(
    `${file}: ${report.target}${report.model ? ` ${report.model}` : ""} (${report.tokenizer}${limit})`,
  );
  const errorCount = report.errors.length + report.omitted.errors;
  const warningCount = report.warnings.length + report.omitted.warnings;
  lines.push(
    `${plural(report.examples, "example")}, ${report.valid.toLocaleString("en-US")} valid, ${plural(errorCount, "error")}, ${plural(warningCount, "warning")}`,
  );
  for (const [title, list, omitted] of [
    ["Errors", report.errors, report.omitted.errors],
    ["Warnings", report.warnings, report.omitted.warnings],
  ] as const) {
    if (list.length === 0) continue;
    lines.push("", `${title}:`);
    for (const entry of list) lines.push(`  ${where(entry)}: ${entry.message} [${entry.code}]`);
    if (omitted > 0) lines.push(`  … and ${omitted} more`);
  }
  if (report.notices.length > 0) {
    lines.push("", "Notices:");
    for (const entry of report.notices) lines.push(`  ${entry.severity}: ${entry.message} [${entry.code}]`);
  }
  const counts = Object.entries(report.counts);
  if (counts.length > 0) {
    lines.push("", `By code: ${counts.map(([code, count]) => `${code} ${count}`).join(", ")}`);
  }
  lines.push("", "Statistics of the valid examples:", ...formatStats(report.stats));
  const { cost } = report;
  const price =
    cost.estimatedUSD !== undefined
      ? ` ≈ $${number(cost.estimatedUSD, 2)} at $${number(cost.pricePerMillion ?? 0, 2)}/1M tokens`
      : "";
  lines.push(
    "",
    `Cost: ${number(cost.billedTokens)} tokens an epoch × ${plural(cost.epochs, "epoch")} = ${number(cost.totalTokens)} training tokens${price}`,
    "",
    report.ok
      ? "OK: no errors."
      : `FAILED: fix the errors above before ${report.target === "local" ? "training" : "uploading"}.`,
  );
  return lines.join("\n");
}

export function formatDatasetStats(file: string, stats: DatasetStats): string {
  const kinds =
    Object.entries(stats.kinds)
      .map(([kind, count]) => `${kind} ${count}`)
      .join(", ") || "none";
  const formats =
    Object.entries(stats.formats)
      .map(([format, count]) => `${format} ${count}`)
      .join(", ") || "none";
  return [
    `${file}: ${plural(stats.examples, "example")}, ${plural(stats.invalid, "invalid record")}`,
    `  kinds: ${kinds}`,
    `  formats: ${formats}`,
    // Messages per example are in the token table that follows.
    ...table([["characters", stats.characters]]).map((line) => `  ${line}`),
  ].join("\n");
}
