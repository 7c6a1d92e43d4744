// How a user unit-tests code that uses tunekit: a scripted MockProvider instead of a cloud account.
//   npx vitest run examples/testing
import { fileURLToPath } from "node:url";
import { FineTuneFailedError } from "tunekit";
import { MockProvider } from "tunekit/testing";
import { describe, expect, it } from "vitest";
import { trainSupportModel } from "./support-model.js";

const data = fileURLToPath(new URL("../data/customer-support.jsonl", import.meta.url));

describe("trainSupportModel", () => {
  it("returns the fine-tuned model and the last loss", async () => {
    const provider = new MockProvider({
      jobs: { fineTunedModel: "ft:gpt-4o-mini-2024-07-18:acme:customer-support:abc" },
    });
    const outcome = await trainSupportModel(provider, data, { pollInterval: 1 });
    expect(outcome.model).toBe("ft:gpt-4o-mini-2024-07-18:acme:customer-support:abc");
    expect(outcome.finalLoss).toBe(0.9);
    expect(outcome.log).toEqual([
      "status: validating",
      "status: queued",
      "status: running",
      "status: succeeded",
    ]);
    // What would have been sent: 36 conversations, 3 epochs, the suffix.
    expect(provider.uploads[0]?.text.trim().split("\n")).toHaveLength(36);
    expect(provider.callsOf("createJob")[0]?.[0]).toMatchObject({
      hyperparameters: { epochs: 3 },
      suffix: "customer-support",
    });
  });

  it("surfaces the provider's reason when the job fails", async () => {
    const provider = new MockProvider({
      jobs: {
        statuses: ["queued", "failed"],
        error: { code: "quota_exceeded", message: "Out of training credits" },
      },
    });
    await expect(trainSupportModel(provider, data, { pollInterval: 1 })).rejects.toThrow(FineTuneFailedError);
  });
});
