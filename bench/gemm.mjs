#!/usr/bin/env node
// The engine's matrix products on a training step's own shapes (SmolLM2-135M, 4 × 256 tokens: the
// projections, the MLP and the head), forward (y = x Wᵀ) and input-gradient (dx = dy W) forms, with
// BF16 weights as the engine stores them (decoded into fp32 panels as it goes, or packed as bf16 pairs
// with computeDtype "bf16"), beside PyTorch 1.13's
// fp32 torch.mm in the same run (OpenBLAS, whose own threads use every core whatever torch's thread
// count: measured, OPENBLAS_NUM_THREADS=1 halves it), and the CPU's limit.
//
//   npm run build && node bench/gemm.mjs [--repeat N] [--python PATH] [--no-baseline]
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { measurePeak } from "./peak.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({
  options: {
    repeat: { type: "string", default: "5" },
    python: { type: "string", default: "/usr/bin/python3" },
    "no-baseline": { type: "boolean", default: false },
  },
});
const repeat = Number(values.repeat);
const threads = Math.min(2, availableParallelism());
const shapes = [
  ["q, o: 1024 × 576 × 576", 1024, 576, 576],
  ["k, v: 1024 × 192 × 576", 1024, 192, 576],
  ["gate, up: 1024 × 1536 × 576", 1024, 1536, 576],
  ["down: 1024 × 576 × 1536", 1024, 576, 1536],
  ["head: 1024 × 49152 × 576", 1024, 49152, 576],
];

const random = (count) => Float32Array.from({ length: count }, () => Math.random() - 0.5);
const bf16 = (source) => Uint16Array.from(new Uint32Array(source.buffer), (word) => word >>> 16);

let torch;
if (!values["no-baseline"]) {
  if (!existsSync(values.python)) {
    console.error(
      `no Python at ${values.python}: the baseline needs PyTorch (apt-get install python3-torch)`,
    );
    process.exit(1);
  }
  const script = `
import json, sys, time, torch
shapes = json.loads(sys.argv[1]); repeat = int(sys.argv[2]); out = {}
for name, m, n, k in shapes:
    best = {}
    for form in ("forward", "input-gradient"):
        a = torch.rand(m, k if form == "forward" else n) - 0.5
        w = torch.rand(n, k) - 0.5
        fastest = None
        for threads in (1, ${threads}):
            torch.set_num_threads(threads)
            for run in range(repeat + 1):
                t = time.perf_counter()
                y = torch.mm(a, w.t()) if form == "forward" else torch.mm(a, w)
                seconds = time.perf_counter() - t
                if run > 0 and (fastest is None or seconds < fastest[0]): fastest = (seconds, threads)
        best[form] = fastest
    out[name] = best
print(json.dumps({"torch": torch.__version__, "results": out}))
`;
  console.log("baseline: PyTorch torch.mm…");
  const python = spawnSync(values.python, ["-c", script, JSON.stringify(shapes), String(repeat)], {
    encoding: "utf8",
    maxBuffer: 1 << 24,
  });
  if (python.status !== 0) {
    console.error(python.stderr);
    process.exit(1);
  }
  torch = JSON.parse(python.stdout.trim().split("\n").at(-1));
}

const peak = measurePeak({ threads });
// The engine's addon itself (its matmul entry runs the blocked products alone): the local build, else
// the prebuilt binary, as the package loads it.
const native = createRequire(import.meta.url)(
  [
    join(root, "native/build/Release/tunekit.node"),
    join(root, "prebuilds", `${process.platform}-${process.arch}`, "tunekit.node"),
  ].find((path) => existsSync(path)),
);
console.log(
  `\nthis CPU's limit (bench/peak.mjs, ${threads} threads): fp32 ${peak?.fp32.all.toFixed(0) ?? "?"} GFLOP/s${peak?.bf16 ? `, bf16 ${peak.bf16.all.toFixed(0)}` : ""}`,
);
console.log(
  `tunekit: ${threads} threads, its best kernels, BF16 weights; fp32 and bf16 compute (computeDtype); the fastest of ${repeat} runs\n`,
);
console.log(
  "| shape (m × n × k) | form | tunekit fp32 | share of fp32 limit | tunekit bf16 | share of bf16 limit | PyTorch fp32 (torch threads) | fp32 ratio | bf16 ratio |",
);
console.log("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
const percent = (rate, limit) => (limit ? `${((100 * rate) / limit).toFixed(0)} %` : "");
for (const [name, m, n, k] of shapes) {
  const w = bf16(random(n * k));
  for (const form of ["forward", "input-gradient"]) {
    const a = random(m * (form === "forward" ? k : n));
    const work = 2 * m * n * k;
    const fp32 = native.matmul(form, m, n, k, a, w, "", threads, repeat, "f32").seconds;
    const half = native.matmul(form, m, n, k, a, w, "", threads, repeat, "bf16");
    const bf16Seconds = half.compute === "bf16" ? half.seconds : undefined;
    const theirs = torch?.results[name]?.[form];
    const baseline = theirs ? `${(work / theirs[0] / 1e9).toFixed(0)} GFLOP/s (${theirs[1]})` : "";
    const ratio = (seconds) => (theirs && seconds ? `${(theirs[0] / seconds).toFixed(2)}×` : "");
    const rate = (seconds) => (seconds ? work / seconds / 1e9 : undefined);
    console.log(
      `| ${name} | ${form} | ${rate(fp32).toFixed(0)} GFLOP/s | ${percent(rate(fp32), peak?.fp32.all)} | ${bf16Seconds ? `${rate(bf16Seconds).toFixed(0)} GFLOP/s` : "(no AVX-512 BF16)"} | ${bf16Seconds ? percent(rate(bf16Seconds), peak?.bf16?.all) : ""} | ${baseline} | ${ratio(fp32)} | ${ratio(bf16Seconds)} |`,
    );
  }
}
console.log("\nratio = PyTorch's time divided by tunekit's: above 1 is faster than PyTorch.");
