import { HttpResponse, http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  AuthenticationError,
  BadRequestError,
  ConnectionError,
  NotFoundError,
  ProviderError,
  RateLimitError,
} from "../../src/core/errors.js";
import {
  backoff,
  type HttpRequest,
  isRetryableError,
  isRetryableStatus,
  request,
  requestJson,
  retryDelay,
} from "../../src/core/http.js";

const URL_ = "https://api.example.test/v1/things";
const KEY = "sk-test-secret-key-0123456789";
const schema = z.object({ ok: z.boolean() });

const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

/** Serves the answers in order, one per request, and counts the requests. */
function serve(...answers: Array<() => Response>) {
  let calls = 0;
  server.use(
    http.all(URL_, () => {
      const answer = answers[Math.min(calls, answers.length - 1)];
      calls++;
      if (!answer) throw new Error("no answer");
      return answer();
    }),
  );
  return { calls: () => calls };
}

/** A `sleep` that records the waits and returns at once. */
function recordSleep() {
  const waits: number[] = [];
  const sleep = async (ms: number, signal?: AbortSignal) => {
    signal?.throwIfAborted();
    waits.push(ms);
  };
  return { waits, sleep };
}

function options(extra: Partial<HttpRequest> = {}): HttpRequest & { schema: typeof schema } {
  return {
    fetch: (input, init) => fetch(input, init),
    url: URL_,
    provider: "acme",
    schema,
    random: () => 0,
    ...extra,
  };
}

async function failure(promise: Promise<unknown>): Promise<ProviderError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(ProviderError);
  return error as ProviderError;
}

const ok = () => HttpResponse.json({ ok: true });
const status =
  (code: number, headers: Record<string, string> = {}) =>
  () =>
    HttpResponse.json({ error: { message: `failed with ${code}` } }, { status: code, headers });

describe("requestJson", () => {
  it("returns the body checked against the schema, keeping unknown fields out of the way", async () => {
    server.use(http.get(URL_, () => HttpResponse.json({ ok: true, extra: 1 })));
    await expect(requestJson(options())).resolves.toEqual({ ok: true });
  });

  it("sends JSON bodies with their content type and the given headers", async () => {
    let seen: { body: unknown; type: string | null; auth: string | null } | undefined;
    server.use(
      http.post(URL_, async ({ request }) => {
        seen = {
          body: await request.json(),
          type: request.headers.get("content-type"),
          auth: request.headers.get("authorization"),
        };
        return ok();
      }),
    );
    await requestJson(
      options({ method: "POST", json: { a: 1 }, headers: { Authorization: `Bearer ${KEY}` } }),
    );
    expect(seen).toEqual({ body: { a: 1 }, type: "application/json", auth: `Bearer ${KEY}` });
  });

  it("names an answer that is not JSON, or not the expected shape, as invalid_response", async () => {
    server.use(http.get(URL_, () => new HttpResponse("<html>", { status: 200 })));
    expect((await failure(requestJson(options()))).code).toBe("invalid_response");
    server.use(http.get(URL_, () => HttpResponse.json({ ok: "yes" })));
    const error = await failure(requestJson(options()));
    expect(error.code).toBe("invalid_response");
    expect(error.message).toContain("at ok");
    expect(error.cause).toBeDefined();
  });
});

describe("retries", () => {
  it("retries a 429 after the seconds retry-after asks", async () => {
    const served = serve(status(429, { "retry-after": "2" }), ok);
    const { waits, sleep } = recordSleep();
    await expect(requestJson(options({ sleep }))).resolves.toEqual({ ok: true });
    expect(waits).toEqual([2000]);
    expect(served.calls()).toBe(2);
  });

  it("prefers retry-after-ms, and reads retry-after as an HTTP date", async () => {
    serve(status(429, { "retry-after-ms": "250", "retry-after": "9" }), ok);
    const first = recordSleep();
    await requestJson(options({ sleep: first.sleep }));
    expect(first.waits).toEqual([250]);

    const date = new Date(Date.now() + 5000).toUTCString();
    serve(status(503, { "retry-after": date }), ok);
    const second = recordSleep();
    await requestJson(options({ sleep: second.sleep }));
    expect(second.waits[0]).toBeGreaterThan(3000);
    expect(second.waits[0]).toBeLessThanOrEqual(5000);
  });

  it("ignores a retry-after of a minute or more and backs off instead", async () => {
    serve(status(429, { "retry-after": "60" }), ok);
    const { waits, sleep } = recordSleep();
    await requestJson(options({ sleep }));
    expect(waits).toEqual([500]);
  });

  it("backs off 0.5 s, doubling up to 8 s, with up to 25% jitter off", () => {
    expect([0, 1, 2, 3, 4, 5, 6].map((attempt) => backoff(attempt, () => 0))).toEqual([
      500, 1000, 2000, 4000, 8000, 8000, 8000,
    ]);
    expect(backoff(0, () => 1)).toBe(375);
    expect(backoff(3, () => 0.5)).toBe(3500);
    expect(retryDelay(new Headers({ "retry-after": "soon" }), 1, () => 0)).toBe(1000);
    expect(retryDelay(new Headers({ "retry-after": "-1" }), 0, () => 0)).toBe(500);
  });

  it.each([408, 409, 429, 500, 502, 503])(
    "retries %i twice by default, then throws the last error",
    async (code) => {
      const served = serve(status(code));
      const { waits, sleep } = recordSleep();
      const error = await failure(requestJson(options({ sleep })));
      expect(error.status).toBe(code);
      expect(served.calls()).toBe(3);
      expect(waits).toEqual([500, 1000]);
      if (code === 429) expect(error).toBeInstanceOf(RateLimitError);
    },
  );

  it("follows maxRetries", async () => {
    const served = serve(status(500));
    const { sleep } = recordSleep();
    await failure(requestJson(options({ sleep, maxRetries: 0 })));
    expect(served.calls()).toBe(1);
    const again = serve(status(500), status(500), status(500), status(500), ok);
    await requestJson(options({ sleep, maxRetries: 4 }));
    expect(again.calls()).toBe(5);
  });

  it.each([
    [400, BadRequestError],
    [401, AuthenticationError],
    [404, NotFoundError],
    [422, BadRequestError],
  ])("does not retry %i", async (code, kind) => {
    const served = serve(status(code));
    const { waits, sleep } = recordSleep();
    const error = await failure(requestJson(options({ sleep })));
    expect(error).toBeInstanceOf(kind);
    expect(error.message).toBe(`acme: failed with ${code}`);
    expect(served.calls()).toBe(1);
    expect(waits).toEqual([]);
  });

  it("does what x-should-retry says", async () => {
    const retried = serve(status(400, { "x-should-retry": "true" }), ok);
    await requestJson(options({ sleep: recordSleep().sleep }));
    expect(retried.calls()).toBe(2);
    const kept = serve(status(503, { "x-should-retry": "false" }), ok);
    await failure(requestJson(options({ sleep: recordSleep().sleep })));
    expect(kept.calls()).toBe(1);
  });

  it("retries a dropped connection, then gives a ConnectionError that keeps the cause", async () => {
    const recovered = serve(() => HttpResponse.error(), ok);
    await expect(requestJson(options({ sleep: recordSleep().sleep }))).resolves.toEqual({ ok: true });
    expect(recovered.calls()).toBe(2);

    const dead = serve(() => HttpResponse.error());
    const { waits, sleep } = recordSleep();
    const error = await failure(requestJson(options({ sleep })));
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error.code).toBe("connection_failed");
    expect(error.status).toBeUndefined();
    expect(error.cause).toBeInstanceOf(TypeError);
    expect(error.message).toContain("GET https://api.example.test/v1/things");
    expect(dead.calls()).toBe(3);
    expect(waits).toEqual([500, 1000]);
  });

  it("treats a fetch that throws ECONNRESET as a dropped connection", async () => {
    let calls = 0;
    const reset = Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });
    const flaky: typeof fetch = async () => {
      calls++;
      if (calls === 1) throw reset;
      return Response.json({ ok: true });
    };
    await expect(requestJson(options({ fetch: flaky, sleep: recordSleep().sleep }))).resolves.toEqual({
      ok: true,
    });
    expect(calls).toBe(2);
  });
});

describe("abort", () => {
  it("sends nothing once the signal has fired", async () => {
    const served = serve(ok);
    const controller = new AbortController();
    controller.abort(new Error("stop"));
    await expect(requestJson(options({ signal: controller.signal }))).rejects.toThrow("stop");
    expect(served.calls()).toBe(0);
  });

  it("never retries after the signal fired during a wait", async () => {
    const served = serve(status(500));
    const controller = new AbortController();
    const sleep = async (_ms: number, signal?: AbortSignal) => {
      controller.abort();
      signal?.throwIfAborted();
    };
    const error = await requestJson(options({ sleep, signal: controller.signal })).catch(
      (caught: unknown) => caught,
    );
    expect((error as Error).name).toBe("AbortError");
    expect(served.calls()).toBe(1);
  });

  it("does not retry when the request itself was aborted", async () => {
    let calls = 0;
    const controller = new AbortController();
    const aborting: typeof fetch = async () => {
      calls++;
      controller.abort();
      throw new DOMException("This operation was aborted", "AbortError");
    };
    const { waits, sleep } = recordSleep();
    const error = await requestJson(options({ fetch: aborting, sleep, signal: controller.signal })).catch(
      (caught: unknown) => caught,
    );
    expect((error as Error).name).toBe("AbortError");
    expect(calls).toBe(1);
    expect(waits).toEqual([]);
  });

  it("cancels the default wait when the signal fires", async () => {
    serve(status(429, { "retry-after": "30" }), ok);
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("gave up")), 20);
    const started = Date.now();
    await expect(requestJson(options({ signal: controller.signal }))).rejects.toThrow("gave up");
    expect(Date.now() - started).toBeLessThan(5000);
  });
});

describe("errors", () => {
  it("keeps the request id and the body as the cause", async () => {
    server.use(
      http.get(URL_, () =>
        HttpResponse.json(
          { error: { message: "model not found", code: "model_not_found" } },
          { status: 404, headers: { "x-request-id": "req_123" } },
        ),
      ),
    );
    const error = await failure(requestJson(options()));
    expect(error.requestId).toBe("req_123");
    expect(error.provider).toBe("acme");
    expect(error.message).toBe("acme: model not found");
    expect(error.cause).toEqual({
      status: 404,
      body: { error: { message: "model not found", code: "model_not_found" } },
    });
  });

  it.each([
    [{ error: "flat error" }, "flat error"],
    [{ message: "top message" }, "top message"],
    [{ detail: "fastapi detail" }, "fastapi detail"],
  ])("reads the message of %j", async (body, message) => {
    server.use(http.get(URL_, () => HttpResponse.json(body, { status: 400 })));
    expect((await failure(requestJson(options()))).message).toBe(`acme: ${message}`);
  });

  it("uses a plain-text body, or the status when there is none", async () => {
    server.use(http.get(URL_, () => new HttpResponse("upstream exploded", { status: 400 })));
    expect((await failure(requestJson(options()))).message).toBe("acme: upstream exploded");
    server.use(http.get(URL_, () => new HttpResponse(null, { status: 403, statusText: "Forbidden" })));
    expect((await failure(requestJson(options()))).message).toBe(
      "acme: GET https://api.example.test/v1/things answered 403 Forbidden",
    );
  });

  it("never lets a secret into a message, even when the server echoes it", async () => {
    const errors: ProviderError[] = [];
    const echo = `Incorrect API key provided: ${KEY}`;
    server.use(http.get(URL_, () => HttpResponse.json({ error: { message: echo } }, { status: 401 })));
    errors.push(await failure(requestJson(options({ secrets: [KEY] }))));
    server.use(http.get(URL_, () => new HttpResponse(`bad key ${KEY}`, { status: 400 })));
    errors.push(await failure(requestJson(options({ secrets: [KEY] }))));
    server.use(http.get(URL_, () => HttpResponse.json({ ok: KEY })));
    errors.push(await failure(requestJson(options({ secrets: [KEY] }))));
    const leaking: typeof fetch = async () => {
      throw new TypeError(`fetch failed for ${KEY}`);
    };
    errors.push(await failure(requestJson(options({ fetch: leaking, secrets: [KEY], maxRetries: 0 }))));
    for (const error of errors) {
      expect(error.message).not.toContain(KEY);
      if (!(error.cause instanceof Error)) expect(JSON.stringify(error.cause ?? null)).not.toContain(KEY);
    }
    expect(errors[0]?.message).toBe("acme: Incorrect API key provided: [redacted]");
  });

  it("never puts a URL's query (a pre-signed signature) in a message", async () => {
    const signed = `${URL_}?X-Amz-Signature=abcdef123456`;
    server.use(http.put(URL_, () => HttpResponse.error()));
    const error = await failure(request({ ...options(), url: signed, method: "PUT", maxRetries: 0 }));
    expect(error.message).not.toContain("abcdef123456");
  });
});

describe("request", () => {
  it("hands back a redirect when asked not to follow it", async () => {
    server.use(
      http.post(
        URL_,
        () => new HttpResponse(null, { status: 302, headers: { Location: "https://storage.test/x" } }),
      ),
    );
    const response = await request({
      ...options(),
      method: "POST",
      redirect: "manual",
      expectStatus: (code) => code === 302,
    });
    expect(response.status).toBe(302);
    expect(response.headers.get("location")).toBe("https://storage.test/x");
  });

  it("sends bytes as they are", async () => {
    let received: Uint8Array | undefined;
    server.use(
      http.put(URL_, async ({ request: sent }) => {
        received = new Uint8Array(await sent.arrayBuffer());
        return new HttpResponse(null, { status: 200 });
      }),
    );
    await request({ ...options(), method: "PUT", body: new Uint8Array([1, 2, 3]) });
    expect([...(received ?? [])]).toEqual([1, 2, 3]);
  });
});

describe("the retry rule", () => {
  it("retries 408, 409, 429, 5xx and calls that got no answer, nothing else", () => {
    expect([400, 401, 403, 404, 408, 409, 422, 429, 500, 502, 503].filter(isRetryableStatus)).toEqual([
      408, 409, 429, 500, 502, 503,
    ]);
    const error = (status: number | undefined) =>
      status === undefined
        ? new ConnectionError("connection_failed", "no answer", { provider: "x" })
        : ProviderError.fromStatus(status, "m", { provider: "x" });
    expect(isRetryableError(error(undefined))).toBe(true);
    expect(isRetryableError(error(429))).toBe(true);
    expect(isRetryableError(error(404))).toBe(false);
    expect(isRetryableError(new Error("not a provider's"))).toBe(false);
  });
});
