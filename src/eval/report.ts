/**
 * What an evaluation found: every case's outputs and scores, per metric and target the mean with a
 * seeded 95 % bootstrap interval, per pair of targets the paired difference with its interval and a
 * paired test, and warnings. `gate` turns a comparison into a CI verdict; `save` writes JSON,
 * Markdown or a self-contained HTML page.
 */
import { extname } from "node:path";
import type { ChatUsage } from "../core/chat.js";
import { ValidationError } from "../core/errors.js";
import { writeFileAtomically } from "../core/files.js";
import type { ChatMessage } from "../data/example.js";
import { reportHTML } from "./html.js";
import type { MetricOutcome } from "./types.js";

export interface TargetOutput {
  text: string;
  scores: Record<string, MetricOutcome>;
  /** Why the target (or a metric) failed on this case. */
  error?: string;
  latencyMs: number;
  usage?: ChatUsage;
  /** Read from the cache, not generated. */
  cached?: boolean;
}

export interface CaseReport {
  id: string;
  input: ChatMessage[];
  expected?: string;
  outputs: Record<string, TargetOutput>;
  /**
   * With `answerLoss({ perToken: true })`, per pair of targets: each expected token's loss under a
   * less its loss under b (positive: b made the token more likely).
   */
  tokenChanges?: Array<{
    metric: string;
    a: string;
    b: string;
    tokens: Array<{ token: string; change: number }>;
  }>;
  /** The pairwise judges' verdicts: `preference` > 0 when b's answer is the better one. */
  judgements?: Array<{ judge: string; a: string; b: string; preference: number; reasons: [string, string] }>;
}

export interface MetricSummary {
  /** Mean score over the cases it applies to. */
  mean: number;
  ci95: [number, number];
  passRate: number;
  n: number;
  /** Corpus BLEU or chrF (0–100) over the run, for the metrics that have one. */
  corpus?: number;
}

export interface Comparison {
  a: string;
  b: string;
  metric: string;
  /** Mean of b − a over the cases both have a score for: positive when b is better. */
  meanDifference: number;
  /** Paired-bootstrap 95 % interval of the mean difference. */
  ci95: [number, number];
  wins: number;
  ties: number;
  losses: number;
  /** Two-sided. */
  pValue: number;
  test: "sign" | "wilcoxon";
  n: number;
}

export interface ReportData {
  targets: string[];
  metrics: Array<{ name: string; threshold: number; kind: "pass" | "score" }>;
  cases: CaseReport[];
  summary: Record<string, Record<string, MetricSummary>>;
  comparisons: Comparison[];
  warnings: string[];
}

export interface GateOptions {
  metric: string;
  /** The target that should be better (default "tuned"). */
  better?: string;
  /** The one it is compared with (default "base"). */
  than?: string;
  /** 0: better must be ahead; > 0: a non-inferiority check, b may trail by at most this much. */
  margin?: number;
}

const fixed = (value: number, digits = 3) => (Number.isFinite(value) ? value.toFixed(digits) : "–");

export class EvaluationReport {
  readonly data: ReportData;

  constructor(data: ReportData) {
    this.data = data;
  }

  get warnings(): readonly string[] {
    return this.data.warnings;
  }

  toJSON(): ReportData {
    return this.data;
  }

  /** The comparison of `metric` with b − a as asked, whichever order the report holds it in. */
  comparison(metric: string, a: string, b: string): Comparison | undefined {
    const direct = this.data.comparisons.find(
      (entry) => entry.metric === metric && entry.a === a && entry.b === b,
    );
    if (direct) return direct;
    const reverse = this.data.comparisons.find(
      (entry) => entry.metric === metric && entry.a === b && entry.b === a,
    );
    if (!reverse) return undefined;
    return {
      ...reverse,
      a,
      b,
      meanDifference: -reverse.meanDifference,
      ci95: [-reverse.ci95[1], -reverse.ci95[0]],
      wins: reverse.losses,
      losses: reverse.wins,
    };
  }

  /**
   * Passes when the lower end of the paired interval of better − than is above −margin: with margin
   * 0, `better` is ahead; with a margin, it is no worse than that (catching forgetting).
   */
  gate(options: GateOptions): { pass: boolean; reason: string } {
    const better = options.better ?? "tuned";
    const than = options.than ?? "base";
    const margin = options.margin ?? 0;
    if (!(margin >= 0))
      throw new ValidationError("invalid_argument", `gate: margin must be >= 0, got ${margin}`);
    const found = this.comparison(options.metric, than, better);
    if (!found)
      throw new ValidationError(
        "invalid_argument",
        `gate: no comparison of ${options.metric} between ${than} and ${better} (targets: ${this.data.targets.join(", ")}; metrics: ${this.data.metrics.map((metric) => metric.name).join(", ")})`,
      );
    const [low, high] = found.ci95;
    const pass = low > -margin;
    const range = `${better} − ${than} on ${options.metric}: ${fixed(found.meanDifference)} [${fixed(low)}, ${fixed(high)}], p = ${fixed(found.pValue, 4)} (${found.test}, n ${found.n})`;
    const wanted = margin === 0 ? `above 0` : `above −${margin}`;
    return {
      pass,
      reason: `${pass ? "passed" : "failed"}: ${range}; the interval's lower end must be ${wanted}`,
    };
  }

  toMarkdown(): string {
    const { targets, metrics, summary, comparisons, warnings, cases } = this.data;
    const lines = ["# Evaluation", "", `${cases.length} cases; targets: ${targets.join(", ")}.`, ""];
    if (warnings.length > 0) lines.push(...warnings.map((warning) => `> **Warning:** ${warning}`), "");
    lines.push(
      "## Metrics",
      "",
      `| metric | ${targets.join(" | ")} |`,
      `| --- | ${targets.map(() => "---:").join(" | ")} |`,
    );
    for (const metric of metrics) {
      const cells = targets.map((target) => {
        const entry = summary[metric.name]?.[target];
        if (!entry || entry.n === 0) return "n/a";
        const corpus = entry.corpus !== undefined ? `; corpus ${entry.corpus.toFixed(2)}` : "";
        return `${fixed(entry.mean)} [${fixed(entry.ci95[0])}, ${fixed(entry.ci95[1])}]; pass ${(100 * entry.passRate).toFixed(0)} %${corpus}`;
      });
      lines.push(`| ${metric.name} | ${cells.join(" | ")} |`);
    }
    if (comparisons.length > 0) {
      lines.push(
        "",
        "## Comparisons",
        "",
        "| b − a | metric | mean difference | 95 % interval | wins / ties / losses | p | test |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
      );
      for (const entry of comparisons)
        lines.push(
          `| ${entry.b} − ${entry.a} | ${entry.metric} | ${fixed(entry.meanDifference)} | [${fixed(entry.ci95[0])}, ${fixed(entry.ci95[1])}] | ${entry.wins} / ${entry.ties} / ${entry.losses} | ${fixed(entry.pValue, 4)} | ${entry.test} |`,
        );
    }
    lines.push("", "## Cases", "");
    const cell = (text: string) => text.replace(/\|/g, "\\|").replace(/\n/g, "<br>");
    lines.push(
      `| case | expected | ${targets.join(" | ")} |`,
      `| --- | --- | ${targets.map(() => "---").join(" | ")} |`,
    );
    for (const entry of cases) {
      const outputs = targets.map((target) => {
        const output = entry.outputs[target];
        return output?.error ? `**error:** ${cell(output.error)}` : cell(output?.text ?? "");
      });
      lines.push(`| ${cell(entry.id)} | ${cell(entry.expected ?? "")} | ${outputs.join(" | ")} |`);
    }
    return `${lines.join("\n")}\n`;
  }

  toHTML(): string {
    return reportHTML(this.data);
  }

  /** Writes `.json`, `.md` or `.html` (by the extension), atomically. */
  async save(path: string): Promise<void> {
    const extension = extname(path).toLowerCase();
    const content =
      extension === ".json"
        ? `${JSON.stringify(this.data, null, 2)}\n`
        : extension === ".md"
          ? this.toMarkdown()
          : extension === ".html" || extension === ".htm"
            ? this.toHTML()
            : undefined;
    if (content === undefined)
      throw new ValidationError(
        "invalid_argument",
        `cannot save a report as "${extension || path}": use .json, .md or .html`,
        {
          location: { file: path },
        },
      );
    await writeFileAtomically(path, content);
  }
}
