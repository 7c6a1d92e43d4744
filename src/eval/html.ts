/**
 * The report as one self-contained HTML page: inline styles and one inline script, no external
 * scripts, styles or fonts, nothing fetched. A chart of each metric's means with their intervals per
 * target (SVG), the comparisons with p-values, and every case side by side with a word-level diff of
 * the first two targets' outputs, sortable by the largest score difference.
 */
import type { ReportData } from "./report.js";
import { isApplicable } from "./types.js";

const escapeHtml = (text: string) =>
  text.replace(
    /[&<>"']/g,
    (char) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[char] as string,
  );
const fixed = (value: number, digits = 3) => (Number.isFinite(value) ? value.toFixed(digits) : "–");
const COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"];

/** A word-level diff of a against b: `<del>` for words only in a, `<ins>` for words only in b. */
export function wordDiff(a: string, b: string): string {
  // Words with the whitespace after them: an inserted or deleted word keeps its space.
  const words = (text: string) => text.match(/^\s+|\S+\s*/g) ?? [];
  const x = words(a);
  const y = words(b);
  if (x.length * y.length > 4_000_000) return escapeHtml(b); // too long to diff in a page
  const table = Array.from({ length: x.length + 1 }, () => new Uint32Array(y.length + 1));
  for (let i = x.length - 1; i >= 0; i--)
    for (let j = y.length - 1; j >= 0; j--)
      (table[i] as Uint32Array)[j] =
        x[i] === y[j]
          ? ((table[i + 1] as Uint32Array)[j + 1] as number) + 1
          : Math.max((table[i + 1] as Uint32Array)[j] as number, (table[i] as Uint32Array)[j + 1] as number);
  const parts: string[] = [];
  let i = 0;
  let j = 0;
  while (i < x.length || j < y.length) {
    if (i < x.length && j < y.length && x[i] === y[j]) {
      parts.push(escapeHtml(x[i] as string));
      i++;
      j++;
    } else if (
      j < y.length &&
      (i === x.length ||
        ((table[i] as Uint32Array)[j + 1] as number) >= ((table[i + 1] as Uint32Array)[j] as number))
    ) {
      parts.push(`<ins>${escapeHtml(y[j] as string)}</ins>`);
      j++;
    } else {
      parts.push(`<del>${escapeHtml(x[i] as string)}</del>`);
      i++;
    }
  }
  return parts.join("");
}

function chart(data: ReportData): string {
  const { targets, metrics, summary } = data;
  const rowHeight = 18;
  const label = 150;
  const width = 520;
  const rows = metrics.flatMap((metric) =>
    targets.map((target) => ({ metric: metric.name, target, entry: summary[metric.name]?.[target] })),
  );
  const height = rows.length * rowHeight + metrics.length * 10 + 30;
  const x = (value: number) => label + value * (width - label - 20);
  const parts = [
    `<svg id="chart" role="img" aria-label="mean score per metric and target, with 95% intervals" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}">`,
  ];
  let y = 10;
  for (const metric of metrics) {
    parts.push(`<text x="0" y="${y + 12}" class="metric">${escapeHtml(metric.name)}</text>`);
    targets.forEach((target, index) => {
      const entry = summary[metric.name]?.[target];
      const color = COLORS[index % COLORS.length] as string;
      if (entry && entry.n > 0) {
        parts.push(
          `<rect class="bar" x="${label}" y="${y + 3}" width="${Math.max(0, x(entry.mean) - label).toFixed(1)}" height="${rowHeight - 6}" fill="${color}"><title>${escapeHtml(target)}: ${fixed(entry.mean)} [${fixed(entry.ci95[0])}, ${fixed(entry.ci95[1])}], n ${entry.n}</title></rect>`,
          `<line x1="${x(entry.ci95[0]).toFixed(1)}" x2="${x(entry.ci95[1]).toFixed(1)}" y1="${y + rowHeight / 2}" y2="${y + rowHeight / 2}" stroke="#222" stroke-width="1.5"/>`,
        );
      }
      parts.push(
        `<text x="${label - 6}" y="${y + 13}" text-anchor="end" class="target">${escapeHtml(target)}</text>`,
      );
      y += rowHeight;
    });
    y += 10;
  }
  parts.push(`<line x1="${label}" x2="${x(1)}" y1="${y}" y2="${y}" stroke="#999"/>`);
  for (const tick of [0, 0.25, 0.5, 0.75, 1])
    parts.push(`<text x="${x(tick)}" y="${y + 14}" text-anchor="middle" class="tick">${tick}</text>`);
  parts.push("</svg>");
  return parts.join("");
}

export function reportHTML(data: ReportData): string {
  const { targets, metrics, cases, comparisons, warnings, summary } = data;
  const [first, second] = targets;
  const lead = metrics[0]?.name;
  const summaryRows = metrics
    .map(
      (metric) =>
        `<tr><th>${escapeHtml(metric.name)}</th>${targets
          .map((target) => {
            const entry = summary[metric.name]?.[target];
            return entry && entry.n > 0
              ? `<td>${fixed(entry.mean)} <span class="ci">[${fixed(entry.ci95[0])}, ${fixed(entry.ci95[1])}]</span><br><span class="ci">pass ${(100 * entry.passRate).toFixed(0)} %, n ${entry.n}${entry.corpus !== undefined ? `, corpus ${entry.corpus.toFixed(2)}` : ""}</span></td>`
              : "<td>n/a</td>";
          })
          .join("")}</tr>`,
    )
    .join("");
  const comparisonRows = comparisons
    .map(
      (entry) =>
        `<tr><td>${escapeHtml(entry.b)} − ${escapeHtml(entry.a)}</td><td>${escapeHtml(entry.metric)}</td><td>${fixed(entry.meanDifference)}</td><td>[${fixed(entry.ci95[0])}, ${fixed(entry.ci95[1])}]</td><td>${entry.wins} / ${entry.ties} / ${entry.losses}</td><td class="${entry.pValue < 0.05 ? "significant" : ""}">${fixed(entry.pValue, 4)}</td><td>${entry.test}</td></tr>`,
    )
    .join("");
  const caseRows = cases
    .map((entry) => {
      const scoreOf = (target: string | undefined) => {
        const outcome = target && lead ? entry.outputs[target]?.scores[lead] : undefined;
        return isApplicable(outcome) ? outcome.score : 0;
      };
      const difference = second !== undefined ? scoreOf(second) - scoreOf(first) : 0;
      const cells = targets
        .map((target, index) => {
          const output = entry.outputs[target];
          if (!output) return "<td></td>";
          if (output.error) return `<td class="error">${escapeHtml(output.error)}</td>`;
          const text =
            index === 1 && first !== undefined
              ? wordDiff(entry.outputs[first]?.text ?? "", output.text)
              : escapeHtml(output.text);
          const scores = Object.entries(output.scores)
            .map(
              ([name, outcome]) =>
                `${escapeHtml(name)} ${isApplicable(outcome) ? fixed(outcome.score, 2) : "n/a"}`,
            )
            .join(" · ");
          return `<td><div class="out">${text}</div><div class="ci">${scores}</div></td>`;
        })
        .join("");
      const input = entry.input
        .map(
          (message) =>
            `${message.role}: ${typeof message.content === "string" ? message.content : JSON.stringify(message.content)}`,
        )
        .join("\n");
      return `<tr data-difference="${Math.abs(difference)}" data-order="${cases.indexOf(entry)}"><td>${escapeHtml(entry.id)}</td><td><div class="out">${escapeHtml(input)}</div></td><td><div class="out">${escapeHtml(entry.expected ?? "")}</div></td>${cells}</tr>`;
    })
    .join("");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>tunekit evaluation</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:8px 0 24px}th,td{border:1px solid #ddd;padding:6px 8px;vertical-align:top;text-align:left}
th{background:#f5f5f5}.ci{color:#666;font-size:12px}.out{white-space:pre-wrap;max-width:420px}
.warning{background:#fff4e5;border-left:4px solid #f28e2b;padding:6px 10px;margin:4px 0}
.error{color:#b00020}.significant{font-weight:bold}ins{background:#d4f7d4;text-decoration:none}del{background:#fbd5d5}
svg text{font-size:12px}svg .metric{font-weight:bold}button{font:inherit;margin-bottom:8px}
</style></head><body>
<h1>Evaluation</h1>
<p>${cases.length} cases; targets: ${targets.map(escape).join(", ")}.</p>
${warnings.map((warning) => `<div class="warning">${escapeHtml(warning)}</div>`).join("\n")}
<h2>Metrics</h2>
${chart(data)}
<table id="summary"><tr><th>metric</th>${targets.map((target) => `<th>${escapeHtml(target)}</th>`).join("")}</tr>${summaryRows}</table>
${comparisons.length > 0 ? `<h2>Comparisons</h2><table id="comparisons"><tr><th>b − a</th><th>metric</th><th>mean difference</th><th>95 % interval</th><th>wins / ties / losses</th><th>p</th><th>test</th></tr>${comparisonRows}</table>` : ""}
<h2>Cases</h2>
${second !== undefined ? `<button id="sort" type="button">Sort by the largest ${escapeHtml(lead ?? "")} difference</button>` : ""}
<table id="cases"><thead><tr><th>case</th><th>input</th><th>expected</th>${targets.map((target, index) => `<th>${escapeHtml(target)}${index === 1 ? ` <span class="ci">(diff against ${escapeHtml(first ?? "")})</span>` : ""}</th>`).join("")}</tr></thead><tbody>${caseRows}</tbody></table>
<script>
(function () {
  var button = document.getElementById("sort");
  if (!button) return;
  var sorted = false;
  button.addEventListener("click", function () {
    var body = document.querySelector("#cases tbody");
    var rows = Array.prototype.slice.call(body.rows);
    sorted = !sorted;
    rows.sort(function (a, b) {
      return sorted ? Number(b.dataset.difference) - Number(a.dataset.difference) : Number(a.dataset.order) - Number(b.dataset.order);
    });
    rows.forEach(function (row) { body.appendChild(row); });
    button.textContent = sorted ? "Original order" : ${JSON.stringify(`Sort by the largest ${lead ?? ""} difference`).replace(/</g, "\\u003c")};
  });
})();
</script>
</body></html>
`;
}
