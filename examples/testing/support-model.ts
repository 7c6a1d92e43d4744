// A user's own code: fine-tune the support model on whichever provider it is given, and report
// progress. examples/testing/support-model.test.ts tests it with tunekit/testing, without a network.
import { Dataset, FineTuneJob, type FineTuningProvider } from "tunekit";

export interface TrainOutcome {
  model: string;
  finalLoss: number | undefined;
  log: string[];
}

export async function trainSupportModel(
  provider: FineTuningProvider,
  file: string,
  options: { pollInterval?: number } = {},
): Promise<TrainOutcome> {
  const training = await Dataset.fromFile(file);
  const job = await FineTuneJob.create({
    provider,
    model: "gpt-4o-mini-2024-07-18",
    training,
    hyperparameters: { epochs: 3 },
    suffix: "customer-support",
    ...options,
  });
  const log: string[] = [];
  let finalLoss: number | undefined;
  for await (const event of job.events()) {
    if (event.type === "status-changed") log.push(`status: ${event.status}`);
    if (event.type === "metrics") finalLoss = event.metrics.trainLoss;
    if (event.type === "failed") log.push(`failed: ${event.error?.message ?? "unknown"}`);
  }
  const result = await job.wait();
  return { model: result.fineTunedModel ?? "", finalLoss, log };
}
