/**
 * The `FineTuneJob` contract (./contract.ts) for the test double and for the cloud adapters against
 * their msw fakes; the local provider runs it in test/providers/local.test.ts. Each setup gets a fake
 * of its own at its own address, so a job made by one test stays reachable for the tests after it.
 */
import { setupServer } from "msw/node";
import { afterAll, beforeAll } from "vitest";
import { fireworks } from "../../src/providers/fireworks/index.js";
import { nebius } from "../../src/providers/nebius/index.js";
import { openai } from "../../src/providers/openai/index.js";
import { together } from "../../src/providers/together/index.js";
import { type FireworksFineTuningOptions, fireworksFineTuningHandlers } from "../../src/testing/fireworks.js";
import { MockProvider } from "../../src/testing/mock-provider.js";
import {
  nebiusFineTuningHandlers,
  OPENAI_TEST_API_KEY,
  type OpenAIFineTuningHandlersOptions,
  openaiFineTuningHandlers,
  releaseResponseCopies,
} from "../../src/testing/openai.js";
import { type TogetherFineTuningOptions, togetherFineTuningHandlers } from "../../src/testing/together.js";
import { fineTuneJobContract } from "./contract.js";

const server = setupServer();
releaseResponseCopies(server);
beforeAll(() =>
  server.listen({
    // The openai SDK probes `fetch("data:,")` once before its first upload; no handler can match it.
    onUnhandledRequest: (request, print) => {
      if (!request.url.startsWith("data:")) print.error();
    },
  }),
);
afterAll(() => server.close());

let fakes = 0;
const running = (count: number) => Array.from({ length: count }, () => "running");

fineTuneJobContract("MockProvider", {
  succeeding: async () => ({ provider: new MockProvider(), model: "gpt-4o-mini-2024-07-18" }),
  longRunning: async () => ({
    provider: new MockProvider({ jobs: { statuses: ["queued", ...running(1000), "succeeded"] as never } }),
    model: "gpt-4o-mini-2024-07-18",
  }),
  failing: async () => ({
    provider: new MockProvider({
      jobs: { statuses: ["queued", "running", "failed"], error: { message: "the training file is invalid" } },
    }),
    model: "gpt-4o-mini-2024-07-18",
  }),
});

function openaiFake(options: OpenAIFineTuningHandlersOptions = {}) {
  const baseURL = `https://openai-${++fakes}.test/v1`;
  server.use(...openaiFineTuningHandlers({ baseURL, ...options }).handlers);
  return {
    provider: openai({ apiKey: OPENAI_TEST_API_KEY, baseURL, filePollIntervalMs: 1 }),
    model: "gpt-4o-mini-2024-07-18",
  };
}

fineTuneJobContract("openai() against the OpenAI fake", {
  succeeding: async () => openaiFake(),
  longRunning: async () =>
    openaiFake({ statuses: ["validating_files", "queued", ...running(1000), "succeeded"] }),
  failing: async () => openaiFake({ statuses: ["validating_files", "queued", "running", "failed"] }),
});

function togetherFake(options: TogetherFineTuningOptions = {}) {
  const id = ++fakes;
  const baseURL = `https://together-${id}.test/v1`;
  const apiKey = "together-contract-key";
  const uploadURL = `https://together-uploads-${id}.test`;
  // Each fine-tune with a dedicated endpoint, so that it answers chat.
  server.use(
    ...togetherFineTuningHandlers({ apiKey, baseURL, uploadURL, endpoints: "all", ...options }).handlers,
  );
  return {
    provider: together({ apiKey, baseURL, filePollInterval: 0 }),
    model: "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
  };
}

fineTuneJobContract("together() against the Together fake", {
  succeeding: async () => togetherFake(),
  longRunning: async () => togetherFake({ statuses: ["queued", ...running(1000), "completed"] }),
  failing: async () => togetherFake({ failure: { message: "the training data could not be read" } }),
});

function nebiusFake(options: OpenAIFineTuningHandlersOptions = {}) {
  const baseURL = `https://nebius-${++fakes}.test/v1`;
  server.use(...nebiusFineTuningHandlers({ baseURL, ...options }).handlers);
  return {
    provider: nebius({ apiKey: OPENAI_TEST_API_KEY, baseURL, filePollIntervalMs: 1 }),
    model: "meta-llama/Meta-Llama-3.1-8B-Instruct",
  };
}

fineTuneJobContract("nebius() against the Nebius fake", {
  succeeding: async () => nebiusFake(),
  longRunning: async () =>
    nebiusFake({ statuses: ["validating_files", "queued", ...running(1000), "succeeded"] }),
  failing: async () => nebiusFake({ statuses: ["validating_files", "queued", "running", "failed"] }),
});

function fireworksFake(options: FireworksFineTuningOptions = {}) {
  const id = ++fakes;
  const apiKey = "fireworks-contract-key";
  const baseURL = `https://fireworks-${id}.test/v1`;
  const inferenceURL = `https://fireworks-${id}.test/inference/v1`;
  // Every fine-tuned model deployed, so that it answers chat.
  server.use(
    ...fireworksFineTuningHandlers({
      apiKey,
      baseURL,
      inferenceURL,
      storageURL: `https://fireworks-storage-${id}.test`,
      deployed: "all",
      ...options,
    }).handlers,
  );
  return {
    provider: fireworks({
      apiKey,
      accountId: "tunekit-test",
      baseURL,
      inferenceBaseURL: inferenceURL,
      datasetPollInterval: 0,
    }),
    model: "llama-v3p1-8b-instruct",
  };
}

const fireworksRunning = (count: number) => Array.from({ length: count }, () => "JOB_STATE_RUNNING");

fineTuneJobContract("fireworks() against the Fireworks fake", {
  succeeding: async () => fireworksFake(),
  longRunning: async () =>
    fireworksFake({ states: ["JOB_STATE_CREATING", ...fireworksRunning(1000), "JOB_STATE_COMPLETED"] }),
  failing: async () => fireworksFake({ failure: { message: "the dataset has no assistant turns to learn" } }),
});
