/**
 * OpenAI's wind-down of fine-tuning, against the fake that models it: refused job creation, shutdown
 * dates, the inventory of what an organisation owns, file downloads allowed for some purposes and
 * refused for others, and chat with fine-tuned model ids.
 */
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { FineTuningUnavailableError, NotFoundError, PermissionDeniedError } from "../../src/core/errors.js";
import { FineTuneJob } from "../../src/jobs/fine-tune-job.js";
import { openai } from "../../src/providers/openai/index.js";
import {
  OPENAI_TEST_API_KEY,
  type OpenAIFineTuningHandlersOptions,
  openaiFineTuningHandlers,
  releaseResponseCopies,
} from "../../src/testing/openai.js";
import { Validator } from "../../src/validate/validator.js";
import { chatRow, jsonl, tempFile } from "../helpers.js";

const server = setupServer();
releaseResponseCopies(server);
beforeAll(() =>
  server.listen({
    onUnhandledRequest: (request, print) => {
      if (!request.url.startsWith("data:")) print.error();
    },
  }),
);
beforeEach(() => {
  for (const name of ["OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"])
    vi.stubEnv(name, "");
});
afterEach(() => {
  server.resetHandlers();
  vi.unstubAllEnvs();
});
afterAll(() => server.close());

const DECEMBER = new Date("2026-12-01T12:00:00Z");
const TRAINING = jsonl(
  Array.from({ length: 10 }, (_, index) => chatRow(`question ${index}`, `answer ${index}`)),
);

function withFake(options: OpenAIFineTuningHandlersOptions = {}) {
  const fake = openaiFineTuningHandlers(options);
  server.use(...fake.handlers);
  return fake;
}

const trainingFile = () => tempFile("train.jsonl", TRAINING);
const provider = (now = DECEMBER) =>
  openai({ apiKey: OPENAI_TEST_API_KEY, maxRetries: 0, filePollIntervalMs: 1, now: () => now });

describe("job creation during the wind-down", () => {
  it("a refused job is a FineTuningUnavailableError that says why and where else it runs", async () => {
    withFake({ jobCreation: "closed" });
    const error = await FineTuneJob.create({
      provider: provider(),
      model: "gpt-4o-mini-2024-07-18",
      training: await trainingFile(),
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(FineTuningUnavailableError);
    expect(error).toBeInstanceOf(PermissionDeniedError);
    const refused = error as FineTuningUnavailableError;
    expect(refused.code).toBe("fine_tuning_unavailable");
    expect(refused.status).toBe(403);
    expect(refused.message).toContain("no longer accepting new fine-tuning jobs");
    expect(refused.message).toMatch(/2026-05-07.*2026-07-02.*2027-01-06/);
    expect(refused.message).toContain("provider: together()");
    expect(refused.message).toContain("provider: local()");
    expect(refused.message).not.toContain(OPENAI_TEST_API_KEY);
    // After the last day it says the platform has stopped.
    withFake({ jobCreation: "closed" });
    const late = await provider(new Date("2027-02-01T00:00:00Z"))
      .createJob({ model: "gpt-4o-mini-2024-07-18", trainingFile: "file-x" })
      .catch((caught: unknown) => caught);
    expect((late as Error).message).toContain(
      "OpenAI has stopped creating fine-tuning jobs (since 2027-01-06",
    );
  });

  it("a job on a base model that shuts down within 90 days comes with a warning", async () => {
    withFake();
    const job = await FineTuneJob.create({
      provider: provider(),
      model: "gpt-4o-mini-2024-07-18",
      training: await trainingFile(),
    });
    expect(job.warnings.map((warning) => warning.message)).toContainEqual(
      "gpt-4o-mini-2024-07-18 shuts down on 2027-01-14 (44 days from now), and every fine-tune of it with it",
    );
    job.stop();
    withFake();
    const early = await FineTuneJob.create({
      provider: provider(new Date("2026-06-01T00:00:00Z")),
      model: "gpt-4o-mini-2024-07-18",
      training: await trainingFile(),
    });
    expect(early.warnings.filter((warning) => warning.setting === "model")).toEqual([]);
    early.stop();
  });

  it("the Validator notes the wind-down and the model's shutdown, apart from the data's problems", async () => {
    const file = await trainingFile();
    const validate = (model: string, now: Date) =>
      new Validator({ target: "openai", model, now }).validate(file);
    const december = await validate("gpt-4o-mini", DECEMBER);
    expect(december.ok).toBe(true);
    expect(december.warnings).toEqual([]);
    expect(december.notices.map((notice) => [notice.severity, notice.code])).toEqual([
      ["warning", "fine_tuning_closing"],
      ["warning", "model_shutdown"],
    ]);
    expect(december.notices[1]?.message).toContain("shuts down on 2027-01-14 (44 days from now)");
    const nano = await validate("gpt-4.1-nano-2025-04-14", DECEMBER);
    expect(nano.ok).toBe(false);
    expect(nano.notices[1]).toMatchObject({ severity: "error", code: "model_shutdown" });
    expect(nano.notices[1]?.message).toContain("shut down on 2026-10-23");
    const closed = await validate("gpt-4o-mini", new Date("2027-01-06T00:00:00Z"));
    expect(closed.ok).toBe(false);
    expect(closed.notices[0]).toMatchObject({ severity: "error", code: "fine_tuning_closing" });
    const together = await new Validator({ target: "together" }).validate(file);
    expect(together.notices).toEqual([]);
  });
});

describe("inventory", () => {
  const fineTunes = () => [
    {
      model: "gpt-4o-mini-2024-07-18",
      suffix: "support",
      training: TRAINING,
      validation: jsonl([chatRow()]),
    },
    { model: "gpt-4.1-2025-04-14", suffix: "sales", training: TRAINING, hyperparameters: { n_epochs: 5 } },
    { model: "gpt-3.5-turbo-0125", suffix: "legacy", training: TRAINING },
  ];

  it("lists every fine-tune with its base, shutdown date, days left, job, hyperparameters and files", async () => {
    const fake = withFake({ fineTunes: fineTunes(), shutdownDates: { "gpt-4.1-2025-04-14": "2027-01-10" } });
    const items = await provider().inventory();
    expect(
      items.map((item) => [item.baseModel, item.shutdownDate, item.shutdownSource, item.daysLeft]),
    ).toEqual([
      ["gpt-4.1-2025-04-14", "2027-01-10", "api", 40],
      ["gpt-4o-mini-2024-07-18", "2027-01-14", "table", 44],
      ["gpt-3.5-turbo-0125", undefined, undefined, undefined],
    ]);
    const [sales, support] = items as [(typeof items)[0], (typeof items)[0]];
    expect(sales.model).toMatch(/^ft:gpt-4\.1-2025-04-14:personal:sales:/);
    expect(sales.jobId).toMatch(/^ftjob-/);
    expect(sales.hyperparameters).toMatchObject({ epochs: 5, batchSize: 1, learningRateMultiplier: 2 });
    expect(sales.trainingFile).toMatchObject({
      filename: "train.jsonl",
      purpose: "fine-tune",
      downloadable: true,
    });
    expect(sales.validationFile).toBeUndefined();
    expect(support.validationFile).toMatchObject({ filename: "valid.jsonl", downloadable: true });
    // Each file's content is there to take.
    const bytes = await provider().downloadFile(support.trainingFile?.id as string);
    expect(new TextDecoder().decode(bytes)).toBe(TRAINING);
    // The seeded fine-tunes answer chat; an unknown one does not.
    const reply = await provider()
      .chat(support.model)
      .complete([{ role: "user", content: "hi" }]);
    expect(reply.text).toBe("You said: hi");
    const gone = await provider()
      .chat("ft:gpt-4o-mini-2024-07-18:personal:nothing:abc")
      .complete([{ role: "user", content: "hi" }])
      .catch((caught: unknown) => caught);
    expect(gone).toBeInstanceOf(NotFoundError);
    expect(
      fake.state.requests.every(
        (request) => request.method === "GET" || request.path === "/chat/completions",
      ),
    ).toBe(true);
  });

  it("says which files can no longer be downloaded, in the API's words", async () => {
    withFake({ fineTunes: fineTunes().slice(0, 1), refusedContentPurposes: ["fine-tune"] });
    const [item] = await provider().inventory();
    expect(item?.trainingFile).toMatchObject({
      downloadable: false,
      reason: expect.stringContaining("Not allowed to download files of purpose: fine-tune"),
    });
  });
});
