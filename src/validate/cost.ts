/**
 * OpenAI's default epoch count (from the Cookbook): aim for 3 epochs, but at least 100 and at most
 * 25,000 example passes, within 1..25 epochs.
 */
export function defaultEpochs(examples: number): number {
  const target = 3;
  if (examples === 0) return target;
  if (examples * target < 100) return Math.min(25, Math.floor(100 / examples));
  if (examples * target > 25_000) return Math.max(1, Math.floor(25_000 / examples));
  return target;
}
