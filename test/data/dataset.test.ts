import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { HttpResponse, http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DataFormatError, TunekitError } from "../../src/core/errors.js";
import { Dataset } from "../../src/data/dataset.js";
import type { Example } from "../../src/data/example.js";
import { chatRow, jsonl, tempDir, tempFile } from "../helpers.js";

const rows = Array.from({ length: 20 }, (_, index) => chatRow(`question ${index}`, `answer ${index}`));
const users = (examples: Example[]) =>
  examples.map((example) => (example.kind === "chat" ? example.messages[0]?.content : undefined));

describe("Dataset", () => {
  it("iterates canonical examples and can be iterated again", async () => {
    const dataset = await Dataset.fromFile(await tempFile("a.jsonl", jsonl(rows)));
    expect(await dataset.toArray()).toHaveLength(20);
    expect((await dataset.toArray())[3]).toEqual({ kind: "chat", ...rows[3] });
  });

  it("iteration throws a located DataFormatError at the first bad record", async () => {
    const path = await tempFile(
      "bad.jsonl",
      `${JSON.stringify(rows[0])}\n{"messages": [{"role": "user", "content": 1}]}\n`,
    );
    const error = await (await Dataset.fromFile(path)).toArray().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(DataFormatError);
    expect(TunekitError.isInstance(error)).toBe(true);
    expect(error).toMatchObject({ code: "invalid_record", location: { file: path, line: 2 } });
    expect((error as Error).message).toContain(`${path}:2: messages[0].content`);
  });

  it("a file that mixes formats is an error naming the first line of each", async () => {
    const path = await tempFile(
      "mixed.jsonl",
      jsonl([rows[0], rows[1], { prompt: "p", completion: "c" }, { text: "t" }]),
    );
    const problems = [];
    for await (const record of (await Dataset.fromFile(path)).records()) problems.push(...record.problems);
    expect(problems.map((problem) => [problem.line, problem.code])).toEqual([
      [3, "mixed_formats"],
      [4, "mixed_formats"],
    ]);
    expect(problems[1]?.message).toBe(
      "the source mixes formats: chat from line 1, completion from line 3, and text from line 4; use one format per file",
    );
  });

  it("an explicit format overrides detection", async () => {
    const path = await tempFile("a.jsonl", jsonl([{ prompt: "p", completion: "c", text: "ignored" }]));
    expect(await (await Dataset.fromFile(path)).toArray()).toEqual([
      { kind: "completion", prompt: "p", completion: "c" },
    ]);
    expect(await (await Dataset.fromFile(path, { format: "text" })).toArray()).toEqual([
      { kind: "text", text: "ignored" },
    ]);
  });

  it("fromArray takes rows in any format and canonical examples", async () => {
    const dataset = Dataset.fromArray([
      {
        kind: "chat",
        messages: [
          { role: "user", content: "a" },
          { role: "assistant", content: "b" },
        ],
      },
      {
        messages: [
          { role: "user", content: "c" },
          { role: "assistant", content: "d" },
        ],
      },
    ]);
    expect(users(await dataset.toArray())).toEqual(["a", "c"]);
    const bad = Dataset.fromArray([{ kind: "chat", messages: "nope" }]);
    await expect(bad.toArray()).rejects.toMatchObject({ location: { file: "array", line: 1 } });
  });

  it("map, filter, take and concat compose lazily", async () => {
    const dataset = Dataset.fromArray(rows);
    const mapped = dataset
      .filter((_, index) => index % 2 === 0)
      .map((example) =>
        example.kind === "chat"
          ? { ...example, messages: [{ role: "system" as const, content: "Be brief." }, ...example.messages] }
          : example,
      )
      .take(3);
    const examples = await mapped.toArray();
    expect(examples).toHaveLength(3);
    expect(examples.map((example) => example.kind === "chat" && example.messages[1]?.content)).toEqual([
      "question 0",
      "question 2",
      "question 4",
    ]);
    expect(await dataset.take(2).concat(dataset.take(1)).toArray()).toHaveLength(3);
  });

  it("take stops reading the source early", async () => {
    let pulled = 0;
    const infinite = Dataset.fromArray(
      new Proxy([], {
        get: (_, key) =>
          key === "entries"
            ? function* () {
                for (let i = 0; ; i++) {
                  pulled++;
                  yield [i, { text: `t${i}` }];
                }
              }
            : undefined,
      }) as unknown[],
    );
    expect(await infinite.take(5).toArray()).toHaveLength(5);
    expect(pulled).toBeLessThan(10);
  });

  it("shuffle and split are deterministic for a seed, and split is exact", async () => {
    const dataset = Dataset.fromArray(rows);
    const once = users(await dataset.shuffle(42).toArray());
    expect(users(await dataset.shuffle(42).toArray())).toEqual(once);
    expect(users(await dataset.shuffle(7).toArray())).not.toEqual(once);
    expect([...once].sort()).toEqual(users(await dataset.toArray()).sort());

    const { train, validation } = dataset.split({ validation: 0.25, seed: 1 });
    const [trainUsers, validationUsers] = [users(await train.toArray()), users(await validation.toArray())];
    expect(validationUsers).toHaveLength(5);
    expect(trainUsers).toHaveLength(15);
    expect(new Set([...trainUsers, ...validationUsers]).size).toBe(20);
    expect(users(await dataset.split({ validation: 0.25, seed: 1 }).validation.toArray())).toEqual(
      validationUsers,
    );
    expect(users(await dataset.split({ validation: 3 }).validation.toArray())).toHaveLength(3);
  });

  it("dedupe drops repeated examples, keeping the first", async () => {
    const dataset = Dataset.fromArray([rows[0], rows[1], rows[0], { messages: rows[1]?.messages }]);
    expect(users(await dataset.dedupe().toArray())).toEqual(["question 0", "question 1"]);
  });

  it("stats counts kinds, formats and message distributions", async () => {
    const stats = await Dataset.fromArray([...rows.slice(0, 3), { messages: [] }]).stats();
    expect(stats).toMatchObject({ examples: 3, invalid: 1, kinds: { chat: 3 }, formats: { chat: 3 } });
    expect(stats.messages).toEqual({ min: 2, max: 2, mean: 2, median: 2, p10: 2, p90: 2 });
  });
});

describe("Dataset.toJSONL", () => {
  it("writes each example in its natural format or the one asked for", async () => {
    const dir = await tempDir();
    const dataset = Dataset.fromArray([{ instruction: "i", output: "o" }]);
    await dataset.toJSONL(join(dir, "chat.jsonl"));
    expect(await readFile(join(dir, "chat.jsonl"), "utf8")).toBe(
      `${JSON.stringify({
        messages: [
          { role: "user", content: "i" },
          { role: "assistant", content: "o" },
        ],
      })}\n`,
    );
    await dataset.toJSONL(join(dir, "sharegpt.jsonl"), { format: "sharegpt" });
    expect(JSON.parse(await readFile(join(dir, "sharegpt.jsonl"), "utf8"))).toEqual({
      conversations: [
        { from: "human", value: "i" },
        { from: "gpt", value: "o" },
      ],
    });
  });

  it("leaves the earlier file intact and no temporary file when a record fails", async () => {
    const dir = await tempDir();
    const out = join(dir, "out.jsonl");
    await writeFile(out, "previous content\n");
    const dataset = Dataset.fromArray([...rows.slice(0, 2), { messages: [{ role: "user", content: 5 }] }]);
    await expect(dataset.toJSONL(out)).rejects.toMatchObject({
      code: "invalid_record",
      location: { line: 3 },
    });
    expect(await readFile(out, "utf8")).toBe("previous content\n");
    expect(await readdir(dir)).toEqual(["out.jsonl"]);
  });
});

describe("Dataset.fromURL", () => {
  const server = setupServer(
    http.get("https://data.example.com/train.jsonl", () => new HttpResponse(jsonl(rows.slice(0, 3)))),
    http.get(
      "https://data.example.com/train.jsonl.gz",
      () => new HttpResponse(gzipSync(jsonl(rows.slice(0, 2)))),
    ),
    http.get(
      "https://data.example.com/export",
      () => new HttpResponse('prompt,completion\n"a","b"\n', { headers: { "content-type": "text/csv" } }),
    ),
    http.get("https://data.example.com/missing.jsonl", () => new HttpResponse("no", { status: 404 })),
  );
  beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
  afterAll(() => server.close());

  it("streams JSONL, gzip, and uses the content-type when the name says nothing", async () => {
    expect(await (await Dataset.fromURL("https://data.example.com/train.jsonl")).toArray()).toHaveLength(3);
    expect(await (await Dataset.fromURL("https://data.example.com/train.jsonl.gz")).toArray()).toHaveLength(
      2,
    );
    expect(await (await Dataset.fromURL("https://data.example.com/export")).toArray()).toEqual([
      { kind: "completion", prompt: "a", completion: "b" },
    ]);
  });

  it("turns an HTTP error into a SourceError with the status", async () => {
    const dataset = await Dataset.fromURL("https://data.example.com/missing.jsonl");
    await expect(dataset.toArray()).rejects.toMatchObject({ code: "http_error", status: 404 });
  });
});
