import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { HAS_LLAMA_CPP } from "./export/llama-cpp.js";
import { HAS_FIXTURES, ROOT, tempDir } from "./helpers.js";

describe("examples", () => {
  it("01-prepare-data converts the guide's data, reports the 10-example minimum, and passes the support set", async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--import", "tsx", join(ROOT, "examples/01-prepare-data.ts")],
      {
        cwd: ROOT,
      },
    );
    expect(stdout).toContain("wrote 2 conversations");
    expect(stdout).toContain("error too_few_examples: openai needs at least 10 examples, the data has 2");
    expect(stdout).toContain("36 examples, 36 valid");
    expect(stdout).toMatch(/== examples\/data\/customer-support\.jsonl[\s\S]*OK: ready to upload/);
  });

  it("02-openai-finetune runs the guide's OpenAI section offline against the fake", async () => {
    const env = { ...process.env };
    delete env.OPENAI_API_KEY;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--import", "tsx", join(ROOT, "examples/02-openai-finetune.ts")],
      {
        cwd: ROOT,
        env,
      },
    );
    expect(stdout).toContain("running against the offline OpenAI fake");
    expect(stdout).toMatch(/fine-tuned model: ft:gpt-4o-mini-2024-07-18:[^:]*:customer-support:/);
    expect(stdout).toContain("status: succeeded");
  });

  it("10-cloud-weights-home trains on Together, Fireworks and Nebius (their fakes), and each adapter comes home and runs here", async () => {
    const env = { ...process.env };
    for (const name of ["TOGETHER_API_KEY", "FIREWORKS_API_KEY", "FIREWORKS_ACCOUNT_ID", "NEBIUS_API_KEY"])
      delete env[name];
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--import", "tsx", join(ROOT, "examples/10-cloud-weights-home.ts")],
      { cwd: ROOT, env, timeout: 120_000 },
    );
    for (const name of ["together", "fireworks", "nebius"])
      expect(stdout).toContain(`== ${name} (offline fake)`);
    expect(stdout.match(/^status: succeeded/gm)).toHaveLength(3);
    expect(stdout.match(/^adapter home: adapter_config\.json, adapter_model\.safetensors/gm)).toHaveLength(3);
    if (HAS_FIXTURES) expect(stdout.match(/Who has the cat\? → Lily has the cat\.$/gm)).toHaveLength(3);
  }, 120_000);

  it.skipIf(!HAS_FIXTURES)(
    "11-export-gguf trains an adapter, exports the base and the adapter as GGUF with a Modelfile, and llama.cpp answers with it",
    async () => {
      const { stdout } = await promisify(execFile)(
        process.execPath,
        ["--import", "tsx", join(ROOT, "examples/11-export-gguf.ts")],
        { cwd: ROOT, timeout: 120_000 },
      );
      expect(stdout).toMatch(/^base\.gguf: model, f32, 47 tensors, \d+ bytes$/m);
      expect(stdout).toMatch(/^lora\.gguf: adapter, f32, 70 tensors, \d+ bytes$/m);
      expect(stdout).toContain("FROM ./base.gguf\nADAPTER ./lora.gguf\n");
      if (HAS_LLAMA_CPP) {
        expect(stdout).toContain("llama.cpp tuned: Who has the cat? → Lily has the cat.\n");
        expect(stdout).toContain("llama.cpp tuned: What color is the ball? → The ball is red.\n");
        expect(stdout).not.toMatch(/llama\.cpp base: Who has the cat\? → Lily has the cat/);
      } else expect(stdout).toContain("node-llama-cpp is not installed: run the files with");
    },
    120_000,
  );

  it("05-local-job runs the FineTuneJob code of 02 on this machine, on a tiny model", async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--import", "tsx", join(ROOT, "examples/05-local-job.ts")],
      { cwd: ROOT, timeout: 120_000 },
    );
    expect(stdout).toMatch(/^created ftjob-local-/);
    expect(stdout).toMatch(/status: queued\n[\s\S]*status: running\n[\s\S]*status: succeeded\n/);
    expect(stdout).toMatch(/step 9\/9 loss \d/);
    expect(stdout).toMatch(/fine-tuned model: .*\/jobs\/ftjob-local-\w+\/adapter\n/);
    expect(stdout).toMatch(/reply: /);
    expect(stdout).toMatch(/listed: ftjob-local-\w+ succeeded/);
  }, 120_000);

  it("07-evaluate trains eight facts, compares base and tuned with paired tests, and the gate passes", async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--import", "tsx", join(ROOT, "examples/07-evaluate.ts")],
      { cwd: ROOT, timeout: 120_000 },
    );
    expect(stdout).toMatch(/^step 80: answerLoss of the tuned model \d/m);
    expect(stdout).toMatch(
      /^contains {3}base 0\.000 {2}tuned 1\.000 {2}difference 1\.000 \[1\.000, 1\.000\] {2}p = 0\.0078 \(sign\)$/m,
    );
    expect(stdout).toMatch(/^gate passed: tuned − base on answerLoss/m);
    expect(stdout).toMatch(/^report: .*report\.html$/m);
  }, 120_000);

  it("08-serve trains, serves the base and the adapter, and the openai client gets the trained reply", async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--import", "tsx", join(ROOT, "examples/08-serve.ts")],
      { cwd: ROOT, timeout: 120_000 },
    );
    expect(stdout).toMatch(/^serving model, support at http:\/\/127\.0\.0\.1:\d+\/v1$/m);
    expect(stdout).toContain('support  "it ships tomorrow" (stop)');
    expect(stdout).toMatch(/^streamed: "it ships tomorrow", \d+ tokens$/m);
  }, 120_000);

  it("09-migrate-from-openai finds the fake's fine-tune, retrains, proves it and serves it under the old id", async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--import", "tsx", join(ROOT, "examples/09-migrate-from-openai.ts")],
      { cwd: ROOT, timeout: 180_000 },
    );
    expect(stdout).toMatch(
      /^ft:gpt-4o-mini-2024-07-18:personal:facts:\w+: base gpt-4o-mini-2024-07-18, shuts down 2027-01-14/m,
    );
    expect(stdout).toMatch(/^record {4}6 answers in /m);
    expect(stdout).toMatch(/^retrieve {2}training: 6 examples in /m);
    expect(stdout).toMatch(
      /^serve {5}tunekit serve --model .* --adapter ft:gpt-4o-mini-2024-07-18:personal:facts:\w+=/m,
    );
    const rouge = /^rougeL against the recording: base ([\d.]+), replacement ([\d.]+) \(p = ([\d.]+)/m.exec(
      stdout,
    );
    expect(Number(rouge?.[2])).toBeGreaterThan(Number(rouge?.[1]));
    expect(stdout).toMatch(/^ft:gpt-4o-mini-2024-07-18:personal:facts:\w+ answers: /m);
  }, 180_000);

  it("06-chat asks the same question through every local chat target, and they agree", async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--import", "tsx", join(ROOT, "examples/06-chat.ts")],
      { cwd: ROOT, timeout: 120_000 },
    );
    expect(stdout).toMatch(/trained 40 steps; the adapter \(with its chat_template\.jinja\): /);
    for (const target of ["trainer.model()", "LocalModel + loadAdapter", "local().chat(adapter)"])
      expect(stdout).toContain(`${target.padEnd(26)} "it ships tomorrow" (stop, 18 tokens)`);
    expect(stdout).not.toMatch(/trainer\.baseModel\(\) +"it ships tomorrow"/);
    expect(stdout).toContain("streamed:                  it ships tomorrow (stop)");
    expect(stdout).toMatch(/identity: local:.*&adapter=[0-9a-f]{32}\n/);
  }, 120_000);

  it.skipIf(!HAS_FIXTURES)(
    "04-local-generate runs the fixture model greedy, sampled, streamed and in NF4",
    async () => {
      const { stdout } = await promisify(execFile)(
        process.execPath,
        ["--import", "tsx", join(ROOT, "examples/04-local-generate.ts")],
        { cwd: ROOT },
      );
      expect(stdout).toMatch(/engine: (scalar|avx2|avx512) kernels/);
      expect(stdout).toContain("greedy (length): Once upon a time");
      expect(stdout).toMatch(/streamed: Tom and Lily[^.]*\n/);
      expect(stdout).toMatch(/nf4 linear weights: \d+ bytes \(14\.1% of 906240\)/);
    },
  );

  it.skipIf(!HAS_FIXTURES)(
    "03-local-qlora trains an adapter on the fixture and the tuned model gives the replies",
    async () => {
      const { stdout } = await promisify(execFile)(
        process.execPath,
        ["--import", "tsx", join(ROOT, "examples/03-local-qlora.ts")],
        { cwd: ROOT, timeout: 120_000 },
      );
      expect(stdout).toMatch(/training: 3 examples, 150 steps/);
      expect(stdout).toMatch(/adapter \(PEFT format\): .*adapter/);
      expect(stdout).toContain("tuned: My friend is a big red dog.");
      expect(stdout).toContain("tuned: I live in a small house.");
    },
    120_000,
  );
  describe("npm run demo", () => {
    const demo = async (...args: string[]) => {
      const home = await tempDir();
      // Offline and with an empty HF cache, whatever this machine has: tests never touch the network.
      const env = { ...process.env, HF_HUB_OFFLINE: "1", HF_HOME: home, HF_HUB_CACHE: join(home, "hub") };
      const output = join(home, "out");
      const { stdout } = await promisify(execFile)(
        process.execPath,
        ["--import", "tsx", join(ROOT, "examples/demo.ts"), "--output", output, ...args],
        { cwd: ROOT, env, timeout: 120_000 },
      );
      return { stdout, output };
    };

    it.skipIf(!HAS_FIXTURES)(
      "offline, says so and fine-tunes the stories260K fixture: the tuned answers start with the replies",
      async () => {
        const { stdout, output } = await demo();
        expect(stdout).toContain("1. data: 36 customer-support conversations");
        expect(stdout).toMatch(/offline: HuggingFaceTB\/SmolLM2-135M-Instruct is not in the HF cache/);
        expect(stdout).toContain("2. model: the stories260K fixture");
        expect(stdout).toMatch(/3\. validation: 6 of 6 examples valid/);
        expect(stdout).toMatch(/tuned: +I'm sorry for the wait on order/);
        expect(stdout).not.toMatch(/base: +I'm sorry for the wait on order/);
        expect(stdout).toContain(`6. adapter: ${join(output, "adapter")} (PEFT LORA, r 16`);
      },
    );

    it("--tiny runs the whole pipeline on a generated model in seconds", async () => {
      const { stdout, output } = await demo("--tiny");
      expect(stdout).toContain("2. model: a tiny random Llama generated for the demo");
      expect(stdout).toMatch(/4\. QLoRA fine-tune: 6 examples, \d+ reply tokens, 60 epochs, \d+ steps/);
      expect(stdout).toMatch(/tuned: +I'm sorry for the wait on order/);
      expect(stdout).toMatch(/tuned: +Thanks for reaching out!/);
      expect(stdout).toContain(`6. adapter: ${join(output, "adapter")}`);
    });
  });
});
