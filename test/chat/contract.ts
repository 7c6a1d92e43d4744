/**
 * The behaviour every `ChatTarget` shows, whatever answers: a local model (with its adapter on or
 * off), the trainer's views, the local provider, OpenAI, Together and an OpenAI-compatible server
 * (their msw fakes, in the real APIs' shapes), and the test doubles. Each subject's test file calls
 * `chatTargetContract` with a setup.
 */
import { afterAll, describe, expect, it } from "vitest";
import type { ChatResult, ChatTarget } from "../../src/core/chat.js";
import { TunekitError } from "../../src/core/errors.js";
import type { ChatMessage } from "../../src/data/example.js";

export interface ContractSubject {
  target: ChatTarget;
  /** A conversation the target answers with at least a few tokens (greedy). */
  messages: ChatMessage[];
  /** Frees what the setup made. */
  dispose?(): Promise<void>;
}

export interface ChatContractSetup {
  subject(): Promise<ContractSubject>;
  /** A target whose calls fail, and the error class and code they fail with. */
  failing(): Promise<{ target: ChatTarget; error: abstract new (...args: never[]) => Error; code: string }>;
  /** Changes the weights behind `target` (an adapter's); only where a target has weights to change. */
  changeWeights?(target: ChatTarget): Promise<void>;
}

const GREEDY = { maxTokens: 8, temperature: 0 } as const;

async function collect(target: ChatTarget, messages: ChatMessage[], options = {}) {
  const stream = target.completeStream(messages, options);
  const deltas: string[] = [];
  for await (const delta of stream) deltas.push(delta.text);
  return { deltas, result: await stream.result };
}

/** Defines the `ChatTarget` contract for one kind of target. */
export function chatTargetContract(name: string, setup: ChatContractSetup): void {
  const made: ContractSubject[] = [];
  const subject = async () => {
    const value = await setup.subject();
    made.push(value);
    return value;
  };

  describe(`ChatTarget contract: ${name}`, () => {
    afterAll(async () => {
      for (const value of made.splice(0)) await value.dispose?.();
    });

    it("names itself: specification v2, provider, model id, a stable identity, capabilities", async () => {
      const { target } = await subject();
      expect(target.specificationVersion).toBe("v2");
      expect(target.provider).toMatch(/^[a-z-]+$/);
      expect(target.modelId.length).toBeGreaterThan(0);
      expect(target.identity.length).toBeGreaterThan(0);
      expect(target.identity).toBe(target.identity);
      expect(typeof target.capabilities.tools).toBe("boolean");
      expect(typeof target.capabilities.logprobs).toBe("boolean");
    });

    it("complete: text, a finish reason and usage", async () => {
      const { target, messages } = await subject();
      const result = await target.complete(messages, GREEDY);
      expect(typeof result.text).toBe("string");
      expect(["stop", "length", "tool_calls"]).toContain(result.finishReason);
      expect(result.usage?.promptTokens).toBeGreaterThan(0);
      expect(result.usage?.completionTokens).toBeGreaterThan(0);
      expect(result.usage?.completionTokens).toBeLessThanOrEqual(GREEDY.maxTokens);
    });

    it("completeStream: the deltas join to complete's text, and `result` is complete's result", async () => {
      const { target, messages } = await subject();
      const whole = await target.complete(messages, GREEDY);
      const { deltas, result } = await collect(target, messages, GREEDY);
      expect(deltas.join("")).toBe(whole.text);
      expect(result).toEqual(whole);
      // Awaiting `result` alone is enough: the reply runs without anyone reading the deltas.
      expect(await target.completeStream(messages, GREEDY).result).toEqual(whole);
    });

    it("stop: the reply ends before the first stop string", async () => {
      const { target, messages } = await subject();
      const whole = await target.complete(messages, { ...GREEDY, maxTokens: 12 });
      expect(
        whole.text.length,
        "the subject's reply is too short to test stop strings",
      ).toBeGreaterThanOrEqual(4);
      const stop = whole.text.slice(Math.floor(whole.text.length / 2), Math.floor(whole.text.length / 2) + 2);
      const cut = await target.complete(messages, { ...GREEDY, maxTokens: 12, stop: [stop] });
      expect(cut.text).toBe(whole.text.slice(0, whole.text.indexOf(stop)));
      expect(cut.finishReason).toBe("stop");
      const streamed = await collect(target, messages, { ...GREEDY, maxTokens: 12, stop: [stop] });
      expect(streamed.deltas.join("")).toBe(cut.text);
    });

    it('maxTokens: a reply cut by it ends with finishReason "length"', async () => {
      const { target, messages } = await subject();
      const result = await target.complete(messages, { temperature: 0, maxTokens: 2 });
      expect(result.finishReason).toBe("length");
      expect(result.usage?.completionTokens).toBe(2);
    });

    it("seed: the same seed gives the same sampled reply", async () => {
      const { target, messages } = await subject();
      const options = { maxTokens: 8, temperature: 1, seed: 1234 };
      const first = await target.complete(messages, options);
      expect(await target.complete(messages, options)).toEqual(first);
    });

    it("abort: an aborted signal rejects with its reason; a stream aborted under way ends with finishReason abort", async () => {
      const { target, messages } = await subject();
      const before = new AbortController();
      before.abort();
      await expect(target.complete(messages, { ...GREEDY, signal: before.signal })).rejects.toMatchObject({
        name: "AbortError",
      });
      await expect(
        target.completeStream(messages, { ...GREEDY, signal: before.signal }).result,
      ).rejects.toMatchObject({ name: "AbortError" });
      // Aborted while the request is in flight: the reply ends at once with what it had, in the loop
      // and in `result` alike.
      const inFlight = new AbortController();
      const stream = target.completeStream(messages, {
        temperature: 0,
        maxTokens: 64,
        signal: inFlight.signal,
      });
      queueMicrotask(() => inFlight.abort());
      const seen: string[] = [];
      for await (const delta of stream) seen.push(delta.text);
      const result = await stream.result;
      expect(result.finishReason).toBe("abort");
      expect(seen.join("")).toBe(result.text);
      // Aborted after the first delta, or the loop left early: the reply so far ("abort"), or the whole
      // reply when it had already ended.
      const whole = await target.complete(messages, { temperature: 0, maxTokens: 64 });
      const consistent = (ended: ChatResult) => {
        if (ended.finishReason === "abort") expect(whole.text.startsWith(ended.text)).toBe(true);
        else expect(ended).toEqual(whole);
      };
      const during = new AbortController();
      const aborted = target.completeStream(messages, {
        temperature: 0,
        maxTokens: 64,
        signal: during.signal,
      });
      for await (const _ of aborted) during.abort();
      consistent(await aborted.result);
      const left = target.completeStream(messages, { temperature: 0, maxTokens: 64 });
      for await (const _ of left) break;
      consistent(await left.result);
    });

    it("a failure surfaces as the right tunekit error, in complete, in the loop and in result", async () => {
      const { target: failing, error, code } = await setup.failing();
      const { messages } = await subject();
      const failure = await failing.complete(messages, GREEDY).catch((caught: unknown) => caught);
      expect(failure).toBeInstanceOf(error);
      expect(TunekitError.isInstance(failure) && failure.code).toBe(code);
      const stream = failing.completeStream(messages, GREEDY);
      await expect(stream.result).rejects.toBeInstanceOf(error);
      await expect(
        (async () => {
          for await (const _ of stream);
        })(),
      ).rejects.toBeInstanceOf(error);
    });

    it("bad input: no messages is an invalid_argument error", async () => {
      const { target } = await subject();
      await expect(target.complete([])).rejects.toMatchObject({ code: "invalid_argument" });
    });

    it("completeBatch (where a target has it) equals one complete per conversation, conversation i with seed + i", async () => {
      const { target, messages } = await subject();
      if (!target.completeBatch) return;
      const other: ChatMessage[] = [...messages.slice(0, -1), { role: "user", content: "And then?" }];
      const greedy = await target.completeBatch([messages, other], GREEDY);
      expect(greedy).toEqual([await target.complete(messages, GREEDY), await target.complete(other, GREEDY)]);
      const sampled = await target.completeBatch([messages, other], {
        maxTokens: 6,
        temperature: 1,
        seed: 40,
      });
      expect(sampled).toEqual([
        await target.complete(messages, { maxTokens: 6, temperature: 1, seed: 40 }),
        await target.complete(other, { maxTokens: 6, temperature: 1, seed: 41 }),
      ]);
    });

    it("logprobs (where supported): one per generated token, each <= 0, the alternatives most likely first", async () => {
      const { target, messages } = await subject();
      if (!target.capabilities.logprobs) return;
      const result: ChatResult = await target.complete(messages, {
        ...GREEDY,
        logprobs: true,
        topLogprobs: 2,
      });
      expect(result.logprobs?.length).toBe(result.usage?.completionTokens);
      for (const entry of result.logprobs ?? []) {
        expect(entry.logprob).toBeLessThanOrEqual(0);
        const top = entry.topLogprobs ?? [];
        expect(top.length).toBe(2);
        expect((top[0] as { logprob: number }).logprob).toBeGreaterThanOrEqual(
          (top[1] as { logprob: number }).logprob,
        );
      }
    });

    it("identity changes when the weights behind the target change", async () => {
      if (!setup.changeWeights) return;
      const { target } = await subject();
      const before = target.identity;
      await setup.changeWeights(target);
      expect(target.identity).not.toBe(before);
    });
  });
}
