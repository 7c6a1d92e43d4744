/**
 * Continuous batching: generations on one model join the running batch between steps and leave it
 * when they end, with resident adapters side by side in one batch, and each still gets exactly the
 * tokens it gets alone (same seed, same adapter).
 */
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LocalModelView } from "../../src/engine/local-chat.js";
import { type GenerateOptions, LocalModel } from "../../src/engine/local-model.js";
import { TINY_LLAMA, writeTinyModel } from "../../src/testing/tiny-model.js";

let dir: string;
let model: LocalModel;
let adapters: Record<"support" | "sales", string>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tunekit-batching-"));
  const folder = await writeTinyModel(join(dir, "tiny"), TINY_LLAMA);
  adapters = { support: join(dir, "support"), sales: join(dir, "sales") };
  for (const [name, seed] of [
    ["support", 1],
    ["sales", 2],
  ] as const) {
    await using trained = await LocalModel.load(folder, { quantization: "none" });
    trained.attachLora({ r: 4, seed });
    // One large step on a fixed batch, so that each adapter changes what the model says.
    const ids = Array.from({ length: 24 }, (_, index) => 3 + ((index * (seed + 3)) % 40));
    await trained.forwardBackward({ inputIds: ids, labels: ids });
    await trained.optimizerStep({ learningRate: 0.5 });
    await trained.saveAdapter(adapters[name]);
  }
  model = await LocalModel.load(folder, { quantization: "none" });
});

afterAll(() => model?.dispose());

/** What each request is: a prompt, its sampling, its adapter. */
interface Job {
  inputIds: number[];
  options: GenerateOptions;
  on: "base" | "support" | "sales";
}

const JOBS: Job[] = [
  { inputIds: [5, 9, 14], options: { maxTokens: 24, temperature: 0 }, on: "base" },
  { inputIds: [7, 3, 3, 21, 8, 40], options: { maxTokens: 17, temperature: 0.9, seed: 11 }, on: "support" },
  { inputIds: [2], options: { maxTokens: 30, temperature: 0 }, on: "sales" },
  {
    inputIds: [12, 30, 31, 4, 9, 9, 9, 17],
    options: { maxTokens: 9, temperature: 1, topP: 0.8, seed: 5 },
    on: "base",
  },
  { inputIds: [44, 6, 2, 1], options: { maxTokens: 21, temperature: 0.7, topK: 8, seed: 3 }, on: "sales" },
  { inputIds: [8, 8], options: { maxTokens: 13, temperature: 0 }, on: "support" },
];

describe("continuous batching", () => {
  let views: Record<Job["on"], LocalModelView>;
  beforeAll(async () => {
    views = {
      base: model.view({ adapter: false }),
      support: await model.openAdapter(adapters.support, { modelId: "support" }),
      sales: await model.openAdapter(adapters.sales, { modelId: "sales" }),
    };
  });

  const run = (job: Job) =>
    views[job.on].generate({ inputIds: job.inputIds }, { ...job.options, stopTokens: [] });

  it("requests that arrive while others decode, on mixed adapters, each get what they get alone", async () => {
    const alone = [];
    for (const job of JOBS) alone.push(await run(job));
    // The adapters change the output: otherwise this test could not tell them apart.
    const greedy = { maxTokens: 24, temperature: 0, stopTokens: [] };
    const outputs = await Promise.all(
      Object.values(views).map(async (view) =>
        (await view.generate({ inputIds: [5, 9, 14] }, greedy)).tokenIds.join(),
      ),
    );
    expect(new Set(outputs).size).toBe(3);

    const before = model.decoding;
    // Staggered: each request starts once the one before it has streamed a few tokens.
    const together: Promise<Awaited<ReturnType<typeof run>>>[] = [];
    for (const job of JOBS) {
      const view = views[job.on];
      let seen = 0;
      let joined!: () => void;
      const started = new Promise<void>((resolve) => {
        joined = resolve;
      });
      together.push(
        (async () => {
          const stream = view.stream({ inputIds: job.inputIds }, { ...job.options, stopTokens: [] });
          let next = await stream.next();
          while (!next.done) {
            if (++seen === 2) joined();
            next = await stream.next();
          }
          joined();
          return next.value;
        })(),
      );
      await started;
    }
    const results = await Promise.all(together);
    for (const [index, result] of results.entries()) {
      expect(result.tokenIds, `request ${index} (${JOBS[index]?.on})`).toEqual(alone[index]?.tokenIds);
      expect(result.text).toBe(alone[index]?.text);
      expect(result.finishReason).toBe("length");
    }
    const after = model.decoding;
    const meanBatch = (after.rows - before.rows) / (after.steps - before.steps);
    expect(meanBatch).toBeGreaterThan(1.5);
    expect(after.running).toBe(0);
  });

  it("generateBatch keeps seed + i; a resident adapter answers as the same adapter attached", async () => {
    const options = { maxTokens: 12, temperature: 0.8, seed: 40, stopTokens: [] };
    const prompts = [{ inputIds: [4, 5] }, { inputIds: [6] }, { inputIds: [7, 7, 7] }];
    const batch = await views.support.generateBatch(prompts, options);
    for (const [index, prompt] of prompts.entries()) {
      const alone = await views.support.generate(prompt, { ...options, seed: 40 + index });
      expect(batch[index]?.tokenIds).toEqual(alone.tokenIds);
    }
    await using attached = await LocalModel.load(model.path, { quantization: "none" });
    await attached.loadAdapter(adapters.support);
    const mine = await attached.generate(prompts[2] as { inputIds: number[] }, options);
    expect(batch[0]?.tokenIds).not.toEqual([]);
    expect(mine.tokenIds).toEqual(
      (await views.support.generate(prompts[2] as { inputIds: number[] }, options)).tokenIds,
    );
    expect(views.support.identity).toBe(attached.identity);
    expect(views.sales.identity).not.toBe(views.support.identity);
    // logits and loss through a resident adapter are the attached adapter's too.
    expect(await views.support.logits([3, 4, 5])).toEqual(await attached.logits([3, 4, 5]));
    expect(await views.support.loss([3, 4, 5, 6])).toEqual(await attached.loss([3, 4, 5, 6]));
  });

  it("a cancelled request leaves at the next step and the others go on unchanged", async () => {
    const [first, second] = JOBS as [Job, Job];
    const alone = await run(second);
    const controller = new AbortController();
    const cancelled = views[first.on]
      .stream({ inputIds: first.inputIds }, { ...first.options, stopTokens: [], signal: controller.signal })
      [Symbol.asyncIterator]();
    await cancelled.next();
    const other = run(second);
    await cancelled.next();
    controller.abort();
    let next = await cancelled.next();
    while (!next.done) next = await cancelled.next();
    expect(next.value.finishReason).toBe("abort");
    expect(next.value.tokenIds.length).toBeLessThan(first.options.maxTokens as number);
    expect((await other).tokenIds).toEqual(alone.tokenIds);
  });

  it("a bad prompt fails its own call only", async () => {
    const long = Array.from({ length: TINY_LLAMA.max_position_embeddings + 1 }, () => 3);
    const good = run(JOBS[0] as Job);
    await expect(views.base.generate({ inputIds: long }, { maxTokens: 2 })).rejects.toMatchObject({
      code: "context_length_exceeded",
    });
    await expect(
      views.base.generateBatch([{ inputIds: [3] }, { inputIds: long }], { maxTokens: 2 }),
    ).rejects.toMatchObject({ code: "context_length_exceeded" });
    expect((await good).tokenIds).toHaveLength(24);
    expect(model.decoding.running).toBe(0);
  });

  it("maxBatch bounds the sequences decoded at once; the rest wait their turn", async () => {
    const alone = [];
    for (const job of JOBS) alone.push(await run(job));
    model.maxBatch = 2;
    try {
      const before = model.decoding;
      const results = await Promise.all(JOBS.map(run));
      const after = model.decoding;
      expect(results.map((result) => result.tokenIds)).toEqual(alone.map((result) => result.tokenIds));
      expect((after.rows - before.rows) / (after.steps - before.steps)).toBeLessThanOrEqual(2);
    } finally {
      model.maxBatch = 1_000;
    }
    expect(() => {
      model.maxBatch = 0;
    }).toThrow(/maxBatch/);
  });

  it("log-probabilities: the log-softmax of the raw logits, the best alternatives first", async () => {
    const result = await views.sales.generate(
      { inputIds: [9, 10] },
      {
        maxTokens: 6,
        temperature: 1.3,
        seed: 2,
        stopTokens: [],
        logprobs: true,
        topLogprobs: 3,
        returnLogits: true,
      },
    );
    const vocab = model.config.vocabSize;
    expect(result.logprobs).toHaveLength(6);
    for (const [step, entry] of (result.logprobs ?? []).entries()) {
      const row = (result.logits as Float32Array).subarray(step * vocab, (step + 1) * vocab);
      const max = Math.max(...row);
      const lse = max + Math.log(row.reduce((sum, value) => sum + Math.exp(value - max), 0));
      expect(entry.tokenId).toBe(result.tokenIds[step]);
      expect(entry.logprob).toBeCloseTo((row[entry.tokenId] as number) - lse, 5);
      const order = Array.from(row.keys()).sort((a, b) => (row[b] as number) - (row[a] as number));
      expect(entry.top?.map((top) => top.tokenId)).toEqual(order.slice(0, 3));
      expect(entry.top?.[0]?.logprob).toBeCloseTo((row[order[0] as number] as number) - lse, 5);
    }
    // Streamed, each chunk carries its token's.
    const chunks = [];
    for await (const chunk of views.sales.stream(
      { inputIds: [9, 10] },
      { maxTokens: 6, temperature: 1.3, seed: 2, stopTokens: [], logprobs: true },
    ))
      chunks.push(chunk);
    expect(chunks.map((chunk) => chunk.logprobs?.logprob)).toEqual(
      result.logprobs?.map((entry) => entry.logprob),
    );
    await expect(
      views.sales.generate({ inputIds: [9] }, { logprobs: true, topLogprobs: 21 }),
    ).rejects.toThrow(/topLogprobs/);
  });

  it("an adapter from another model is refused", async () => {
    await using other = await LocalModel.load(model.path, { quantization: "none" });
    const foreign = await other.openAdapter(adapters.sales);
    await expect(
      model.generate({ inputIds: [3] }, { maxTokens: 2, adapter: foreign.adapter }),
    ).rejects.toThrow(/another model/);
    expect((await foreign.generate({ inputIds: [3] }, { maxTokens: 2 })).tokenIds).toHaveLength(2);
  });
});
