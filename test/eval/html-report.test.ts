/**
 * The HTML report in a real browser: Debian's Chromium through playwright-core. It opens with no
 * console errors and nothing fetched, the chart and the case table render, and sorting works.
 * Skipped, saying so, where Chromium cannot be had (`.ci/run` installs it where it can).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { Evaluator, metrics } from "../../src/eval/index.js";
import { MockChatTarget } from "../../src/testing/mock-chat-target.js";
import { tempDir } from "../helpers.js";

const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((path) => existsSync(path));
if (!CHROMIUM) console.warn("Chromium not found at /usr/bin/chromium: the HTML report test is skipped");

describe.skipIf(!CHROMIUM)("the HTML report in Chromium", () => {
  it("opens without console errors or requests; the chart and the cases render; sorting works", {
    timeout: 60_000,
  }, async () => {
    const cases = Array.from({ length: 6 }, (_, index) => ({
      id: `case-${index}`,
      input: `Question ${index} <script>alert(1)</script>`,
      expected: `answer ${index}`,
    }));
    const base = new MockChatTarget({ modelId: "base", reply: "I do not know." });
    const tuned = new MockChatTarget({
      modelId: "tuned",
      reply: ({ messages }) => {
        const index = Number(/Question (\d)/.exec(String(messages.at(-1)?.content))?.[1]);
        return index % 2 === 0 ? `It is answer ${index}.` : "I do not know.";
      },
    });
    const report = await new Evaluator({ metrics: [metrics.contains(), metrics.rougeL()], cache: false })
      .compare({ base, tuned }, cases)
      .done();
    const file = join(await tempDir(), "report.html");
    await report.save(file);

    const { chromium } = await import("playwright-core");
    const browser = await chromium.launch({ executablePath: CHROMIUM as string, args: ["--no-sandbox"] });
    try {
      const page = await browser.newPage();
      const problems: string[] = [];
      const requests: string[] = [];
      page.on("console", (message) => {
        if (message.type() === "error") problems.push(message.text());
      });
      page.on("pageerror", (error) => problems.push(error.message));
      page.on("request", (request) => {
        if (!request.url().startsWith("file:")) requests.push(request.url());
      });
      await page.goto(pathToFileURL(file).href);
      expect(problems).toEqual([]);
      expect(requests).toEqual([]);
      // Two metrics × two targets, each with a bar (the base's contains mean is 0: a zero-width bar).
      expect(await page.locator("#chart rect.bar").count()).toBe(4);
      expect(await page.locator("#cases tbody tr").count()).toBe(6);
      expect(await page.locator("#comparisons tr").count()).toBe(3);
      expect(await page.locator("script").count()).toBe(1); // the inputs stay text
      await page.click("#sort");
      const first = await page.locator("#cases tbody tr").first().getAttribute("data-difference");
      expect(Number(first)).toBe(1);
      expect(await page.locator("#cases tbody tr ins").count()).toBeGreaterThan(0);
      expect(problems).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
