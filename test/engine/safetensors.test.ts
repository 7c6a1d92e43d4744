import { readFileSync } from "node:fs";
import { readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { LocalModel } from "../../src/engine/local-model.js";
import { readModelTensors, readSafetensorsHeader, writeSafetensors } from "../../src/engine/safetensors.js";
import { tempDir } from "../helpers.js";
import { REFERENCE_INPUT, TINY_MODELS, type TinyConfig, writeTinyModel } from "./tiny-model.js";

describe("safetensors files", () => {
  it("writes what it reads back: an 8-byte aligned header, tensors in name order, metadata", async () => {
    const file = join(await tempDir(), "a.safetensors");
    await writeSafetensors(
      file,
      {
        "b.weight": { dtype: "F32", shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
        "a.bias": { dtype: "BF16", shape: [3], data: new Uint8Array(6) },
      },
      { format: "pt" },
    );
    const bytes = readFileSync(file);
    const headerLength = Number(bytes.readBigUInt64LE(0));
    expect(headerLength % 8).toBe(0);
    const header = await readSafetensorsHeader(file);
    expect(header.metadata).toEqual({ format: "pt" });
    expect([...header.tensors.keys()]).toEqual(["a.bias", "b.weight"]);
    const weight = header.tensors.get("b.weight");
    expect(weight).toMatchObject({ dtype: "F32", shape: [2, 2], offset: 8 + headerLength + 6, bytes: 16 });
    expect(
      Array.from(
        new Float32Array(
          bytes.buffer.slice(
            bytes.byteOffset + (weight?.offset ?? 0),
            bytes.byteOffset + (weight?.offset ?? 0) + 16,
          ),
        ),
      ),
    ).toEqual([1, 2, 3, 4]);
    expect((await readdir(join(file, ".."))).filter((name) => name.endsWith(".tmp"))).toEqual([]);
    await expect(
      writeSafetensors(file, { x: { dtype: "F32", shape: [3], data: new Float32Array(2) } }),
    ).rejects.toThrow(/8 bytes for shape \[3\] in F32/);
    // The failed write left the earlier file whole.
    expect((await readSafetensorsHeader(file)).tensors.size).toBe(2);
  });

  it("loads a sharded model (model.safetensors.index.json) exactly like the single file", async () => {
    const config = TINY_MODELS.qwen2 as TinyConfig;
    const single = await writeTinyModel(join(await tempDir(), "single"), config);
    const sharded = await writeTinyModel(join(await tempDir(), "sharded"), config);
    const source = join(sharded, "model.safetensors");
    const tensors = await readModelTensors(sharded);
    const bytes = readFileSync(source);
    const names = [...tensors.keys()];
    const shards = [names.slice(0, 10), names.slice(10)];
    const weightMap: Record<string, string> = {};
    for (const [index, shard] of shards.entries()) {
      const file = `model-0000${index + 1}-of-00002.safetensors`;
      const content: Record<string, { dtype: string; shape: number[]; data: Uint8Array }> = {};
      for (const name of shard) {
        const tensor = tensors.get(name) as { dtype: string; shape: number[]; offset: number; bytes: number };
        content[name] = {
          dtype: tensor.dtype,
          shape: tensor.shape,
          data: bytes.subarray(tensor.offset, tensor.offset + tensor.bytes),
        };
        weightMap[name] = file;
      }
      await writeSafetensors(join(sharded, file), content);
    }
    await rm(source);
    const index = join(sharded, "model.safetensors.index.json");
    await writeFile(index, JSON.stringify({ metadata: {}, weight_map: weightMap }));
    await using a = await LocalModel.load(single);
    await using b = await LocalModel.load(sharded);
    expect(Array.from(await b.logits(REFERENCE_INPUT))).toEqual(Array.from(await a.logits(REFERENCE_INPUT)));

    // An index that puts a tensor in the wrong shard, or names a path outside the folder.
    const [first, second] = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
    const wrong = weightMap["model.norm.weight"] === first ? second : first;
    await writeFile(index, JSON.stringify({ weight_map: { ...weightMap, "model.norm.weight": wrong } }));
    await expect(LocalModel.load(sharded)).rejects.toThrow(
      /the index puts model\.norm\.weight in .* which does not hold it/,
    );
    await writeFile(
      index,
      JSON.stringify({ weight_map: { ...weightMap, "model.norm.weight": "../escape.safetensors" } }),
    );
    await expect(LocalModel.load(sharded)).rejects.toThrow(/not a shard file name/);
  });
});
