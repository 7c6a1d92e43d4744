/**
 * The one way tunekit builds a `ChatStream`: the reply starts at once (so awaiting `result` alone is
 * enough), deltas queue until the caller reads them, leaving the loop early or the caller's signal
 * ends the reply, and a failure reaches both the loop and `result` without ever being an unhandled
 * rejection.
 */
import type { ChatDelta, ChatResult, ChatStream } from "./chat.js";

/**
 * Runs `produce` now. It calls `emit` for each delta and resolves to the result; `signal` fires when
 * the caller aborts or leaves the loop early, and `produce` then ends as soon as it can (a reply ended
 * that way resolves with `finishReason: "abort"`).
 */
export function chatStream(
  produce: (emit: (delta: ChatDelta) => void, signal: AbortSignal) => Promise<ChatResult>,
  signal?: AbortSignal,
): ChatStream {
  const controller = new AbortController();
  const forward = () => controller.abort(signal?.reason);
  if (signal?.aborted) forward();
  else signal?.addEventListener("abort", forward, { once: true });

  const queue: ChatDelta[] = [];
  let wake: (() => void) | undefined;
  let settled = false;
  let text = "";
  const notify = () => {
    wake?.();
    wake = undefined;
  };
  const abortedBefore = controller.signal.aborted;
  const result = (async (): Promise<ChatResult> => {
    try {
      return await produce((delta) => {
        if (settled) return;
        queue.push(delta);
        text += delta.text;
        notify();
      }, controller.signal);
    } catch (error) {
      // Aborted once the reply was under way: it ends with what it had, whichever step the abort hit.
      const abort = error === controller.signal.reason || (error as Error | undefined)?.name === "AbortError";
      if (!abortedBefore && controller.signal.aborted && abort) return { text, finishReason: "abort" };
      throw error;
    }
  })().finally(() => {
    settled = true;
    signal?.removeEventListener("abort", forward);
    notify();
  });
  // A caller may only iterate, or only await `result`: neither leaves a rejection unhandled.
  result.catch(() => undefined);

  let iterated = false;
  return {
    result,
    [Symbol.asyncIterator](): AsyncIterator<ChatDelta> {
      if (iterated) throw new TypeError("a ChatStream can be iterated once");
      iterated = true;
      return {
        async next(): Promise<IteratorResult<ChatDelta>> {
          for (;;) {
            const delta = queue.shift();
            if (delta) return { value: delta, done: false };
            if (settled) {
              await result; // rethrows the failure, if any
              return { value: undefined, done: true };
            }
            await new Promise<void>((resolve) => {
              wake = resolve;
            });
          }
        },
        async return(): Promise<IteratorResult<ChatDelta>> {
          if (!settled) controller.abort();
          await result.catch(() => undefined);
          return { value: undefined, done: true };
        },
      };
    },
  };
}

/** The text of a reply cut before the first of `stops`, and whether one was found. */
export function cutAtStop(
  text: string,
  stops: readonly string[] | undefined,
): { text: string; stopped: boolean } {
  let cut = -1;
  for (const stop of stops ?? []) {
    if (stop === "") continue;
    const at = text.indexOf(stop);
    if (at >= 0 && (cut < 0 || at < cut)) cut = at;
  }
  return cut < 0 ? { text, stopped: false } : { text: text.slice(0, cut), stopped: true };
}
