/**
 * together() end to end against the fake: a job trains, is followed to success with its metrics, and
 * its weights come home from `GET /finetune/download` (a redirect to a pre-signed tar.zst): the
 * adapter loads in the local engine and generates as the adapter it was made from; the merged model
 * loads as a model of its own. The download never carries the key to the storage host.
 */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ConnectionError, ValidationError } from "../../src/core/errors.js";
import { FineTuneJob } from "../../src/jobs/fine-tune-job.js";
import { together } from "../../src/providers/together/index.js";
import { type TogetherFineTuningOptions, togetherFineTuningHandlers } from "../../src/testing/together.js";
import { runCli } from "../cli-helpers.js";
import { chatRow, jsonl, tempDir, tempFile } from "../helpers.js";
import { greedyTokens, makeTinyWeights, type TinyWeights } from "./tiny-weights.js";

const KEY = "tgp_v1_downloadKeyThatMustStayHome";
const MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference";
const TRAINING = jsonl(Array.from({ length: 4 }, (_, index) => chatRow(`q${index}`, `a${index}`)));

const server = setupServer();
const seen: Request[] = [];
server.events.on("request:start", ({ request }) => {
  seen.push(request.clone());
});
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => {
  server.resetHandlers();
  seen.length = 0;
});
/** The weights every test here hands to the fake, made once in a folder of their own. */
let shared: string;
let weights: Promise<TinyWeights> | undefined;
const tiny = () => {
  weights ??= makeTinyWeights(shared);
  return weights;
};
beforeAll(async () => {
  shared = await mkdtemp(join(tmpdir(), "tunekit-together-weights-"));
});
afterAll(async () => {
  server.close();
  await rm(shared, { recursive: true, force: true });
});

function fake(options: TogetherFineTuningOptions = {}) {
  const handlers = togetherFineTuningHandlers({ apiKey: KEY, ...options });
  server.use(...handlers.handlers);
  return handlers;
}

const provider = () => together({ apiKey: KEY, filePollInterval: 0, maxRetries: 0 });

async function trainedJob(options: TogetherFineTuningOptions) {
  const state = fake(options);
  const job = await FineTuneJob.create({
    provider: provider(),
    model: MODEL,
    training: await tempFile("train.jsonl", TRAINING),
    hyperparameters: { epochs: 1, lora: { r: 4, alpha: 8 } },
    pollInterval: 1,
  });
  return { job, state };
}

describe("together() end to end: train, follow, bring the weights home, load them, generate", () => {
  it("downloads the adapter from its tar.zst; LocalModel loads it and generates as the adapter made", {
    timeout: 60_000,
  }, async () => {
    const made = await tiny();
    const { job, state } = await trainedJob({ weights: { adapter: made.adapter, merged: made.merged } });
    const steps: number[] = [];
    for await (const event of job.events())
      if (event.type === "metrics" && event.metrics.trainLoss !== undefined) steps.push(event.metrics.step);
    expect(steps.length).toBeGreaterThan(0);
    expect(steps).toEqual([...steps].sort((a, b) => a - b));
    expect(new Set(steps).size).toBe(steps.length);
    await job.wait();

    const home = join(await tempDir(), "adapter");
    const downloaded = await job.downloadAdapter(home);
    expect(downloaded).toEqual({
      dir: home,
      kind: "adapter",
      step: 10,
      files: Object.keys(made.adapter).sort(),
    });
    expect(await greedyTokens(made.modelDir, home)).toEqual(made.tunedTokens);

    // What was asked, and where the key went: the API only, never the storage host.
    const asked = state.state.requests.find((request) => request.path === "/finetune/download");
    expect(asked?.query).toEqual({ ft_id: job.id, checkpoint: "adapter" });
    const storage = seen.filter((request) => request.url.startsWith("https://together-downloads.test/"));
    expect(storage).toHaveLength(1);
    expect(storage[0]?.headers.get("authorization")).toBeNull();

    // The merged model: a model folder of its own.
    const merged = join(await tempDir(), "merged");
    const bundle = await job.downloadAdapter(merged, { kind: "merged" });
    expect(bundle.kind).toBe("merged");
    expect(bundle.files).toEqual(Object.keys(made.merged).sort());
    expect(await greedyTokens(merged)).toEqual(made.mergedTokens);

    // An intermediate checkpoint by its step; a step with none is named with those there are.
    const half = await job.downloadAdapter(join(await tempDir(), "half"), { step: 5 });
    expect(half.step).toBe(5);
    expect(state.state.requests.at(-1)?.path).toContain("together-downloads.test");
    await expect(job.downloadAdapter(join(await tempDir(), "x"), { step: 7 })).rejects.toThrow(
      /no checkpoint at step 7 \(it has 5, 10\)/,
    );
  });

  it("the CLI downloads too: jobs download ID --provider together --dir DIR [--merged]", {
    timeout: 60_000,
  }, async () => {
    const made = await tiny();
    const { job } = await trainedJob({ weights: { adapter: made.adapter, merged: made.merged } });
    await job.wait();
    const dir = await tempDir();
    const env = { TOGETHER_API_KEY: KEY };
    const adapter = await runCli(
      ["jobs", "download", job.id, "--provider", "together", "--dir", join(dir, "a")],
      {
        env,
      },
    );
    expect(adapter.stderr).toBe("");
    expect(adapter.stdout).toBe(
      `${join(dir, "a")}: the adapter of step 10 (${Object.keys(made.adapter).sort().join(", ")})\n`,
    );
    const merged = await runCli(
      ["jobs", "download", job.id, "--provider", "together", "--dir", join(dir, "m"), "--merged"],
      { env },
    );
    expect(merged.stderr).toBe("");
    expect(merged.stdout).toBe(
      `${join(dir, "m")}: the merged model of step 10 (${Object.keys(made.merged).sort().join(", ")})\n`,
    );
  });

  it("reads a gzipped archive as well (application/x-tar)", async () => {
    const made = await tiny();
    const { job } = await trainedJob({ weights: { adapter: made.adapter }, archive: "gzip" });
    await job.wait();
    const home = join(await tempDir(), "adapter");
    await job.downloadAdapter(home);
    expect(await greedyTokens(made.modelDir, home)).toEqual(made.tunedTokens);
  });

  it("a download that breaks off is a ConnectionError and leaves no folder; before the end it is refused", async () => {
    const made = await tiny();
    const { job, state } = await trainedJob({ weights: { adapter: made.adapter }, cutDownloadsAt: 700 });
    // A job that has not ended yet (made here without a watcher): refused before anything is fetched.
    const direct = provider();
    const file = await direct.uploadFile({ filename: "t.jsonl", data: new TextEncoder().encode(TRAINING) });
    const { job: pending } = await direct.createJob({ model: MODEL, trainingFile: file.id });
    await expect(direct.downloadAdapter?.(pending.id, join(await tempDir(), "early"))).rejects.toThrow(
      /is running \(running\); its weights can be downloaded once it has succeeded, or name a checkpoint's step/,
    );
    expect(state.state.requests.some((request) => request.path === "/finetune/download")).toBe(false);
    await job.wait();
    const root = await tempDir();
    const error = await job.downloadAdapter(join(root, "adapter")).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as Error).message).toMatch(/broke off/);
    expect((error as Error).message).not.toContain(KEY);
    expect(await readdir(root)).toEqual([]);
  });

  it("a full fine-tune has no adapter: said before anything is fetched; its model comes with --merged", async () => {
    const made = await tiny();
    const state = fake({ weights: { merged: made.merged } });
    const job = await FineTuneJob.create({
      provider: provider(),
      model: MODEL,
      training: await tempFile("train.jsonl", TRAINING),
      providerOptions: { training_type: { type: "Full" } },
      pollInterval: 1,
    });
    await job.wait();
    const error = await job.downloadAdapter(join(await tempDir(), "a")).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as Error).message).toMatch(/full fine-tune: it has no adapter.*kind "merged"/);
    expect(state.state.requests.some((request) => request.path === "/finetune/download")).toBe(false);
    const model = await job.downloadAdapter(join(await tempDir(), "m"), { kind: "merged" });
    expect(model.kind).toBe("merged");
    expect(
      state.state.requests.find((request) => request.path === "/finetune/download")?.query.checkpoint,
    ).toBe("model_output_path");
  });
});
