import { gzipSync } from "node:zlib";
import { parquetWriteBuffer } from "hyparquet-writer";
import { describe, expect, it } from "vitest";
import { Dataset } from "../../src/data/dataset.js";
import type { DatasetRecord } from "../../src/data/records.js";
import { chatRow, jsonl, tempFile } from "../helpers.js";

async function records(path: string): Promise<DatasetRecord[]> {
  const all: DatasetRecord[] = [];
  for await (const record of (await Dataset.fromFile(path)).records()) all.push(record);
  return all;
}

const codes = (list: DatasetRecord[]) =>
  list.flatMap((record) => record.problems.map((p) => `${p.line}:${p.code}`));

describe("JSONL: bad input becomes located problems, never a crash", () => {
  it("reads valid lines and keeps the line numbers", async () => {
    const path = await tempFile("a.jsonl", jsonl([chatRow("a"), chatRow("b")]));
    const list = await records(path);
    expect(list.map((record) => record.location)).toEqual([
      { file: path, line: 1 },
      { file: path, line: 2 },
    ]);
    expect(list.every((record) => record.example?.kind === "chat")).toBe(true);
  });

  it("strips a BOM and CRLF line ends", async () => {
    const text = `\uFEFF${JSON.stringify(chatRow("a"))}\r\n${JSON.stringify(chatRow("b"))}\r\n`;
    const list = await records(await tempFile("bom.jsonl", text));
    expect(codes(list)).toEqual([]);
    expect(list).toHaveLength(2);
  });

  it("reports blank lines as warnings and invalid JSON as errors, and goes on", async () => {
    const text = `${JSON.stringify(chatRow("a"))}\n\n{"messages": [\n   \n${JSON.stringify(chatRow("b"))}`;
    const list = await records(await tempFile("mixed.jsonl", text));
    expect(codes(list)).toEqual(["2:blank_line", "3:invalid_json", "4:blank_line"]);
    expect(list.filter((record) => record.example)).toHaveLength(2);
    expect(list[2]?.problems[0]?.message).toMatch(/invalid JSON/);
  });

  it("reports invalid UTF-8 at its line", async () => {
    const bad = Buffer.concat([Buffer.from('{"text": "caf'), Buffer.from([0xc3, 0x28]), Buffer.from('"}\n')]);
    const path = await tempFile(
      "utf8.jsonl",
      Buffer.concat([Buffer.from(`${JSON.stringify({ text: "ok" })}\n`), bad]),
    );
    expect(codes(await records(path))).toEqual(["2:invalid_utf8"]);
  });

  it("reads a 15 MB line (under the 16 MiB default limit)", async () => {
    const big = "x".repeat(15 * 1024 * 1024);
    const path = await tempFile(
      "big.jsonl",
      `${JSON.stringify({ text: big })}\n${JSON.stringify({ text: "small" })}\n`,
    );
    const list = await records(path);
    expect(codes(list)).toEqual([]);
    expect(list[0]?.example).toMatchObject({ kind: "text" });
    expect(list[0]?.example?.kind === "text" && list[0].example.text.length).toBe(big.length);
  });

  it("skips a line over maxRecordBytes without holding it, saying how long it was", async () => {
    const path = await tempFile(
      "long.jsonl",
      `${JSON.stringify({ text: "y".repeat(5000) })}\n${JSON.stringify({ text: "ok" })}\n`,
    );
    const dataset = await Dataset.fromFile(path, { maxRecordBytes: 1000 });
    const list: DatasetRecord[] = [];
    for await (const record of dataset.records()) list.push(record);
    expect(codes(list)).toEqual(["1:record_too_long"]);
    expect(list[0]?.problems[0]?.message).toBe(
      "record is 4.9 KiB (5011 bytes), over the 1000 bytes limit (maxRecordBytes); skipped unread",
    );
    expect(list[1]?.example).toEqual({ kind: "text", text: "ok" });
  });

  it("refuses a maxRecordBytes that is not a whole number > 0", async () => {
    const path = await tempFile("ok.jsonl", jsonl([chatRow("a")]));
    const dataset = await Dataset.fromFile(path, { maxRecordBytes: -1 });
    await expect(dataset.toArray()).rejects.toMatchObject({ code: "invalid_argument" });
  });

  it("refuses deep nesting instead of overflowing the stack", async () => {
    const deep = `{"messages": ${"[".repeat(100_000)}${"]".repeat(100_000)}}`;
    expect(codes(await records(await tempFile("deep.jsonl", `${deep}\n`)))).toEqual(["1:too_deep"]);
  });

  it("numbers where strings belong and records that are not objects", async () => {
    const text = jsonl([
      { messages: [{ role: "user", content: 42 }] },
      7,
      [1],
      null,
      {
        messages: [
          { role: "user", content: "q" },
          { role: 5, content: "a" },
        ],
      },
    ]);
    expect(codes(await records(await tempFile("types.jsonl", text)))).toEqual([
      "1:invalid_record",
      "2:data_type",
      "3:data_type",
      "4:data_type",
      "5:invalid_record",
    ]);
  });

  it("an empty file is one problem", async () => {
    expect(codes(await records(await tempFile("empty.jsonl", "")))).toEqual(["undefined:empty_file"]);
  });

  it("reads gzipped JSONL", async () => {
    const path = await tempFile("a.jsonl.gz", gzipSync(jsonl([chatRow("a"), chatRow("b")])));
    expect((await (await Dataset.fromFile(path)).toArray()).length).toBe(2);
  });

  it("throws a located error for a missing file or an unknown extension", async () => {
    await expect(Dataset.fromFile("/nope/train.jsonl")).rejects.toMatchObject({
      code: "file_not_found",
      message: "/nope/train.jsonl: no such file",
    });
    await expect(Dataset.fromFile(await tempFile("data.txt", "x"))).rejects.toMatchObject({
      code: "unknown_file_type",
    });
  });
});

describe("JSON arrays stream element by element", () => {
  it("reads elements with the line each starts on", async () => {
    const text = `[\n  ${JSON.stringify(chatRow("a, [b] {c}"))},\n  {"text": "quote \\" and ] inside"}\n]\n`;
    const list = await records(await tempFile("a.json", text));
    expect(list.map((record) => record.location.line)).toEqual([2, 3]);
    expect(list[1]?.example).toEqual({ kind: "text", text: 'quote " and ] inside' });
  });

  it("streams across chunk boundaries", async () => {
    const rows = Array.from({ length: 3000 }, (_, index) => ({ text: `row ${index} ${"z".repeat(500)}` }));
    const list = await records(await tempFile("many.json", JSON.stringify(rows, null, 1)));
    expect(list).toHaveLength(3000);
    expect(list[2999]?.example).toEqual(rows[2999] && { kind: "text", ...rows[2999] });
  });

  it("a .json file of JSON lines reads as JSONL", async () => {
    expect(await records(await tempFile("lines.json", jsonl([{ text: "a" }, { text: "b" }])))).toHaveLength(
      2,
    );
  });

  it("reports a bad element, a non-array and an unclosed array", async () => {
    expect(codes(await records(await tempFile("bad.json", '[{"text": "a"},\n{"text": }]')))).toEqual([
      "2:invalid_json",
    ]);
    expect(codes(await records(await tempFile("open.json", '[{"text": "a"},\n{"text": "b"}')))).toEqual([
      "2:invalid_json",
    ]);
    expect(codes(await records(await tempFile("empty.json", "")))).toEqual(["undefined:empty_file"]);
  });
});

describe("CSV", () => {
  it("reads quoted fields with commas, quotes and newlines, CRLF and a BOM", async () => {
    const text = '\uFEFFprompt,completion\r\n"Hello, ""world""","line one\nline two"\r\nplain,text\r\n';
    const list = await records(await tempFile("a.csv", text));
    expect(list.map((record) => [record.location.line, record.example])).toEqual([
      [2, { kind: "completion", prompt: 'Hello, "world"', completion: "line one\nline two" }],
      [4, { kind: "completion", prompt: "plain", completion: "text" }],
    ]);
  });

  it("parses JSON columns such as messages", async () => {
    const messages = JSON.stringify(chatRow("hi", "hello").messages).replaceAll('"', '""');
    const list = await records(await tempFile("chat.csv", `messages\n"${messages}"\n`));
    expect(list[0]?.example).toEqual({ kind: "chat", ...chatRow("hi", "hello") });
  });

  it("reports ragged rows, bad JSON cells and unclosed quotes", async () => {
    const text = 'prompt,completion\na,b,c\n"x",y\n';
    expect(codes(await records(await tempFile("ragged.csv", text)))).toEqual(["2:invalid_csv"]);
    expect(codes(await records(await tempFile("json.csv", "messages\n[oops\n")))).toEqual(["2:invalid_json"]);
    expect(codes(await records(await tempFile("open.csv", 'text\n"never closed\n')))).toEqual([
      "2:invalid_csv",
    ]);
  });
});

describe("Parquet", () => {
  const schema = [
    { name: "root", num_children: 1 },
    { name: "messages", repetition_type: "OPTIONAL", converted_type: "LIST", num_children: 1 },
    { name: "list", repetition_type: "REPEATED", num_children: 1 },
    { name: "element", repetition_type: "OPTIONAL", num_children: 2 },
    { name: "role", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
    { name: "content", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
  ] as const;

  it("reads list<struct> message columns row group by row group", async () => {
    const data = Array.from({ length: 5 }, (_, index) => chatRow(`q${index}`, `a${index}`).messages);
    const buffer = parquetWriteBuffer({
      columnData: [{ name: "messages", data }],
      schema: [...schema],
      rowGroupSize: 2,
    });
    const list = await records(await tempFile("train.parquet", new Uint8Array(buffer)));
    expect(list.map((record) => record.location.line)).toEqual([1, 2, 3, 4, 5]);
    expect(list[4]?.example).toEqual({ kind: "chat", messages: data[4] });
  });

  it("reads flat columns, 64-bit integers as numbers", async () => {
    const buffer = parquetWriteBuffer({
      columnData: [
        { name: "prompt", data: ["p1", "p2"], type: "STRING" },
        { name: "completion", data: ["c1", "c2"], type: "STRING" },
        { name: "id", data: [1n, 2n], type: "INT64" },
      ],
    });
    const list = await records(await tempFile("pc.parquet", new Uint8Array(buffer)));
    expect(list.map((record) => record.raw)).toEqual([
      { prompt: "p1", completion: "c1", id: 1 },
      { prompt: "p2", completion: "c2", id: 2 },
    ]);
  });

  it("reports a file that is not Parquet", async () => {
    expect(codes(await records(await tempFile("bad.parquet", "not parquet at all")))).toEqual([
      "undefined:invalid_parquet",
    ]);
  });
});

describe("maxRecordBytes: every reader skips a record over the limit, reading on", () => {
  const long = "z".repeat(3000);
  it("a JSON array element", async () => {
    const text = `[\n${JSON.stringify({ text: long })},\n${JSON.stringify({ text: "ok" })}\n]`;
    const dataset = await Dataset.fromFile(await tempFile("long.json", text), { maxRecordBytes: 1000 });
    const list: DatasetRecord[] = [];
    for await (const record of dataset.records()) list.push(record);
    expect(codes(list)).toEqual(["2:record_too_long"]);
    expect(list[1]?.example).toEqual({ kind: "text", text: "ok" });
  });

  it("a CSV row, quoted newlines and all", async () => {
    const text = `prompt,completion\n"a\n${long}",x\np,c\n`;
    const dataset = await Dataset.fromFile(await tempFile("long.csv", text), { maxRecordBytes: 1000 });
    const list: DatasetRecord[] = [];
    for await (const record of dataset.records()) list.push(record);
    expect(codes(list)).toEqual(["2:record_too_long"]);
    expect(list[1]?.example).toEqual({ kind: "completion", prompt: "p", completion: "c" });
  });

  it("a Parquet row", async () => {
    const buffer = parquetWriteBuffer({
      columnData: [{ name: "text", data: [long, "ok"], type: "STRING" }],
    });
    const path = await tempFile("long.parquet", new Uint8Array(buffer));
    const dataset = await Dataset.fromFile(path, { maxRecordBytes: 1000 });
    const list: DatasetRecord[] = [];
    for await (const record of dataset.records()) list.push(record);
    expect(codes(list)).toEqual(["1:record_too_long"]);
    expect(list[1]?.example).toEqual({ kind: "text", text: "ok" });
  });
});
