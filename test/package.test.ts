import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { ROOT, tempDir } from "./helpers.js";

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
