import { describe, expect, it } from "vitest";
import { learningRateSchedule } from "../../src/local/schedule.js";

describe("learning-rate schedules (transformers' definitions)", () => {
  it("linear: warmup from 0, then down to 0 at the last step", () => {
    const rate = learningRateSchedule({ learningRate: 1, totalSteps: 10, warmupSteps: 2 });
    expect([0, 1, 2, 3, 6, 10].map(rate)).toEqual([0, 0.5, 1, 0.875, 0.5, 0]);
    expect(learningRateSchedule({ learningRate: 2e-4, totalSteps: 4 })(0)).toBe(2e-4);
  });

  it("cosine: half a cycle after warmup; constant: flat after warmup; warmupRatio rounds up", () => {
    const cosine = learningRateSchedule({
      learningRate: 1,
      totalSteps: 10,
      scheduler: "cosine",
      warmupRatio: 0.15,
    });
    expect(cosine(1)).toBeCloseTo(0.5); // warmup = ceil(1.5) = 2
    expect(cosine(2)).toBe(1);
    expect(cosine(6)).toBeCloseTo(0.5);
    expect(cosine(10)).toBeCloseTo(0);
    const constant = learningRateSchedule({
      learningRate: 3,
      totalSteps: 10,
      scheduler: "constant",
      warmupSteps: 3,
    });
    expect([0, 1, 3, 9].map(constant)).toEqual([0, 1, 3, 3]);
  });

  it("refuses settings that make no schedule", () => {
    expect(() => learningRateSchedule({ learningRate: 1, totalSteps: 0 })).toThrow(/no steps/);
    expect(() =>
      learningRateSchedule({ learningRate: 1, totalSteps: 5, scheduler: "step" as never }),
    ).toThrow(/scheduler/);
    expect(() => learningRateSchedule({ learningRate: 1, totalSteps: 5, warmupRatio: 2 })).toThrow(
      /warmupRatio/,
    );
  });
});
