/**
 * Archives as they stream in: tar (ustar, GNU long names, pax), gzip and Zstandard, read chunk by
 * chunk. The archives in ./archives were made by Python's tarfile, gzip and the zstd command
 * (archives/make.py), not by tunekit, and their files' hashes are in archives/expected.json.
 */
import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { compressionOf, decompress, type ZstdDecoder, zstdDecoders } from "../../src/core/decompress.js";
import { DataFormatError } from "../../src/core/errors.js";
import { readTar } from "../../src/core/tar.js";
import { writeArchiveFolder } from "../../src/providers/download.js";
import { gzipBytes, tarArchive, zstdStore } from "../../src/testing/archive.js";
import { tempDir } from "../helpers.js";

const here = join(import.meta.dirname, "archives");
const fixture = (name: string) => readFile(join(here, name));

/** The bytes cut into pieces of the given sizes, in turn. */
async function* pieces(bytes: Uint8Array, sizes: number[] = [65536]): AsyncGenerator<Uint8Array> {
  let offset = 0;
  for (let index = 0; offset < bytes.length; index++) {
    const size = sizes[index % sizes.length] ?? 1;
    yield bytes.subarray(offset, offset + size);
    offset += size;
  }
}

async function unpack(
  chunks: AsyncIterable<Uint8Array>,
  decoder: ZstdDecoder = "auto",
): Promise<Record<string, string>> {
  const hashes: Record<string, string> = {};
  await readTar(decompress(chunks, "the archive", decoder), async (file) => {
    const hash = createHash("sha256");
    for await (const chunk of file.content) hash.update(chunk);
    hashes[file.path] = hash.digest("hex");
  });
  return hashes;
}

const sha = (text: string) => createHash("sha256").update(text).digest("hex");

describe("reading archives as they stream in", () => {
  it("reads a GNU tar in a real Zstandard frame (level 19, long names) and a pax tar.gz", async () => {
    const expected = JSON.parse(await readFile(join(here, "expected.json"), "utf8"));
    expect(await unpack(pieces(await fixture("gnu.tar.zst")))).toEqual(expected);
    expect(await unpack(pieces(await fixture("pax.tar.gz")))).toEqual(expected);
    expect(await unpack(pieces(await fixture("plain.tar")))).toEqual({ "hello.txt": sha("hello\n") });
  });

  it("gives the same files whatever the chunk boundaries (1 byte, odd sizes)", async () => {
    const expected = JSON.parse(await readFile(join(here, "expected.json"), "utf8"));
    const zst = await fixture("gnu.tar.zst");
    expect(await unpack(pieces(zst, [1]))).toEqual(expected);
    expect(await unpack(pieces(await fixture("pax.tar.gz"), [7, 511, 3, 1025]))).toEqual(expected);
  });

  it.each(zstdDecoders())(
    "the %s Zstandard decoder reads real and stored frames, and refuses a cut one",
    async (decoder) => {
      const expected = JSON.parse(await readFile(join(here, "expected.json"), "utf8"));
      const zst = await fixture("gnu.tar.zst");
      expect(await unpack(pieces(zst, [3, 4096]), decoder)).toEqual(expected);
      const stored = zstdStore(tarArchive({ "a.bin": new Uint8Array(300_000).fill(7) }));
      expect(Object.keys(await unpack(pieces(stored), decoder))).toEqual(["a.bin"]);
      await expect(unpack(pieces(zst.subarray(0, zst.length - 40)), decoder)).rejects.toThrow(
        /not readable Zstandard data|ends in the middle/,
      );
      async function* dropping() {
        yield stored.subarray(0, 5000);
        throw new Error("socket hang up");
      }
      await expect(unpack(dropping(), decoder)).rejects.toThrow("socket hang up");
    },
  );

  it("tells the formats apart by their first bytes", async () => {
    expect(compressionOf(await fixture("gnu.tar.zst"))).toBe("zstd");
    expect(compressionOf(await fixture("pax.tar.gz"))).toBe("gzip");
    expect(compressionOf(await fixture("plain.tar"))).toBe("none");
  });

  it("reads the fakes' archives: ustar in stored Zstandard blocks, and gzipped, across 128 KB blocks", async () => {
    const big = new Uint8Array(300_000).map((_, index) => (index * 13) & 255);
    const tar = tarArchive({ "config.json": "{}", "weights/a.bin": big, empty: "" }, { folder: "model" });
    const expected = {
      "model/config.json": sha("{}"),
      "model/weights/a.bin": createHash("sha256").update(big).digest("hex"),
      "model/empty": sha(""),
    };
    expect(await unpack(pieces(zstdStore(tar), [4096]))).toEqual(expected);
    expect(await unpack(pieces(gzipBytes(tar)))).toEqual(expected);
    expect(await unpack(pieces(zstdStore(new Uint8Array(0))))).toEqual({});
  });

  it("refuses links, paths that climb out, damaged headers and archives cut short, by name", async () => {
    const error = (promise: Promise<unknown>) =>
      promise.then(
        () => undefined,
        (caught: unknown) => caught,
      );
    const symlink = await error(unpack(pieces(await fixture("symlink.tar"))));
    expect(symlink).toBeInstanceOf(DataFormatError);
    expect((symlink as DataFormatError).code).toBe("invalid_archive");
    expect((symlink as Error).message).toMatch(/"link" is a symbolic link/);
    expect(((await error(unpack(pieces(await fixture("climbs-out.tar"))))) as Error).message).toMatch(
      /"\.\.\/outside\.txt" would be written outside/,
    );
    const damaged = new Uint8Array(await fixture("plain.tar"));
    damaged[10] = 0x41;
    expect(((await error(unpack(pieces(damaged)))) as Error).message).toMatch(/checksum does not match/);
    const zst = await fixture("gnu.tar.zst");
    expect(((await error(unpack(pieces(zst.subarray(0, zst.length - 40))))) as Error).message).toMatch(
      /not readable Zstandard data|ends in the middle/,
    );
    const gz = await fixture("pax.tar.gz");
    expect(((await error(unpack(pieces(gz.subarray(0, gz.length / 2))))) as Error).message).toMatch(
      /not readable gzip data|ends in the middle/,
    );
    const tar = tarArchive({ "a.bin": new Uint8Array(2000) });
    expect(((await error(unpack(pieces(tar.subarray(0, 1200))))) as Error).message).toMatch(
      /ends in the middle of a file/,
    );
  });

  it("a source that fails midway fails the read with its own error", async () => {
    const tar = zstdStore(tarArchive({ "a.bin": new Uint8Array(100_000) }));
    async function* dropping() {
      yield tar.subarray(0, 5000);
      throw new Error("socket hang up");
    }
    await expect(unpack(dropping())).rejects.toThrow("socket hang up");
    async function* droppingGzip() {
      yield gzipBytes(tar).subarray(0, 300);
      throw new Error("socket hang up");
    }
    await expect(unpack(droppingGzip())).rejects.toThrow("socket hang up");
  });
});

describe("writeArchiveFolder", () => {
  const adapter = {
    "adapter_config.json": JSON.stringify({ peft_type: "LORA", r: 4 }),
    "adapter_model.safetensors": safetensors(),
  };

  it("unpacks into the folder, unwrapping one top folder, and checks the adapter", async () => {
    const dir = join(await tempDir(), "adapter");
    const files = await writeArchiveFolder(dir, pieces(zstdStore(tarArchive(adapter, { folder: "ft-1" }))), {
      kind: "adapter",
      provider: "together",
    });
    expect(files).toEqual(["adapter_config.json", "adapter_model.safetensors"]);
    expect((await readdir(dir)).sort()).toEqual(files);
  });

  it("leaves nothing behind when the archive is not an adapter, or the target holds something", async () => {
    const root = await tempDir();
    const dir = join(root, "adapter");
    await expect(
      writeArchiveFolder(dir, pieces(tarArchive({ "README.md": "hi" })), {
        kind: "adapter",
        provider: "together",
      }),
    ).rejects.toThrow(/no readable adapter_config.json/);
    await expect(
      writeArchiveFolder(dir, pieces(tarArchive(adapter)), { kind: "merged", provider: "together" }),
    ).rejects.toThrow(/no readable config.json/);
    expect(await readdir(root)).toEqual([]);
    await writeArchiveFolder(dir, pieces(tarArchive(adapter)), { kind: "adapter", provider: "together" });
    await expect(
      writeArchiveFolder(dir, pieces(tarArchive(adapter)), { kind: "adapter", provider: "together" }),
    ).rejects.toThrow(/is not empty/);
  });

  it("an abort midway leaves no folder", async () => {
    const root = await tempDir();
    const controller = new AbortController();
    const tar = tarArchive({ ...adapter, "extra.bin": new Uint8Array(100_000) });
    async function* slow() {
      for await (const piece of pieces(tar, [1024])) {
        yield piece;
        if (piece.byteOffset > 2048) controller.abort(new Error("stopped"));
      }
    }
    await expect(
      writeArchiveFolder(join(root, "a"), slow(), {
        kind: "adapter",
        provider: "together",
        signal: controller.signal,
      }),
    ).rejects.toThrow("stopped");
    expect(await readdir(root)).toEqual([]);
  });
});

/** A valid safetensors file holding one small F32 tensor. */
function safetensors(): Uint8Array {
  const header = new TextEncoder().encode(
    JSON.stringify({
      "base_model.model.x.lora_A.weight": { dtype: "F32", shape: [1, 2], data_offsets: [0, 8] },
    }),
  );
  const out = new Uint8Array(8 + header.length + 8);
  new DataView(out.buffer).setBigUint64(0, BigInt(header.length), true);
  out.set(header, 8);
  return out;
}
