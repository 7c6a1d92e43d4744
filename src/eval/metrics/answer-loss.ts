/**
 * `answerLoss`: how likely the target finds the expected answer, given the input: the mean token loss
 * of the expected reply (scored as training scores it) under each model. The score is exp(−loss), the
 * geometric mean of the expected tokens' probabilities; the details keep the loss, the perplexity and
 * the tokens. Only targets that can score a reply (local models) have it; others are "not
 * applicable", never 0. The signal text metrics miss on short answers. Threshold 0.5.
 */
import { defineMetric, expectedOf, type MetricOptions, notApplicable } from "./metric.js";

/**
 * With `perToken`, each expected token's loss is kept too (one more forward pass), and a comparison's
 * report says, token by token, how much the second model made each expected word more likely.
 */
export function answerLoss(options: MetricOptions & { perToken?: boolean } = {}) {
  return defineMetric({
    name: "answerLoss",
    threshold: 0.5,
    kind: "score",
    options,
    score: async ({ testCase, target }) => {
      const expected = expectedOf(testCase, "answerLoss");
      if (typeof expected !== "string") return expected;
      if (!target.answerLoss) return notApplicable(`${target.name} cannot score an answer (no answerLoss)`);
      const result = await target.answerLoss(
        testCase.input,
        expected,
        options.perToken ? { perToken: true } : {},
      );
      return {
        score: Math.exp(-result.loss),
        reason: `loss ${result.loss.toFixed(4)} over ${result.tokens} tokens`,
        details: {
          loss: result.loss,
          perplexity: Math.exp(result.loss),
          tokens: result.tokens,
          correct: result.correct,
          ...(result.perToken ? { perToken: result.perToken } : {}),
        },
      };
    },
  });
}
