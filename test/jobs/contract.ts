/**
 * The behaviour every fine-tuning provider shows through `FineTuneJob`, whatever runs the job: the
 * test double, the cloud adapters against their fakes, the local engine. Each provider's test file
 * calls `fineTuneJobContract` with a setup that makes its jobs short.
 */
import { afterAll, describe, expect, it } from "vitest";
import { FineTuneFailedError, TunekitError } from "../../src/core/errors.js";
import { Dataset } from "../../src/data/dataset.js";
import type { FineTuneJobEvent } from "../../src/jobs/events.js";
import { type CreateFineTuneJobOptions, FineTuneJob } from "../../src/jobs/fine-tune-job.js";
import type { FineTuningProvider, JobStatus } from "../../src/providers/spec.js";
import { InvalidDatasetError } from "../../src/validate/validator.js";
import { chatRow } from "../helpers.js";

/** A provider ready to run jobs, and what makes its jobs short. */
export interface ContractProvider {
  provider: FineTuningProvider;
  /** The base model to fine-tune. */
  model: string;
  /** Settings every job of this setup gets (e.g. few steps). */
  options?: Pick<CreateFineTuneJobOptions, "hyperparameters" | "providerOptions">;
  /** Frees what the setup made, after the tests that used it. */
  dispose?(): Promise<void>;
}

export interface ContractSetup {
  /** A provider whose jobs succeed. */
  succeeding(): Promise<ContractProvider>;
  /** A provider whose jobs run long enough to be cancelled while running. */
  longRunning(): Promise<ContractProvider>;
  /** A provider whose jobs fail; leave it out where the setup cannot make a job fail. */
  failing?(): Promise<ContractProvider>;
  /** Milliseconds between polls. Default 1; polls never slow down past 20 ms. */
  pollInterval?: number;
}

/** Twelve valid conversations with a system prompt: enough for every provider's minimum. */
export const CONTRACT_ROWS = Array.from({ length: 12 }, (_, index) =>
  chatRow(`question ${index}`, `answer number ${index}`, "Be kind."),
);

const TERMINAL_EVENTS = new Set(["succeeded", "failed", "cancelled"]);

async function collect(job: FineTuneJob): Promise<FineTuneJobEvent[]> {
  const events: FineTuneJobEvent[] = [];
  for await (const event of job.events()) events.push(event);
  return events;
}

const statuses = (events: FineTuneJobEvent[]): JobStatus[] =>
  events.flatMap((event) => (event.type === "status-changed" ? [event.status] : []));

/** The ids of one kind of event, in order. */
function ids(events: FineTuneJobEvent[], type: "message" | "metrics" | "checkpoint-created"): string[] {
  return events.flatMap((event) => {
    if (event.type !== type) return [];
    return [event.type === "checkpoint-created" ? event.checkpoint.id : event.id];
  });
}

/** Defines the `FineTuneJob` contract for one provider. */
export function fineTuneJobContract(name: string, setup: ContractSetup): void {
  const watch = { pollInterval: setup.pollInterval ?? 1, maxPollInterval: 20 };
  const made: ContractProvider[] = [];
  const provide = async (kind: () => Promise<ContractProvider>) => {
    const context = await kind();
    made.push(context);
    return context;
  };
  const create = (context: ContractProvider, training = Dataset.fromArray(CONTRACT_ROWS)) =>
    FineTuneJob.create({
      provider: context.provider,
      model: context.model,
      training,
      ...context.options,
      ...watch,
    });

  describe(`FineTuneJob contract: ${name}`, () => {
    afterAll(async () => {
      for (const context of made.splice(0)) await context.dispose?.();
    });

    // One job that succeeds, watched from creation to the end; several tests read it.
    let finished:
      | Promise<{ context: ContractProvider; job: FineTuneJob; events: FineTuneJobEvent[] }>
      | undefined;
    const succeeded = () => {
      finished ??= (async () => {
        const context = await provide(() => setup.succeeding());
        const job = await create(context);
        return { context, job, events: await collect(job) };
      })();
      return finished;
    };

    it("reports a job from status-changed to succeeded, running on the way, each event once", async () => {
      const { events } = await succeeded();
      expect(events[0]?.type).toBe("status-changed");
      expect(events.at(-1)?.type).toBe("succeeded");
      expect(events.filter((event) => TERMINAL_EVENTS.has(event.type))).toHaveLength(1);
      const seen = statuses(events);
      expect(seen.at(-1)).toBe("succeeded");
      expect(seen.indexOf("running")).toBeGreaterThanOrEqual(0);
      expect(seen.indexOf("running")).toBeLessThan(seen.indexOf("succeeded"));
      // A status-changed event is a change.
      for (const [index, status] of seen.entries()) if (index > 0) expect(status).not.toBe(seen[index - 1]);
      for (const type of ["message", "metrics", "checkpoint-created"] as const) {
        const list = ids(events, type);
        expect(new Set(list).size, `${type} ids`).toBe(list.length);
      }
    });

    it("reports metrics with increasing steps and a training loss", async () => {
      const { events } = await succeeded();
      const training = events.flatMap((event) =>
        event.type === "metrics" && event.metrics.trainLoss !== undefined ? [event.metrics] : [],
      );
      expect(training.length).toBeGreaterThan(0);
      for (const [index, metrics] of training.entries()) {
        expect(Number.isFinite(metrics.trainLoss)).toBe(true);
        expect(metrics.step).toBeGreaterThan(index === 0 ? 0 : (training[index - 1]?.step ?? 0));
      }
    });

    it("wait() resolves with the fine-tuned model, which answers through provider.chat", async () => {
      const { context, job } = await succeeded();
      const result = await job.wait();
      expect(result.id).toBe(job.id);
      expect(result.status).toBe("succeeded");
      expect(result.fineTunedModel).toEqual(expect.any(String));
      const target = context.provider.chat(result.fineTunedModel as string);
      const reply = await target.complete([{ role: "user", content: "question 1" }], { maxTokens: 8 });
      expect(reply.text).toEqual(expect.any(String));
    });

    it("gives a reader that starts after the end the same events", async () => {
      const { job, events } = await succeeded();
      expect(await collect(job)).toEqual(events);
    });

    it("attach(id) after the end replays the job from its first event", async () => {
      const { context, job, events } = await succeeded();
      const attached = await FineTuneJob.attach(context.provider, job.id, watch);
      const replay = await collect(attached);
      expect(replay[0]).toMatchObject({ type: "status-changed", status: "succeeded" });
      expect(replay.at(-1)?.type).toBe("succeeded");
      expect(ids(replay, "message")).toEqual(ids(events, "message"));
      // Where metrics or checkpoints come from their own endpoint (Together), a replay that reads it
      // all at once may interleave them differently with the rest: the same ones, then.
      for (const type of ["metrics", "checkpoint-created"] as const)
        expect(ids(replay, type).sort(), type).toEqual(ids(events, type).sort());
      expect((await attached.wait()).fineTunedModel).toBe((await job.wait()).fineTunedModel);
    });

    it("list() includes the jobs newest first, page by page", async () => {
      const context = await provide(() => setup.succeeding());
      const first = await create(context);
      const second = await create(context);
      const listed: string[] = [];
      for await (const info of FineTuneJob.list(context.provider)) listed.push(info.id);
      expect(listed.indexOf(first.id)).toBeGreaterThan(listed.indexOf(second.id));
      expect(listed.indexOf(second.id)).toBeGreaterThanOrEqual(0);
      const paged: string[] = [];
      for await (const info of FineTuneJob.list(context.provider, { limit: 1 })) paged.push(info.id);
      expect(paged).toEqual(listed);
      await Promise.all([first.wait(), second.wait()]);
    });

    it("cancel() of a running job ends it with cancelled", async () => {
      const context = await provide(() => setup.longRunning());
      const job = await create(context);
      for await (const event of job.events())
        if (event.type === "status-changed" && event.status === "running") break;
      await job.cancel();
      const events = await collect(job);
      expect(events.at(-1)?.type).toBe("cancelled");
      expect(statuses(events).at(-1)).toBe("cancelled");
      const error = await job.wait().catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(TunekitError);
      expect((error as TunekitError).code).toBe("fine_tune_cancelled");
    });

    it("refuses an invalid dataset with InvalidDatasetError before calling the provider", async () => {
      const context = await provide(() => setup.succeeding());
      const calls: string[] = [];
      const spy = new Proxy(context.provider, {
        get(target, key) {
          const value: unknown = Reflect.get(target, key, target);
          if (typeof value !== "function") return value;
          return (...args: unknown[]) => {
            calls.push(String(key));
            return (value as (...args: unknown[]) => unknown).apply(target, args);
          };
        },
      });
      const bad = [...CONTRACT_ROWS.slice(0, 11), { messages: [{ role: "user", content: "no reply" }] }];
      const error = await FineTuneJob.create({
        provider: spy,
        model: context.model,
        training: Dataset.fromArray(bad),
        ...context.options,
        ...watch,
      }).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(InvalidDatasetError);
      expect(calls).toEqual([]);
    });

    it.skipIf(!setup.failing)(
      "a failing job ends with failed and wait() rejects with FineTuneFailedError",
      async () => {
        const context = await provide(() => (setup.failing as () => Promise<ContractProvider>)());
        const job = await create(context);
        const events = await collect(job);
        const last = events.at(-1);
        expect(last?.type).toBe("failed");
        expect(statuses(events).at(-1)).toBe("failed");
        expect(last?.type === "failed" && last.error?.message).toEqual(expect.any(String));
        const error = await job.wait().catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(FineTuneFailedError);
        expect((error as FineTuneFailedError).jobId).toBe(job.id);
      },
    );
  });
}
