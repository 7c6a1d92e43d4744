import { execFile } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it, vi } from "vitest";
import { availableKernels } from "../src/engine/binding.js";
import { LocalModel } from "../src/engine/local-model.js";
import type { TrainingRunEvent } from "../src/local/training-run.js";
import { runCli } from "./cli-helpers.js";
import { TINY_MODELS, type TinyConfig, writeTinyModel } from "./engine/tiny-model.js";
import { chatRow, jsonl, ROOT, tempDir, tempFile } from "./helpers.js";

const rows = Array.from({ length: 12 }, (_, index) =>
  chatRow(`question ${index}`, `answer number ${index}`, "You answer in one sentence."),
);

/** A fresh tiny model, a data file and an output folder (temporary folders go after each test). */
async function setup() {
  const model = await writeTinyModel(join(await tempDir(), "tiny"), TINY_MODELS.llama as TinyConfig);
  const data = await tempFile("train.jsonl", jsonl(rows));
  const output = join(await tempDir(), "out");
  return { model, data, output };
}

/** Small and quick: 12 examples in blocks of 128 tokens, two per step. */
const quick = [
  "--quantization",
  "none",
  "--max-seq-length",
  "128",
  "--batch-size",
  "2",
  "--grad-accum",
  "1",
  "--lr",
  "0.01",
  "--logging-steps",
  "1",
  "--seed",
  "3",
];

const cli = runCli;

const events = (stdout: string): TrainingRunEvent[] =>
  stdout
    .trimEnd()
    .split("\n")
    .map((line) => JSON.parse(line) as TrainingRunEvent);

/** An interrupt source for the io: `fire()` is Ctrl-C; `subscribed` tells whether the command listens. */
function interrupts() {
  let listener: (() => void) | undefined;
  return {
    onInterrupt: (next: () => void) => {
      listener = next;
      return () => {
        listener = undefined;
      };
    },
    fire: () => listener?.(),
    get subscribed() {
      return listener !== undefined;
    },
  };
}

describe("tunekit train", () => {
  it("--json prints one event per line, run-start to run-end, and writes the adapter to --output", async () => {
    const { model, data, output } = await setup();
    const { code, stdout, stderr } = await cli([
      "train",
      "--model",
      model,
      "--data",
      data,
      "--output",
      output,
      "--epochs",
      "2",
      "--save-steps",
      "4",
      "--json",
      ...quick,
    ]);
    expect(code).toBe(0);
    // People's lines go to stderr with --json: here the data's one warning (the tiny model has no chat template).
    expect(stderr).toBe(
      `warning: the model has no chat template: conversations use tunekit's default (User: … / Assistant: …)\n`,
    );
    const all = events(stdout);
    expect(all[0]?.type).toBe("run-start");
    expect(all.at(-1)?.type).toBe("run-end");
    const start = all[0] as Extract<TrainingRunEvent, { type: "run-start" }>;
    expect(start.plan).toMatchObject({ examples: 12, epochs: 2 });
    const steps = all.filter((event) => event.type === "step");
    expect(steps.map((event) => event.step)).toEqual(
      Array.from({ length: start.plan.steps }, (_, index) => index + 1),
    );
    expect(all.filter((event) => event.type === "checkpoint-saved").length).toBeGreaterThan(0);
    const end = all.at(-1) as Extract<TrainingRunEvent, { type: "run-end" }>;
    expect(end.summary.adapterPath).toBe(join(output, "adapter"));
    expect((await readdir(join(output, "adapter"))).sort()).toEqual([
      "adapter_config.json",
      "adapter_model.safetensors",
      "chat_template.jinja",
    ]);
  });

  it("prints plain lines when stdout is not a terminal: the plan, one line per logged step, the summary", async () => {
    const { model, data, output } = await setup();
    const { code, stdout } = await cli([
      "train",
      "--model",
      model,
      "--data",
      data,
      "--output",
      output,
      "--epochs",
      "1",
      ...quick,
    ]);
    expect(code).toBe(0);
    expect(stdout).not.toContain("\r");
    const lines = stdout.trimEnd().split("\n");
    expect(lines[0]).toBe(
      `warning: the model has no chat template: conversations use tunekit's default (User: … / Assistant: …)`,
    );
    expect(lines[1]).toMatch(new RegExp(`^loading ${model}: \\d+ tensors, [\\d.]+ MB$`));
    // The plan does not repeat the warning the data's check gave.
    expect(stdout.match(/no chat template/g)).toHaveLength(1);
    expect(stdout).toMatch(
      /^plan: 12 examples, [\d,]+ tokens \([\d,]+ trained\) in \d+ blocks? → (\d+) steps over 1 epoch$/m,
    );
    const total = Number(/→ (\d+) steps/.exec(stdout)?.[1]);
    const steps = lines.filter((line) => line.startsWith("step "));
    expect(steps).toHaveLength(total);
    expect(steps[0]).toMatch(
      new RegExp(
        `^step 1/${total}  epoch [\\d.]+  loss \\d+\\.\\d{4}  lr [\\d.]+e[-+]\\d+  grad norm [\\d.]+  [\\d,]+ tok/s  ETA \\d+:\\d\\d$`,
      ),
    );
    expect(stdout).toContain(`checkpoint at step ${total}: ${join(output, `checkpoint-${total}`)}`);
    expect(stdout).toMatch(new RegExp(`^done: ${total} steps \\(1\\.00 epochs\\), final loss [\\d.]+`, "m"));
    expect(lines.at(-1)).toBe(`adapter: ${join(output, "adapter")}`);
  });

  it("--compute-dtype bf16 trains with bf16 products, and says so where the kernels have none", async () => {
    const { model, data, output } = await setup();
    const args = [
      "train",
      "--model",
      model,
      "--data",
      data,
      "--epochs",
      "1",
      ...quick,
      "--compute-dtype",
      "bf16",
    ];
    const asked = await cli([...args, "--output", output]);
    expect(asked.code, asked.stderr).toBe(0);
    await using probe = await LocalModel.load(model, { computeDtype: "bf16" });
    const hasBf16 = probe.engine.computeDtype === "bf16";
    expect(asked.stdout.includes("computing in fp32")).toBe(!hasBf16);
    if (!availableKernels().includes("avx2")) return;
    const saved = process.env.TUNEKIT_CPU;
    process.env.TUNEKIT_CPU = "avx2";
    try {
      const forced = await cli([...args, "--output", join(output, "avx2")]);
      expect(forced.code, forced.stderr).toBe(0);
      expect(forced.stdout).toContain(
        "warning: --compute-dtype bf16: this CPU has no AVX-512 BF16 (or another kernel path is forced); computing in fp32",
      );
    } finally {
      if (saved === undefined) delete process.env.TUNEKIT_CPU;
      else process.env.TUNEKIT_CPU = saved;
    }
  });

  it("redraws one progress bar with \\r on a terminal, fitted to its width, other lines above it", async () => {
    const { model, data, output } = await setup();
    const { code, stdout } = await cli(
      ["train", "--model", model, "--data", data, "--output", output, "--epochs", "1", ...quick],
      { isTTY: true, columns: 70 },
    );
    expect(code).toBe(0);
    const draws = stdout.split("\r\x1b[2K").slice(1);
    const bars = draws.filter((text) => text.startsWith("["));
    expect(bars.length).toBeGreaterThan(1);
    for (const bar of bars) {
      const line = bar.split("\n")[0] as string;
      expect(line.length).toBeLessThan(70);
      expect(line).toMatch(/^\[[█░]+\] \d+\/\d+ {2}loss \d+\.\d{4} {2}[\d,]+ tok\/s {2}ETA \d+:\d\d/);
    }
    // The bar is full at the end, and the summary starts on a line of its own.
    expect(bars.at(-1)).toMatch(/^\[█+\] (\d+)\/\1 /);
    expect(stdout).toMatch(/\n\s*done: \d+ steps/);
    // A checkpoint line clears the bar, prints, and the bar comes back below it.
    expect(draws.find((text) => text.startsWith("checkpoint"))).toMatch(
      /^checkpoint at step \d+: [^\n]+\n\[█+\]/,
    );
    expect(stdout.endsWith(`adapter: ${join(output, "adapter")}\n`)).toBe(true);
  });

  it("--validation RATIO|FILE and --eval-steps print eval events; a bad validation file stops the run", async () => {
    const { model, data, output } = await setup();
    const common = ["train", "--model", model, "--data", data, "--output", output, "--epochs", "1", ...quick];
    const json = await cli([...common, "--validation", "0.25", "--eval-steps", "2", "--json"]);
    expect(json.code).toBe(0);
    const all = events(json.stdout);
    const start = all[0] as Extract<TrainingRunEvent, { type: "run-start" }>;
    expect(start.plan.validation?.examples).toBe(3);
    const evals = all.filter((event) => event.type === "eval");
    expect(evals.length).toBeGreaterThan(0);
    expect(evals.every((event) => event.step % 2 === 0 || event.step === start.plan.steps)).toBe(true);
    const held = await tempFile("held-out.jsonl", jsonl(rows.slice(0, 2)));
    const file = await cli([...common, "--validation", held, "--json"]);
    expect(file.code).toBe(0);
    expect((events(file.stdout)[0] as typeof start).plan.validation?.examples).toBe(2);
    const bad = await tempFile("bad.jsonl", '{"messages": []}\n');
    const refused = await cli([...common, "--validation", bad]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`${bad}: local`);
    const plain = await cli([...common, "--validation", "0.25"]);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toContain("validation: 3 examples");
    expect(plain.stdout).toMatch(
      /^eval at step \d+: loss [\d.]+, perplexity [\d.]+, token accuracy [\d.]+%$/m,
    );
  });

  it("stops with exit 1 and the located error when the data is invalid", async () => {
    const { model, output } = await setup();
    const data = await tempFile("bad.jsonl", `${jsonl(rows.slice(0, 3))}{"messages": [{"role": "robot"}]}\n`);
    const { code, stdout, stderr } = await cli([
      "train",
      "--model",
      model,
      "--data",
      data,
      "--output",
      output,
    ]);
    expect(code).toBe(1);
    expect(stderr).toContain(`${data}: local ${model}`);
    expect(stderr).toContain(
      'line 4 messages[0].role: role must be one of system, developer, user, assistant, tool, function, got "robot"',
    );
    expect(stderr).toContain("FAILED");
    expect(stdout).toBe(""); // stopped before the model was loaded
    expect(existsSync(output)).toBe(false);
  });

  it("a failed run ends the JSON lines with run-failed, the error's code and message", async () => {
    const { model, output } = await setup();
    const one = await tempFile("one.jsonl", jsonl(rows.slice(0, 1)));
    const argv = ["train", "--model", model, "--data", one, "--output", output, "--json", ...quick];
    // Holding out a share of one example fails inside the run, once the model is loaded.
    const { code, stdout, stderr } = await cli([...argv, "--validation", "0.5"]);
    expect(code).toBe(2); // invalid_argument: the caller's mistake
    const last = events(stdout).at(-1) as { type: string; error: { code: string; message: string } };
    expect(last.type).toBe("run-failed");
    expect(last.error.code).toBe("invalid_argument");
    expect(last.error.message).toContain("needs at least 2 examples");
    expect(stderr).toContain(`tunekit: ${last.error.message}\n`);
    expect(stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it("a --resume folder that is not there fails before the model loads", async () => {
    const { model, data, output } = await setup();
    const missing = join(output, "no-such-checkpoint");
    const argv = ["train", "--model", model, "--data", data, "--output", output, ...quick];
    const { code, stdout, stderr } = await cli([...argv, "--resume", missing]);
    expect(code).toBe(2);
    expect(stderr).toBe(`tunekit: ${missing}: no such checkpoint folder\n`);
    expect(stdout).not.toContain("loading");
  });

  it("exits 2 on usage errors", async () => {
    const data = await tempFile("train.jsonl", jsonl(rows));
    const missing = await cli(["train", "--data", data]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("train needs --model");
    expect((await cli(["train", "--model", "m"])).code).toBe(2);
    expect((await cli(["train", "--model", "m", "--data", data, "--quantization", "int8"])).code).toBe(2);
    expect((await cli(["train", "--model", "m", "--data", data, "--epochs", "0"])).code).toBe(2);
    expect((await cli(["train", "--model", "m", "--data", data, "--lr", "fast"])).code).toBe(2);
    expect((await cli(["train", "--model", "m", "--data", data, "--validation", "1.5"])).code).toBe(2);
    expect((await cli(["train", "--model", "m", "--data", data, "--bogus"])).code).toBe(2);
    const help = await cli(["train", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("Usage: tunekit train --model PATH|HUB_ID --data FILE");
  });

  describe("tunekit train --resume: the checkpoint's settings are the truth", () => {
    /** One finished run of 2 epochs (12 steps) to resume from. */
    async function trained() {
      const { model, data, output } = await setup();
      const args = ["train", "--model", model, "--data", data, "--output", output, ...quick];
      const first = await cli([...args, "--epochs", "2", "--lora-r", "4"]);
      expect(first.code, first.stderr).toBe(0);
      return { model, data, output, args };
    }

    it("refuses adapter settings that contradict the checkpoint, naming each, before the model loads", async () => {
      const { args } = await trained();
      const refused = await cli([
        ...args,
        "--epochs",
        "3",
        "--resume",
        "--lora-r",
        "8",
        "--lora-alpha",
        "64",
      ]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(
        /cannot resume: checkpoint-12 was trained with r 4 \(asked 8\); alpha 32 \(asked 64\)/,
      );
      expect(refused.stdout).not.toContain("loading");
    });

    it("more epochs: re-planned from the saved step, and said so", async () => {
      const { args, output } = await trained();
      const resumed = await cli([...args, "--epochs", "3", "--resume"]);
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(resumed.stdout).toContain(`resumed from ${join(output, "checkpoint-12")} (step 12 of 18)`);
      expect(resumed.stdout).toMatch(/warning: the plan changed \(steps 12 → 18, epochs 2 → 3\)/);
      expect(resumed.stdout).toMatch(/^done: 18 steps \(3\.00 epochs; 6 in this run\)/m);
    });

    it("nothing left to train says so, exits 0 and claims no training", async () => {
      const { args, output } = await trained();
      const resumed = await cli([...args, "--epochs", "1", "--resume"]);
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(resumed.stdout).toContain(
        `nothing left to train: ${join(output, "checkpoint-12")} is at step 12 and this plan has 6 steps`,
      );
      expect(resumed.stdout).not.toMatch(/^done:/m);
      expect(resumed.stdout).toContain(`adapter: ${join(output, "adapter")}`);
    });

    it("changed data is a warning; --resume with no checkpoint says it starts fresh", async () => {
      const { args, model, output } = await trained();
      const other = await tempFile("other.jsonl", jsonl(rows.slice(0, 10)));
      const changed = await cli([...args.slice(0, 4), other, ...args.slice(5), "--epochs", "3", "--resume"]);
      expect(changed.code, changed.stderr).toBe(0);
      expect(changed.stdout).toMatch(
        /warning: the training data differs from what checkpoint-12 was trained on/,
      );
      const fresh = join(await tempDir(), "fresh");
      const started = await cli([...args.slice(0, 6), fresh, ...args.slice(7), "--resume"]);
      expect(started.code, started.stderr).toBe(0);
      expect(started.stdout).toContain(
        `warning: resume: no checkpoint in ${fresh} yet, so this run starts at step 0`,
      );
      expect(model).toBeDefined();
      expect(output).toBeDefined();
    });

    it("a checkpoint from before the recorded settings resumes with a warning", async () => {
      const { args, output } = await trained();
      const state = join(output, "checkpoint-12", "trainer_state.json");
      const { run: _, ...old } = JSON.parse(readFileSync(state, "utf8"));
      writeFileSync(state, JSON.stringify({ ...old, version: 1 }));
      const resumed = await cli([...args, "--epochs", "3", "--resume"]);
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(resumed.stdout).toContain("checkpoint-12 records no settings (written by an older tunekit)");
      // The checkpoints it writes record the adapter it really continued: the old checkpoint's r 4.
      const next = JSON.parse(readFileSync(join(output, "checkpoint-18", "trainer_state.json"), "utf8"));
      expect(next.run.adapter.r).toBe(4);
    });
  });

  it("Ctrl-C stops after the step with a checkpoint (exit 130); --resume continues to the end", async () => {
    const { model, data, output } = await setup();
    const args = [
      "train",
      "--model",
      model,
      "--data",
      data,
      "--output",
      output,
      "--epochs",
      "3",
      "--json",
      ...quick,
    ];
    const ctrlC = interrupts();
    let fired = false;
    let stdout = "";
    const stopped = await cli(args, {
      onInterrupt: ctrlC.onInterrupt,
      stdout: (text) => {
        stdout += text;
        if (!fired && text.includes('"type":"step"')) {
          fired = true;
          ctrlC.fire();
        }
      },
    });
    expect(stopped.code).toBe(130);
    expect(ctrlC.subscribed).toBe(false);
    expect(stopped.stderr).toContain(`stopping after the current step; its checkpoint goes to ${output}`);
    const first = events(stdout);
    const start = first[0] as Extract<TrainingRunEvent, { type: "run-start" }>;
    const aborted = first.at(-1) as Extract<TrainingRunEvent, { type: "run-aborted" }>;
    expect(aborted.type).toBe("run-aborted");
    expect(aborted.summary.steps).toBeLessThan(start.plan.steps);
    const checkpoint = join(output, `checkpoint-${aborted.summary.steps}`);
    expect(aborted.summary.checkpoints.at(-1)).toBe(checkpoint);
    expect(existsSync(checkpoint)).toBe(true);
    expect(existsSync(join(output, "adapter"))).toBe(false);

    const resumed = await cli([...args, "--resume"]);
    expect(resumed.code).toBe(0);
    const second = events(resumed.stdout);
    const steps = second.filter((event) => event.type === "step");
    expect(steps[0]?.step).toBe(aborted.summary.steps + 1);
    expect(steps.at(-1)?.step).toBe(start.plan.steps);
    expect(second.at(-1)?.type).toBe("run-end");
    expect(existsSync(join(output, "adapter", "adapter_model.safetensors"))).toBe(true);
  });

  it("Ctrl-C while the model loads stops before training (exit 130)", async () => {
    const { model, data, output } = await setup();
    const ctrlC = interrupts();
    const { code, stderr } = await cli(
      ["train", "--model", model, "--data", data, "--output", output, ...quick],
      {
        onInterrupt: ctrlC.onInterrupt,
        stdout: (text) => {
          if (text.startsWith("loading ")) ctrlC.fire();
        },
      },
    );
    expect(code).toBe(130);
    expect(stderr).toContain("stopped before training began");
    expect(existsSync(output)).toBe(false);
  });

  it("a second Ctrl-C quits at once with exit code 130", async () => {
    const { model, data, output } = await setup();
    const ctrlC = interrupts();
    const exit = vi.fn();
    let fired = false;
    const { code } = await cli(
      ["train", "--model", model, "--data", data, "--output", output, "--epochs", "3", ...quick],
      {
        onInterrupt: ctrlC.onInterrupt,
        exit,
        stdout: (text) => {
          if (!fired && text.startsWith("step ")) {
            fired = true;
            ctrlC.fire();
            ctrlC.fire();
          }
        },
      },
    );
    expect(exit).toHaveBeenCalledWith(130);
    expect(code).toBe(130);
  });

  it("the built bin runs: node dist/cli/index.js train --help", async () => {
    const bin = join(ROOT, "dist/cli/index.js");
    expect(existsSync(bin), `${bin} is missing: run \`npm run build\` first`).toBe(true);
    const { stdout } = await promisify(execFile)(process.execPath, [bin, "train", "--help"]);
    expect(stdout).toContain("Usage: tunekit train --model PATH|HUB_ID --data FILE");
  });
});
