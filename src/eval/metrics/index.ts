/** The metrics, one module each; `metrics.contains()` and friends build them. */
import { answerLoss } from "./answer-loss.js";
import { bleu } from "./bleu.js";
import { chrf } from "./chrf.js";
import { contains, containsAll, containsAny, icontains } from "./contains.js";
import { custom } from "./custom.js";
import { exactMatch } from "./exact-match.js";
import { lengthScore, repetition, topicCoverage } from "./guide.js";
import { jsonSchema, jsonValid } from "./json.js";
import { judge, pairwiseJudge } from "./judge.js";
import { levenshtein } from "./levenshtein.js";
import { regex } from "./regex.js";
import { rouge1, rouge2, rougeL } from "./rouge.js";

export const metrics = {
  contains,
  icontains,
  containsAll,
  containsAny,
  regex,
  exactMatch,
  jsonValid,
  jsonSchema,
  levenshtein,
  topicCoverage,
  lengthScore,
  repetition,
  rouge1,
  rouge2,
  rougeL,
  bleu,
  chrf,
  answerLoss,
  judge,
  pairwiseJudge,
  custom,
};

export { type BleuScore, corpusBleu, sentenceBleu, tokenize13a } from "./bleu.js";
export { corpusChrf, sentenceChrf } from "./chrf.js";
export { type PairwiseJudge, pairwiseJudge, parsePairVerdict, parseVerdict } from "./judge.js";
export { levenshteinDistance } from "./levenshtein.js";
export { defineMetric, type MetricOptions } from "./metric.js";
export { type RougeFigure, rouge } from "./rouge.js";
