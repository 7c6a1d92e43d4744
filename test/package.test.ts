import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, symlink, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { FIXTURES, HAS_FIXTURES, ROOT, tempDir } from "./helpers.js";

const run = promisify(execFile);

describe("the built package", () => {
  it("loads with require() and import(), with the same public names", async () => {
    expect(existsSync(join(ROOT, "dist/index.cjs")), "run `npm run build` first (npm test does)").toBe(true);
    // Resolve through the package's own exports map, as a user's `require("tunekit")` does.
    const require = createRequire(join(ROOT, "package.json"));
    const cjs = require("tunekit");
    const esm = await import(pathToFileURL(join(ROOT, "dist/index.js")).href);
    for (const name of ["Dataset", "Validator", "TunekitError", "DataFormatError", "ValidationError"]) {
      expect(typeof cjs[name], `require: ${name}`).toBe("function");
      expect(typeof esm[name], `import: ${name}`).toBe("function");
    }
    expect(require.resolve("tunekit")).toBe(join(ROOT, "dist/index.cjs"));
    expect(typeof require("tunekit/testing").hubDatasetHandlers).toBe("function");
  });

  it("never loads the native engine on import, only on first local use", async () => {
    const script = `
      import("tunekit").then(async ({ quantizeNF4 }) => {
        const loaded = () => Object.keys(require.cache).some((path) => path.endsWith(".node"));
        const before = loaded();
        quantizeNF4(new Float32Array(2));
        console.log(before, loaded());
      });`;
    const { stdout } = await run(process.execPath, ["-e", script], { cwd: ROOT });
    expect(stdout.trim()).toBe("false true");
  });

  it("require() build validates data end to end (hyparquet bundled for CJS)", async () => {
    const script = `
      const { Dataset, Validator } = require("tunekit");
      const rows = Array.from({ length: 10 }, (_, i) => ({ messages: [{ role: "user", content: "q" + i }, { role: "assistant", content: "a" }] }));
      new Validator().validate(Dataset.fromArray(rows)).then((r) => console.log(r.ok, r.valid));`;
    const { stdout } = await run(process.execPath, ["-e", script], { cwd: ROOT });
    expect(stdout.trim()).toBe("true 10");
  });

  it("publint and arethetypeswrong find nothing in the packed tarball", { timeout: 120_000 }, async () => {
    const dir = await tempDir();
    // --ignore-scripts: pack the build that `npm test` just made instead of building again.
    const { stdout } = await run("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", dir], {
      cwd: ROOT,
    });
    const tarball = join(dir, JSON.parse(stdout)[0].filename);
    const publint = await run("npx", ["--no-install", "publint", "--strict", "--pack", "false"], {
      cwd: ROOT,
    });
    expect(publint.stdout).toContain("All good!");
    // attw exits non-zero on any problem; node10 is ignored: the package needs Node 20 and exports maps.
    const attw = await run(
      "npx",
      ["--no-install", "attw", tarball, "--profile", "node16", "--format", "ascii"],
      { cwd: ROOT },
    );
    expect(attw.stdout).toContain('"tunekit/testing"');
    expect(attw.stdout).not.toMatch(/❌|⚠️/);
  });
});

/**
 * Installs a packed tarball into a fresh app as npm would, with no registry and no npm cache (a new
 * machine has neither): the tarball unpacked to node_modules/tunekit, and each dependency its
 * package.json declares linked from the root's node_modules, which the root's install filled from the
 * same lockfile. Only declared dependencies are there, so one the build needs but does not declare
 * fails to resolve, as it would for a user; and no install script runs.
 */
async function installWithoutRegistry(tarball: string, project: string): Promise<void> {
  const packageDir = join(project, "node_modules", "tunekit");
  await mkdir(packageDir, { recursive: true });
  await writeFile(
    join(project, "package.json"),
    JSON.stringify({ name: "app", version: "1.0.0", type: "module" }),
  );
  await run("tar", ["-xzf", tarball, "-C", packageDir, "--strip-components=1"]);
  const manifest = JSON.parse(readFileSync(join(packageDir, "package.json"), "utf8"));
  for (const name of Object.keys(manifest.dependencies ?? {})) {
    const target = join(ROOT, "node_modules", name);
    expect(existsSync(target), `${name} is missing from the root's node_modules`).toBe(true);
    await mkdir(dirname(join(project, "node_modules", name)), { recursive: true });
    await symlink(target, join(project, "node_modules", name), "dir");
  }
}

describe("the packed tarball with its prebuilt engine", () => {
  it("installs without a registry or install scripts into a fresh project and runs the fixture model from there", {
    timeout: 240_000,
  }, async () => {
    const dir = await tempDir();
    // What prepack does, then pack without scripts (the build `npm test` made is current).
    await run(process.execPath, [join(ROOT, "scripts/prebuild.mjs")], { cwd: ROOT });
    let tarball: string;
    try {
      const { stdout } = await run("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", dir], {
        cwd: ROOT,
      });
      const packed = JSON.parse(stdout)[0];
      const files = packed.files.map((file: { path: string }) => file.path);
      expect(files).toContain(`prebuilds/${process.platform}-${process.arch}/tunekit.node`);
      expect(files).toContain("native/src/model/llama.cc");
      expect(files.some((file: string) => file.startsWith("native/build/"))).toBe(false);
      tarball = join(dir, packed.filename);
    } finally {
      await run(process.execPath, [join(ROOT, "scripts/prebuild.mjs"), "--clean"], { cwd: ROOT });
    }
    const project = join(dir, "app");
    await installWithoutRegistry(tarball, project);
    expect(existsSync(join(project, "node_modules/tunekit/native/build"))).toBe(false);
    const script = HAS_FIXTURES
      ? `import { LocalModel } from "tunekit";
           const model = await LocalModel.load(${JSON.stringify(join(FIXTURES, "stories260K-hf"))});
           const result = await model.generate({ inputIds: [1] }, { maxTokens: 200, temperature: 0, stopTokens: [] });
           console.log(JSON.stringify({ text: result.text, kernels: model.engine.kernels }));`
      : `import { quantizeNF4 } from "tunekit";
           console.log(JSON.stringify({ text: String(quantizeNF4(new Float32Array([1, -1])).packed[0]) }));`;
    await writeFile(join(project, "main.mjs"), script);
    const { stdout } = await run(process.execPath, ["main.mjs"], { cwd: project });
    const output = JSON.parse(stdout);
    if (HAS_FIXTURES)
      expect(output.text).toBe(
        readFileSync(join(FIXTURES, "stories260K-hf/expected-greedy-200.txt"), "utf8"),
      );
    else expect(output.text).toBe(String(0xf0));
    // The same package, required from CommonJS.
    await writeFile(join(project, "main.cjs"), `console.log(typeof require("tunekit").LocalModel.load);`);
    expect((await run(process.execPath, ["main.cjs"], { cwd: project })).stdout.trim()).toBe("function");
  });
});
