/**
 * Server-sent events (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation),
 * as streaming chat completions send them: lines of `field: value`, an event ended by a blank line,
 * `data` lines of one event joined by "\n", comments (`:`) ignored, LF, CR or CRLF line ends.
 */

export interface ServerSentEvent {
  /** The `event` field; "message" when the event has none. */
  event: string;
  data: string;
  id?: string;
}

/** The events of a response body, in order; ends with the body. */
export async function* serverSentEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<ServerSentEvent> {
  const decoder = new TextDecoder();
  let buffer = "";
  let data: string[] = [];
  let event = "";
  let id: string | undefined;
  const reader = body.getReader();
  let finished = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      // Every complete line; a CR at the very end may be the first half of a CRLF.
      let start = 0;
      for (;;) {
        const lf = buffer.indexOf("\n", start);
        const cr = buffer.indexOf("\r", start);
        let end = lf < 0 ? cr : cr < 0 ? lf : Math.min(lf, cr);
        if (end < 0 || (!done && end === cr && cr === buffer.length - 1)) break;
        const line = buffer.slice(start, end);
        if (buffer[end] === "\r" && buffer[end + 1] === "\n") end++;
        start = end + 1;
        if (line === "") {
          if (data.length > 0)
            yield { event: event || "message", data: data.join("\n"), ...(id ? { id } : {}) };
          data = [];
          event = "";
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "data") data.push(text);
        else if (field === "event") event = text;
        else if (field === "id") id = text;
      }
      buffer = buffer.slice(start);
      if (done) {
        finished = true;
        break;
      }
    }
    // A last event without its blank line still counts, as browsers dispatch it only at a blank
    // line; servers that end the body right after `data: [DONE]` are common enough to accept it.
    if (buffer !== "" && buffer.startsWith("data:")) data.push(buffer.slice(5).replace(/^ /, ""));
    if (data.length > 0) yield { event: event || "message", data: data.join("\n"), ...(id ? { id } : {}) };
  } finally {
    // A reader who stops early (or an error) frees the connection.
    if (!finished) await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}
