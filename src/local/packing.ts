/**
 * Packing tokenized conversations into training blocks of at most `maxSeqLength` tokens, best-fit
 * decreasing: the longest example first, each into the open block with the least room that still
 * holds it (else a new block). Sequences keep their boundaries (`sequenceLengths`): the engine restarts
 * positions and never attends across them, so a block needs no padding.
 */
import { ValidationError } from "../core/errors.js";

/** One tokenized example: ids and labels of the same length (-100 where nothing is learned). */
export interface TokenizedExample {
  inputIds: number[];
  labels: number[];
}

/** A training block: examples one after another. */
export interface PackedBlock {
  inputIds: number[];
  labels: number[];
  /** The length of each example in the block, in order; they sum to `inputIds.length`. */
  sequenceLengths: number[];
  /** The indices of the examples, in the order they sit in the block. */
  examples: number[];
}

/**
 * The smallest remaining capacity >= n among open blocks, in O(log maxSeqLength): a segment tree of
 * how many open blocks have each remaining capacity.
 */
class CapacityIndex {
  readonly #size: number;
  readonly #counts: Int32Array;

  constructor(maxCapacity: number) {
    let size = 1;
    while (size < maxCapacity + 1) size *= 2;
    this.#size = size;
    this.#counts = new Int32Array(2 * size);
  }

  add(capacity: number, delta: number): void {
    for (let node = capacity + this.#size; node >= 1; node >>= 1)
      this.#counts[node] = (this.#counts[node] as number) + delta;
  }

  /** The smallest capacity >= need with an open block, or -1. */
  smallestAtLeast(need: number): number {
    return this.#search(1, 0, this.#size - 1, need);
  }

  #search(node: number, low: number, high: number, need: number): number {
    if (high < need || (this.#counts[node] as number) === 0) return -1;
    if (low === high) return low;
    const middle = (low + high) >> 1;
    const left = this.#search(2 * node, low, middle, need);
    return left >= 0 ? left : this.#search(2 * node + 1, middle + 1, high, need);
  }
}

export function packExamples(examples: readonly TokenizedExample[], maxSeqLength: number): PackedBlock[] {
  if (!Number.isInteger(maxSeqLength) || maxSeqLength < 1)
    throw new ValidationError("invalid_argument", "maxSeqLength must be an integer >= 1");
  for (const [index, example] of examples.entries()) {
    if (example.labels.length !== example.inputIds.length)
      throw new ValidationError(
        "invalid_argument",
        `example ${index}: ${example.labels.length} labels for ${example.inputIds.length} ids`,
      );
    if (example.inputIds.length === 0)
      throw new ValidationError("invalid_argument", `example ${index} has no tokens`);
    if (example.inputIds.length > maxSeqLength)
      throw new ValidationError(
        "context_length_exceeded",
        `example ${index} has ${example.inputIds.length} tokens, more than maxSeqLength ${maxSeqLength}; truncate it first`,
      );
  }
  // Longest first; equal lengths keep the data's order, so packing is deterministic.
  const order = examples.map((_, index) => index);
  order.sort(
    (a, b) =>
      (examples[b] as TokenizedExample).inputIds.length - (examples[a] as TokenizedExample).inputIds.length ||
      a - b,
  );

  const blocks: PackedBlock[] = [];
  const room: number[] = [];
  // Open blocks by remaining capacity (a stack per capacity; the newest of equals is used first).
  const byCapacity = new Map<number, number[]>();
  const index = new CapacityIndex(maxSeqLength);
  for (const example of order) {
    const { inputIds, labels } = examples[example] as TokenizedExample;
    const length = inputIds.length;
    const capacity = index.smallestAtLeast(length);
    let block: number;
    if (capacity >= 0) {
      block = (byCapacity.get(capacity) as number[]).pop() as number;
      index.add(capacity, -1);
    } else {
      block = blocks.push({ inputIds: [], labels: [], sequenceLengths: [], examples: [] }) - 1;
      room.push(maxSeqLength);
    }
    const target = blocks[block] as PackedBlock;
    target.inputIds.push(...inputIds);
    target.labels.push(...labels);
    target.sequenceLengths.push(length);
    target.examples.push(example);
    const left = (room[block] as number) - length;
    room[block] = left;
    if (left > 0) {
      const stack = byCapacity.get(left) ?? [];
      stack.push(block);
      byCapacity.set(left, stack);
      index.add(left, 1);
    }
  }
  return blocks;
}
