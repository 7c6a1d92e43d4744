import { join } from "node:path";
import OpenAI from "openai";
import { describe, expect, it } from "vitest";
import { TINY_LLAMA, writeTinyModel } from "../../src/testing/tiny-model.js";
import { runCli } from "../cli-helpers.js";
import { tempDir } from "../helpers.js";

describe("tunekit serve", () => {
  it("prints the URL and the models, answers the openai client, and stops on Ctrl-C", {
    timeout: 60_000,
  }, async () => {
    const model = await writeTinyModel(join(await tempDir(), "tiny"), TINY_LLAMA);
    let interrupt: () => void = () => undefined;
    let stdout = "";
    let readyLine: () => void = () => undefined;
    const ready = new Promise<void>((resolve) => {
      readyLine = resolve;
    });
    const running = runCli(
      ["serve", "--model", model, "--port", "0", "--quantization", "none", "--api-key", "sk-cli-key-0123"],
      {
        onInterrupt: (listener) => {
          interrupt = listener;
          return () => undefined;
        },
        stdout: (text) => {
          stdout += text;
          if (stdout.includes("ready: ")) readyLine();
        },
      },
    );
    await ready;
    const url = /listening on (\S+)/.exec(stdout)?.[1] as string;
    expect(stdout).toContain("ready: tiny (an API key is required)");
    const openai = new OpenAI({ baseURL: url, apiKey: "sk-cli-key-0123", maxRetries: 0 });
    const reply = await openai.chat.completions.create({
      model: "tiny",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 4,
    });
    expect(reply.choices[0]?.finish_reason).toMatch(/stop|length/);
    interrupt();
    const result = await running;
    expect(result.code).toBe(0);
    expect(stdout).toContain("stopping: requests in flight may finish");
    expect(`${stdout}${result.stderr}`).not.toContain("sk-cli-key-0123");
    await expect(fetch(`${url}/models`)).rejects.toThrow();
  });

  it("usage errors", async () => {
    const bad = async (argv: string[], message: RegExp) => {
      const result = await runCli(["serve", ...argv]);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(message);
    };
    await bad([], /serve needs --model/);
    await bad(["--model", "m", "--adapter", "x"], /--adapter takes NAME=DIR/);
    await bad(["--model", "m", "--port", "70000"], /--port takes a whole number from 0 to 65535/);
  });
});
