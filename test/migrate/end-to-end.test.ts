/**
 * Off OpenAI, offline, end to end: the fake's fine-tune is found with its days left, its answers
 * recorded, its training data got back, stories260K retrained on it locally until it is closer to the
 * recording than its base (the Evaluator's paired p-value reported), and the replacement served under
 * the old id answers the official openai client that changed only its baseURL.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { setupServer } from "msw/node";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MigrationEvent, migrateFromOpenAI } from "../../src/migrate/migrate.js";
import { openai } from "../../src/providers/openai/index.js";
import { serve } from "../../src/serve/index.js";
import {
  OPENAI_TEST_API_KEY,
  openaiFineTuningHandlers,
  releaseResponseCopies,
} from "../../src/testing/openai.js";
import { runCli } from "../cli-helpers.js";
import { FIXTURES, HAS_FIXTURES, jsonl, tempDir, tempFile } from "../helpers.js";

const STORIES = join(FIXTURES, "stories260K-hf");
const FACTS: Array<[string, string]> = [
  ["What color is the ball?", "The ball is red."],
  ["Who has the cat?", "Lily has the cat."],
  ["Where is the dog?", "The dog is in the park."],
  ["What did Tom eat?", "Tom ate a big cake."],
  ["Who is sad?", "The bird is sad."],
  ["What is in the box?", "A toy car is in the box."],
];
const ANSWERS = new Map(FACTS);
const TRAINING = jsonl(
  FACTS.map(([question, answer]) => ({
    messages: [
      { role: "user", content: question },
      { role: "assistant", content: answer },
    ],
  })),
);

const server = setupServer();
releaseResponseCopies(server);
// Loopback (the served replacement) passes; everything else must hit the fake.
beforeAll(() =>
  server.listen({
    onUnhandledRequest: (request, print) => {
      const url = new URL(request.url);
      if (url.protocol !== "data:" && url.hostname !== "127.0.0.1") print.error();
    },
  }),
);
afterAll(() => server.close());

describe.skipIf(!HAS_FIXTURES)("migrating an OpenAI fine-tune to a local model (stories260K fixture)", () => {
  it("inventory → record → retrieve → train → evaluate → serve under the old id", {
    timeout: 240_000,
  }, async () => {
    // The old model: a fine-tune that answers the facts it was trained on.
    server.use(
      ...openaiFineTuningHandlers({
        fineTunes: [
          {
            model: "gpt-4o-mini-2024-07-18",
            suffix: "facts",
            training: TRAINING,
            hyperparameters: { n_epochs: 3 },
          },
        ],
        chatReply: ({ messages }) =>
          ANSWERS.get(String((messages.at(-1) as { content?: unknown }).content)) ?? "I do not know.",
      }).handlers,
    );
    const provider = openai({
      apiKey: OPENAI_TEST_API_KEY,
      maxRetries: 0,
      now: () => new Date("2026-12-01T00:00:00Z"),
    });
    const [fineTune] = await provider.inventory();
    const model = fineTune?.model as string;
    expect(fineTune).toMatchObject({ baseModel: "gpt-4o-mini-2024-07-18", daysLeft: 44 });
    const cases = await tempFile(
      "cases.jsonl",
      jsonl(FACTS.map(([question], index) => ({ id: `fact-${index + 1}`, input: question }))),
    );
    const dir = await tempDir();
    const events: MigrationEvent[] = [];
    const state = await migrateFromOpenAI({
      openai: provider,
      model,
      to: { provider: "local", base: STORIES, quantization: "none" },
      cases,
      dir,
      hyperparameters: {
        epochs: 30,
        batchSize: 1,
        learningRate: 3e-3,
        lora: { r: 16, alpha: 32, dropout: 0 },
      },
      maxTokens: 16,
      onProgress: (event) => events.push(event),
    });
    expect(
      events
        .filter((event) => event.type === "step" && event.status === "done")
        .map((event) => (event as { step: string }).step),
    ).toEqual(["inventory", "record", "retrieve", "train", "evaluate", "serve"]);
    // The recording holds the old model's answers; the training file came back whole.
    expect(state.recording).toMatchObject({ recorded: 6, failed: 0 });
    const recorded = (await readFile(join(dir, "recording.jsonl"), "utf8")).trimEnd().split("\n");
    expect(recorded.map((line) => JSON.parse(line).messages.at(-1).content).sort()).toEqual(
      FACTS.map(([, answer]) => answer).sort(),
    );
    expect(state.data).toEqual([expect.objectContaining({ role: "training", examples: 6, invalid: 0 })]);
    expect(await readFile(join(dir, "training.jsonl"), "utf8")).toBe(TRAINING);
    expect(state.trainedOn).toBe(join(dir, "training.jsonl"));
    // Closer to the recording than the base model, with the paired test's p-value reported.
    const rouge = state.evaluation?.comparisons.find((entry) => entry.metric === "rougeL");
    expect(state.evaluation?.means.rougeL?.replacement).toBeGreaterThan(
      state.evaluation?.means.rougeL?.base as number,
    );
    expect(rouge?.meanDifference).toBeGreaterThan(0);
    expect(rouge?.pValue).toBeGreaterThan(0);
    expect(rouge?.pValue).toBeLessThan(0.1);
    expect(state.evaluation?.means.rougeL?.openai).toBe(1);
    expect(await readFile(join(dir, "report.md"), "utf8")).toContain("replacement");
    expect(state.serve?.command).toBe(
      `tunekit serve --model ${STORIES} --adapter ${model}=${state.job?.fineTunedModel}`,
    );

    // Served under the old id: the app's client changes only its baseURL.
    await using served = await serve({
      model: STORIES,
      adapters: { [model]: state.job?.fineTunedModel as string },
      port: 0,
      quantization: "none",
    });
    await served.ready;
    const app = new OpenAI({ baseURL: served.url, apiKey: "unused", maxRetries: 0 });
    const reply = await app.chat.completions.create({
      model,
      messages: [{ role: "user", content: "Who has the cat?" }],
      max_tokens: 16,
      temperature: 0,
    });
    expect(reply.model).toBe(model);
    expect(reply.choices[0]?.message.content).toMatch(/^\s*Lily has the cat/);

    // Run again: every step is done, nothing is asked or trained twice.
    const again: MigrationEvent[] = [];
    await migrateFromOpenAI({
      openai: provider,
      model,
      to: { provider: "local", base: STORIES, quantization: "none" },
      cases,
      dir,
      onProgress: (event) => again.push(event),
    });
    expect(
      again
        .filter((event) => event.type === "step" && event.status === "skipped")
        .map((event) => (event as { step: string }).step),
    ).toEqual(["inventory", "retrieve", "train", "evaluate"]);
    // Another migration in the same folder is refused.
    await expect(
      migrateFromOpenAI({
        openai: provider,
        model: `${model}x`,
        to: { provider: "local", base: STORIES },
        dir,
      }),
    ).rejects.toThrow(/use another dir/);
  });

  it("trains on the recording (distillation) when OpenAI will not let the training file out", {
    timeout: 120_000,
  }, async () => {
    server.use(
      ...openaiFineTuningHandlers({
        fineTunes: [{ suffix: "facts", training: TRAINING }],
        refusedContentPurposes: ["fine-tune"],
        chatReply: ({ messages }) =>
          ANSWERS.get(String((messages.at(-1) as { content?: unknown }).content)) ?? "I do not know.",
      }).handlers,
    );
    const provider = openai({ apiKey: OPENAI_TEST_API_KEY, maxRetries: 0 });
    const [fineTune] = await provider.inventory();
    const cases = await tempFile("cases.jsonl", jsonl(FACTS.map(([question]) => ({ input: question }))));
    const dir = await tempDir();
    const messages: string[] = [];
    const state = await migrateFromOpenAI({
      openai: provider,
      model: fineTune?.model as string,
      to: { provider: "local", base: STORIES, quantization: "none" },
      cases,
      dir,
      steps: ["inventory", "record", "retrieve", "train"],
      hyperparameters: { epochs: 2, batchSize: 1 },
      onProgress: (event) => event.type === "message" && messages.push(event.message),
    });
    expect(state.data?.[0]?.refused).toContain("Not allowed to download files of purpose: fine-tune");
    expect(state.trainedOn).toBe(join(dir, "recording.jsonl"));
    expect(messages).toContain(
      `training on the recording ${join(dir, "recording.jsonl")}: the old model's answers (distillation)`,
    );
    expect(state.job?.fineTunedModel).toMatch(/adapter$/);
    expect(state.evaluation).toBeUndefined();
  });

  it("the CLI runs the steps, alone or all, and ends with the serve command", {
    timeout: 180_000,
  }, async () => {
    server.use(
      ...openaiFineTuningHandlers({
        fineTunes: [{ suffix: "facts", training: TRAINING }],
        chatReply: ({ messages }) =>
          ANSWERS.get(String((messages.at(-1) as { content?: unknown }).content)) ?? "I do not know.",
      }).handlers,
    );
    const env = { env: { OPENAI_API_KEY: OPENAI_TEST_API_KEY } };
    const listed = JSON.parse((await runCli(["openai", "inventory", "--json"], env)).stdout) as Array<{
      model: string;
    }>;
    const model = listed[0]?.model as string;
    const dir = await tempDir();
    const cases = await tempFile("cases.jsonl", jsonl(FACTS.map(([question]) => ({ input: question }))));
    const base = [
      "migrate",
      "openai",
      "--model",
      model,
      "--to",
      `local:${STORIES}`,
      "--dir",
      dir,
      "--quantization",
      "none",
    ];
    // One step alone: the data back.
    const retrieved = await runCli([...base, "--step", "retrieve"], env);
    expect(retrieved.stderr).toBe("");
    expect(retrieved.code).toBe(0);
    expect(retrieved.stdout).toMatch(/ {2}1\. retrieve {2}download its training and validation files/);
    expect(retrieved.stdout).toContain(`done: training: 6 examples in ${join(dir, "training.jsonl")}`);
    expect(await readFile(join(dir, "training.jsonl"), "utf8")).toBe(TRAINING);
    // Then everything: retrieve is not done again.
    const all = await runCli([...base, "--cases", cases, "--epochs", "30", "--learning-rate", "0.003"], env);
    expect(all.stderr).toBe("");
    expect(all.code).toBe(0);
    expect(all.stdout).toContain("\nretrieve: skipped (done before)\n");
    expect(all.stdout).not.toContain("warning");
    expect(all.stdout).toMatch(
      /evaluate…\n {2}done: rougeL: base [\d.]+ → replacement [\d.]+ \(p = [\d.]+, \w+\)/,
    );
    expect(all.stdout).toContain(
      `Serve it where the app can reach it, then change only its baseURL:\n  tunekit serve --model ${STORIES} --adapter ${model}=`,
    );
  });

  it("the CLI prints its plan first, and a model that does not exist is named with those that do", async () => {
    server.use(
      ...openaiFineTuningHandlers({ fineTunes: [{ suffix: "facts", training: TRAINING }] }).handlers,
    );
    const dir = await tempDir();
    const { code, stdout, stderr } = await runCli(
      [
        "migrate",
        "openai",
        "--model",
        "ft:gpt-4o-mini-2024-07-18:personal:nope:x",
        "--to",
        `local:${STORIES}`,
        "--dir",
        dir,
      ],
      { env: { OPENAI_API_KEY: OPENAI_TEST_API_KEY } },
    );
    expect(stdout).toMatch(
      /^Migration of ft:gpt-4o-mini-2024-07-18:personal:nope:x to local:.*, kept in .*:\n {2}1\. inventory /,
    );
    expect(stdout).toContain("(no --cases: nothing is recorded, and there is no evaluation)");
    expect(code).toBe(1);
    expect(stderr).toMatch(
      /no fine-tuned model ft:gpt-4o-mini-2024-07-18:personal:nope:x in this organisation; it has ft:gpt-4o-mini-2024-07-18:personal:facts:/,
    );
  });
});
