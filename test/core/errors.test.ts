import { describe, expect, it } from "vitest";
import { DataFormatError, SourceError, TunekitError, ValidationError } from "../../src/core/errors.js";

describe("TunekitError", () => {
  it("carries a stable code, the cause and the location in the message", () => {
    const cause = new Error("low level");
    const error = new DataFormatError("invalid_json", "bad", {
      cause,
      location: { file: "a.jsonl", line: 3, path: "messages[0]" },
    });
    expect(error).toBeInstanceOf(TunekitError);
    expect(error.name).toBe("DataFormatError");
    expect(error.code).toBe("invalid_json");
    expect(error.cause).toBe(cause);
    expect(error.message).toBe("a.jsonl:3 at messages[0]: bad");
    expect(new SourceError("http_error", "x", { status: 404 }).status).toBe(404);
  });

  it("isInstance works across copies of the package, where instanceof does not", () => {
    class OtherCopyError extends Error {
      constructor() {
        super("from another copy");
        Object.defineProperty(this, Symbol.for("tunekit.error"), { value: true });
      }
    }
    const foreign = new OtherCopyError();
    expect(foreign instanceof TunekitError).toBe(false);
    expect(TunekitError.isInstance(foreign)).toBe(true);
    expect(TunekitError.isInstance(new ValidationError("invalid_argument", "y"))).toBe(true);
    expect(TunekitError.isInstance(new Error("plain"))).toBe(false);
    expect(TunekitError.isInstance(null)).toBe(false);
  });
});
