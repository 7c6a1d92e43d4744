import type { SourceLocation } from "../../core/errors.js";
import type { Problem } from "../problem.js";

/** One record as a reader yields it: a parsed value, or a problem where the value would be. */
export type SourceRecord =
  | { location: SourceLocation; value: unknown; problem?: undefined }
  | { location: SourceLocation; value?: undefined; problem: Problem };

/** Deeper JSON than this is refused: nothing in a training record needs it, and recursion would overflow. */
export const MAX_DEPTH = 64;

/** Nesting depth of a JSON value, counted without recursion and stopping once past `limit`. */
export function jsonDepth(value: unknown, limit = MAX_DEPTH): number {
  let deepest = 0;
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [current, depth] = stack.pop() as [unknown, number];
    if (typeof current !== "object" || current === null) continue;
    if (depth > deepest) deepest = depth;
    if (deepest > limit) return deepest;
    for (const child of Array.isArray(current) ? current : Object.values(current)) {
      if (typeof child === "object" && child !== null) stack.push([child, depth + 1]);
    }
  }
  return deepest;
}
