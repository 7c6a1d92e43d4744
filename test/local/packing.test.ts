import { describe, expect, it } from "vitest";
import { seededRandom } from "../../src/core/stats.js";
import { packExamples, type TokenizedExample } from "../../src/local/packing.js";

const example = (length: number, first = 0): TokenizedExample => ({
  inputIds: Array.from({ length }, (_, i) => first + i),
  labels: Array.from({ length }, (_, i) => (i === 0 ? -100 : first + i)),
});

describe("packExamples (best-fit decreasing)", () => {
  it("puts each example, longest first, into the fullest block that still holds it", () => {
    const blocks = packExamples(
      [6, 5, 4, 3, 2, 1].map((length) => example(length)),
      10,
    );
    expect(blocks.map((block) => block.sequenceLengths)).toEqual([[6, 4], [5, 3, 2], [1]]);
    expect(blocks.map((block) => block.examples)).toEqual([[0, 2], [1, 3, 4], [5]]);
  });

  it("keeps ids and labels together and lengths adding up; every example once, no block too long", () => {
    const random = seededRandom(3);
    const examples = Array.from({ length: 2000 }, (_, index) =>
      example(1 + Math.floor(random() * 300), index * 1000),
    );
    const blocks = packExamples(examples, 512);
    const seen = blocks.flatMap((block) => block.examples).sort((a, b) => a - b);
    expect(seen).toEqual(examples.map((_, index) => index));
    let tokens = 0;
    for (const block of blocks) {
      expect(block.inputIds.length).toBeLessThanOrEqual(512);
      expect(block.sequenceLengths.reduce((sum, length) => sum + length, 0)).toBe(block.inputIds.length);
      expect(block.labels).toHaveLength(block.inputIds.length);
      let offset = 0;
      for (const [position, index] of block.examples.entries()) {
        const source = examples[index] as TokenizedExample;
        expect(block.inputIds.slice(offset, offset + source.inputIds.length)).toEqual(source.inputIds);
        expect(block.labels.slice(offset, offset + source.labels.length)).toEqual(source.labels);
        expect(block.sequenceLengths[position]).toBe(source.inputIds.length);
        offset += source.inputIds.length;
      }
      tokens += block.inputIds.length;
    }
    // Almost no room is wasted: the blocks hold the tokens in barely more than the minimum count.
    expect(tokens / (blocks.length * 512)).toBeGreaterThan(0.97);
    expect(packExamples(examples, 512)).toEqual(blocks); // deterministic
  });

  it("refuses examples it cannot pack, saying which", () => {
    expect(() => packExamples([example(3), example(11)], 10)).toThrow(
      /example 1 has 11 tokens, more than maxSeqLength 10/,
    );
    expect(() => packExamples([{ inputIds: [1, 2], labels: [1] }], 10)).toThrow(
      /example 0: 1 labels for 2 ids/,
    );
    expect(() => packExamples([], 0)).toThrow(/maxSeqLength/);
    expect(packExamples([], 8)).toEqual([]);
  });
});
