import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { SourceError } from "../../src/core/errors.js";
import { writeFileAtomically, writeFolderAtomically, writeJsonAtomically } from "../../src/core/files.js";
import { tempDir } from "../helpers.js";

describe("writeFileAtomically", () => {
  it("writes text, bytes or a writer's output, creating the folder, and leaves no temporary file", async () => {
    const dir = await tempDir();
    await writeFileAtomically(join(dir, "a/b/text.txt"), "hello");
    await writeFileAtomically(join(dir, "bytes.bin"), new Uint8Array([1, 2, 3]));
    await writeFileAtomically(join(dir, "stream.txt"), async (handle) => {
      await handle.write("one ");
      await handle.write("two");
    });
    await writeJsonAtomically(join(dir, "value.json"), { a: 1 });
    expect(await readFile(join(dir, "a/b/text.txt"), "utf8")).toBe("hello");
    expect([...(await readFile(join(dir, "bytes.bin")))]).toEqual([1, 2, 3]);
    expect(await readFile(join(dir, "stream.txt"), "utf8")).toBe("one two");
    expect(await readFile(join(dir, "value.json"), "utf8")).toBe('{\n  "a": 1\n}\n');
    expect((await readdir(dir)).sort()).toEqual(["a", "bytes.bin", "stream.txt", "value.json"]);
  });

  it("gives every write its own temporary name: many writers of one file at once each land whole", async () => {
    const file = join(await tempDir(), "shared.json");
    const values = Array.from({ length: 20 }, (_, index) => `${index}`.repeat(10_000));
    await Promise.all(values.map((value) => writeFileAtomically(file, value)));
    expect(values).toContain(await readFile(file, "utf8"));
    expect(await readdir(join(file, ".."))).toEqual(["shared.json"]);
  });

  it("keeps what the file held when the writer fails, and passes its error on", async () => {
    const file = join(await tempDir(), "kept.txt");
    await writeFile(file, "before");
    const failure = new Error("a bad record");
    await expect(
      writeFileAtomically(file, async (handle) => {
        await handle.write("half of the new");
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(await readFile(file, "utf8")).toBe("before");
    expect(await readdir(join(file, ".."))).toEqual(["kept.txt"]);
  });

  it("turns a filesystem failure into a located write_failed error", async () => {
    const dir = await tempDir();
    await writeFile(join(dir, "a-file"), "");
    const error = await writeFileAtomically(join(dir, "a-file", "inside.txt"), "x").catch((caught) => caught);
    expect(error).toBeInstanceOf(SourceError);
    expect(error.code).toBe("write_failed");
    expect(error.location.file).toBe(join(dir, "a-file", "inside.txt"));
  });
});

describe("writeFolderAtomically", () => {
  it("replaces a folder whole, and keeps the old one when filling the new one fails", async () => {
    const dir = await tempDir();
    const target = join(dir, "adapter");
    await writeFolderAtomically(target, async (temporary) => {
      await writeFile(join(temporary, "weights"), "v1");
    });
    await expect(
      writeFolderAtomically(target, async (temporary) => {
        await writeFile(join(temporary, "weights"), "v2-partial");
        throw new Error("disk full");
      }),
    ).rejects.toThrow("disk full");
    expect(await readFile(join(target, "weights"), "utf8")).toBe("v1");
    await writeFolderAtomically(target, async (temporary) => {
      await writeFile(join(temporary, "weights"), "v2");
    });
    expect(await readdir(target)).toEqual(["weights"]);
    expect(await readFile(join(target, "weights"), "utf8")).toBe("v2");
    expect(await readdir(dir)).toEqual(["adapter"]);
  });

  it("with replace: false, refuses a folder that exists and leaves it as it was", async () => {
    const dir = await tempDir();
    const target = join(dir, "merged");
    await mkdir(target);
    await writeFile(join(target, "mine"), "keep");
    const error = await writeFolderAtomically(target, async () => {}, { replace: false }).catch(
      (caught) => caught,
    );
    expect(error.code).toBe("exists");
    expect(await readdir(target)).toEqual(["mine"]);
    expect(await readdir(dir)).toEqual(["merged"]);
  });
});
