import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { setupServer } from "msw/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalModel } from "../src/engine/local-model.js";
import { chatCompletionsHandlers } from "../src/testing/chat-completions.js";
import { OPENAI_TEST_API_KEY, openaiFineTuningHandlers } from "../src/testing/openai.js";
import { TINY_LLAMA, writeTinyModel } from "../src/testing/tiny-model.js";
import { togetherFineTuningHandlers } from "../src/testing/together.js";
import { runCli } from "./cli-helpers.js";
import { jsonl, tempDir, tempFile } from "./helpers.js";

const TOGETHER_KEY = "tgp_v1_evalSecretKeyThatMustNeverLeak0123456789";
const facts = Array.from({ length: 12 }, (_, index) => ({
  id: `box-${index}`,
  input: `What is the code of box ${index}?`,
  expected: `code ${100 + index}`,
}));
const lastUser = (messages: unknown[]) => String((messages.at(-1) as { content?: unknown })?.content ?? "");
/** The answer of a model that knows the codes. */
const knows = (messages: unknown[]) => {
  const box = /box (\d+)/.exec(lastUser(messages))?.[1];
  return box === undefined ? "?" : `It is code ${100 + Number(box)}.`;
};

const server = setupServer(
  ...openaiFineTuningHandlers({
    baseURL: "http://openai.test/v1",
    chatReply: ({ model, messages }) =>
      model === "judge-model"
        ? '{"reasoning": "it names a code", "score": 9}'
        : model === "pair-judge"
          ? '{"reasoning": "as good", "winner": "tie"}'
          : model === "good-model"
            ? knows(messages)
            : "I have no idea.",
  }).handlers,
  ...togetherFineTuningHandlers({
    apiKey: TOGETHER_KEY,
    baseURL: "http://together.test/v1",
    chatReply: (messages) => knows(messages),
  }).handlers,
  ...chatCompletionsHandlers({ baseURL: "http://compat.test/v1", reply: ({ messages }) => knows(messages) })
    .handlers,
);
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterAll(() => server.close());

const env = {
  OPENAI_API_KEY: OPENAI_TEST_API_KEY,
  OPENAI_BASE_URL: "http://openai.test/v1",
  TOGETHER_API_KEY: TOGETHER_KEY,
  TOGETHER_BASE_URL: "http://together.test/v1",
};
const tunekit = (...argv: string[]) => runCli(argv, { env });

describe("tunekit eval", () => {
  it("cloud targets of each kind; a gate that passes exits 0, one that fails exits 1", async () => {
    const cases = await tempFile("cases.jsonl", jsonl(facts));
    const args = [
      "eval",
      "--cases",
      cases,
      "--target",
      "base=openai:base-model",
      "--target",
      "tuned=together:org/good",
      "--metric",
      "contains",
      "--no-cache",
    ];
    const passed = await tunekit(...args, "--gate", "contains:tuned>base");
    expect(passed.code, passed.stderr).toBe(0);
    expect(passed.stdout).toContain("| tuned − base | contains | 1.000 | [1.000, 1.000] | 12 / 0 / 0 |");
    expect(passed.stdout).toMatch(
      /^gate passed: tuned − base on contains: 1\.000 \[1\.000, 1\.000\], p = 0\.0005 \(sign, n 12\)/m,
    );
    expect(passed.stdout).not.toContain(TOGETHER_KEY);
    const failed = await tunekit(...args, "--gate", "contains:base>tuned");
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(/^gate failed: base − tuned on contains: -1\.000/m);
  });

  it("--config: a judge through a model, a regex; compat targets; --json and --report", async () => {
    const cases = await tempFile("cases.jsonl", jsonl(facts.slice(0, 4)));
    const config = await tempFile(
      "eval.json",
      JSON.stringify({
        metrics: [
          { name: "judge", target: "openai:judge-model", rubric: "Names the box's code." },
          { name: "regex", pattern: "code \\d{3}", label: "has-code" },
        ],
        pairwise: [{ target: "openai:pair-judge", rubric: "Names the code." }],
        generation: { maxTokens: 32 },
        cache: false,
      }),
    );
    const report = join(await tempDir(), "report.html");
    const result = await tunekit(
      "eval",
      "--cases",
      cases,
      "--target",
      "served=compat:my-model@http://compat.test/v1",
      "--target",
      "base=openai:base-model",
      "--config",
      config,
      "--json",
      "--report",
      report,
    );
    expect(result.code, result.stderr).toBe(0);
    const json = JSON.parse(result.stdout);
    expect(json.summary.judge.served).toMatchObject({ mean: 0.9, passRate: 1, n: 4 });
    expect(json.summary["has-code"].served.mean).toBe(1);
    expect(json.summary["has-code"].base.mean).toBe(0);
    expect(json.comparisons[0]).toMatchObject({ a: "served", b: "base", metric: "judge" });
    expect(json.gates).toEqual([]);
    expect(
      json.comparisons.find((entry: { metric: string }) => entry.metric === "pairwise-judge"),
    ).toMatchObject({
      a: "served",
      b: "base",
      ties: 4,
      pValue: 1,
    });
    expect(await readFile(report, "utf8")).toContain('<svg id="chart"');
  });

  it("local targets: a model and the same model with an adapter share one load; an adapter that changes nothing is said so", async () => {
    const dir = await tempDir();
    const model = await writeTinyModel(join(dir, "tiny"), TINY_LLAMA);
    const adapter = join(dir, "adapter");
    {
      await using loaded = await LocalModel.load(model, { quantization: "none" });
      loaded.attachLora({ r: 2 }); // B starts at zero: the adapter changes nothing yet
      await loaded.saveAdapter(adapter);
    }
    const cases = await tempFile("cases.jsonl", jsonl(facts.slice(0, 3)));
    const result = await tunekit(
      "eval",
      "--cases",
      cases,
      "--target",
      `base=local:${model}`,
      "--target",
      `tuned=local:${model}+${adapter}`,
      "--metric",
      "answerLoss",
      "--metric",
      "rougeL",
      "--max-tokens",
      "4",
      "--no-cache",
      "--json",
    );
    expect(result.code, result.stderr).toBe(0);
    const json = JSON.parse(result.stdout);
    expect(json.summary.answerLoss.base.n).toBe(3);
    expect(json.summary.answerLoss.tuned.mean).toBeCloseTo(json.summary.answerLoss.base.mean, 6);
    expect(json.warnings).toContain(
      "base and tuned gave identical outputs on every case: the adapter changed nothing?",
    );
  });

  it("usage errors are one line", async () => {
    const cases = await tempFile("cases.jsonl", jsonl(facts));
    const bad = async (argv: string[], message: string | RegExp) => {
      const result = await tunekit("eval", ...argv);
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toMatch(message);
    };
    await bad(["--target", "a=openai:x"], /eval needs --cases FILE/);
    await bad(["--cases", cases], /eval needs at least one --target NAME=SPEC/);
    await bad(["--cases", cases, "--target", "openai:x"], /--target takes NAME=SPEC/);
    await bad(["--cases", cases, "--target", "a=ftp:x"], /unknown kind in "ftp:x"/);
    await bad(
      ["--cases", cases, "--target", "a=openai:x", "--gate", "contains:tuned"],
      /--gate takes 'METRIC:BETTER>THAN\[:MARGIN\]' .*\(quote it: a shell reads > as a redirect\)/,
    );
    await bad(
      ["--cases", cases, "--target", "a=openai:x", "--metric", "bleuu"],
      /unknown metric "bleuu"; use contains/,
    );
    await bad(
      ["--cases", cases, "--target", "a=openai:x", "--report", "out.pdf"],
      /--report: use a .html, .md or .json file/,
    );
    const config = await tempFile("bad.json", JSON.stringify({ metrics: [{ name: "regex", patern: "x" }] }));
    await bad(
      ["--cases", cases, "--target", "a=openai:x", "--config", config],
      new RegExp(`${config}: metrics\\.0`),
    );
    const noKey = await runCli(["eval", "--cases", cases, "--target", "a=openai:x"], { env: {} });
    expect(noKey.stderr).toContain("no OpenAI API key: set OPENAI_API_KEY");
  });
});
