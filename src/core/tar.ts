/**
 * Reading a tar archive as it streams in, one file at a time, never holding more than one chunk:
 * POSIX ustar headers, pax extended headers (`path`, `size`) and GNU long names, sizes in octal or
 * GNU base-256. Every header's checksum is checked. Only regular files and folders come out: a link
 * or a device in the archive is refused, and so is a path that would leave the folder it is
 * extracted into (absolute, or with `..`), since the archive comes from elsewhere.
 */
import { DataFormatError } from "./errors.js";

const BLOCK = 512;

/** One file of the archive; `content` must be read to its end before the next entry comes. */
export interface TarFile {
  /** The path inside the archive, `/`-separated, without a leading `./`. */
  path: string;
  size: number;
  content: AsyncIterable<Uint8Array>;
}

/**
 * Calls `onFile` for each regular file of the archive, in archive order, and resolves once the
 * archive ends. `onFile` must read the file's content (or the rest is read and dropped for it).
 * `name` is how errors refer to the archive.
 */
export async function readTar(
  chunks: AsyncIterable<Uint8Array>,
  onFile: (file: TarFile) => Promise<void>,
  name = "the archive",
): Promise<void> {
  const reader = new ByteReader(chunks, name);
  let pax: Record<string, string> = {};
  let longName: string | undefined;
  for (;;) {
    const header = await reader.exactly(BLOCK);
    if (header === undefined || header.every((byte) => byte === 0)) return; // end of archive
    checkChecksum(header, name, reader.position - BLOCK);
    const type = String.fromCharCode(header[156] ?? 0);
    const size = pax.size !== undefined ? paxSize(pax.size, name) : numberField(header, 124, 12, name);
    const padded = Math.ceil(size / BLOCK) * BLOCK;
    if (type === "x" || type === "g" || type === "L" || type === "K") {
      // Metadata for the next entry (`g`: for all of them; tunekit reads no global keys).
      if (size > 1024 * 1024) bad(name, `a ${type} header of ${size} bytes`);
      const data = (await reader.exactly(padded)) ?? bad(name, "it ends inside a header");
      const text = new TextDecoder().decode(data.subarray(0, size));
      if (type === "x") pax = { ...pax, ...parsePax(text, name) };
      if (type === "L") longName = text.replace(/\0+$/, "");
      continue;
    }
    const path = normalize(pax.path ?? longName ?? ustarName(header), name);
    pax = {};
    longName = undefined;
    if (type === "5") {
      await reader.skip(padded);
      continue;
    }
    if (type !== "0" && type !== "\0" && type !== "7")
      bad(
        name,
        `${JSON.stringify(path)} is ${KINDS[type] ?? `an entry of type ${JSON.stringify(type)}`}: only files and folders are read`,
      );
    let consumed = 0;
    const content = reader.take(size, (count) => {
      consumed += count;
    });
    await onFile({ path, size, content });
    // What the callback left unread is skipped (a `break` out of `content` closes it).
    await reader.skip(padded - consumed);
  }
}

const KINDS: Record<string, string> = {
  "1": "a hard link",
  "2": "a symbolic link",
  "3": "a character device",
  "4": "a block device",
  "6": "a FIFO",
};

/** A `/`-separated relative path that stays inside the folder: no `..`, nothing absolute. */
function normalize(path: string, name: string): string {
  const parts = path.split("/").filter((part) => part !== "" && part !== ".");
  if (path.startsWith("/") || parts.some((part) => part === ".."))
    bad(name, `${JSON.stringify(path)} would be written outside the folder it is unpacked into`);
  if (parts.length === 0) bad(name, "an entry has no name");
  return parts.join("/");
}

function ustarName(header: Uint8Array): string {
  const field = (offset: number, length: number) => {
    const bytes = header.subarray(offset, offset + length);
    const end = bytes.indexOf(0);
    return new TextDecoder().decode(end === -1 ? bytes : bytes.subarray(0, end));
  };
  const name = field(0, 100);
  const magic = field(257, 6);
  // ustar keeps the start of a long path in `prefix`; old GNU tar puts other data there.
  const prefix = magic === "ustar" ? field(345, 155) : "";
  return prefix ? `${prefix}/${name}` : name;
}

/** An octal number field, or GNU's base-256 one (high bit of the first byte set). */
function numberField(header: Uint8Array, offset: number, length: number, name: string): number {
  const bytes = header.subarray(offset, offset + length);
  if ((bytes[0] ?? 0) & 0x80) {
    let value = (bytes[0] ?? 0) & 0x7f;
    for (const byte of bytes.subarray(1)) value = value * 256 + byte;
    if (!Number.isSafeInteger(value)) bad(name, "a size too large to read");
    return value;
  }
  const text = new TextDecoder()
    .decode(bytes)
    .replace(/[\0 ]+$/, "")
    .trim();
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) bad(name, `a header holds ${JSON.stringify(text)} where a number belongs`);
  return Number.parseInt(text, 8);
}

function checkChecksum(header: Uint8Array, name: string, at: number): void {
  const stored = numberField(header, 148, 8, name);
  let sum = 0;
  for (let index = 0; index < BLOCK; index++)
    sum += index >= 148 && index < 156 ? 0x20 : (header[index] ?? 0);
  if (sum !== stored) bad(name, `the header at byte ${at} is damaged (its checksum does not match)`);
}

/** pax records: `LENGTH KEY=VALUE\n`, LENGTH counting the whole record in bytes. */
function parsePax(text: string, name: string): Record<string, string> {
  const bytes = new TextEncoder().encode(text);
  const records: Record<string, string> = {};
  let offset = 0;
  while (offset < bytes.length) {
    const space = bytes.indexOf(0x20, offset);
    const length = Number(new TextDecoder().decode(bytes.subarray(offset, space)));
    if (space === -1 || !Number.isInteger(length) || length <= 0 || offset + length > bytes.length)
      bad(name, "a pax header is damaged");
    const record = new TextDecoder().decode(bytes.subarray(space + 1, offset + length - 1));
    const equals = record.indexOf("=");
    if (equals > 0) records[record.slice(0, equals)] = record.slice(equals + 1);
    offset += length;
  }
  return records;
}

function paxSize(value: string, name: string): number {
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) bad(name, `a pax size of "${value}"`);
  return Number(value);
}

function bad(name: string, what: string): never {
  throw new DataFormatError("invalid_archive", `${name} is not a readable tar archive: ${what}`);
}

/** Exact reads over a stream of chunks of any size. */
class ByteReader {
  readonly #iterator: AsyncIterator<Uint8Array>;
  readonly #name: string;
  #chunk: Uint8Array = new Uint8Array(0);
  #offset = 0;
  position = 0;

  constructor(chunks: AsyncIterable<Uint8Array>, name: string) {
    this.#iterator = chunks[Symbol.asyncIterator]();
    this.#name = name;
  }

  /** The next chunk's unread bytes, at most `limit`; undefined at the end of the stream. */
  async #next(limit: number): Promise<Uint8Array | undefined> {
    while (this.#offset >= this.#chunk.length) {
      const { value, done } = await this.#iterator.next();
      if (done) return undefined;
      this.#chunk = value;
      this.#offset = 0;
    }
    const piece = this.#chunk.subarray(this.#offset, this.#offset + limit);
    this.#offset += piece.length;
    this.position += piece.length;
    return piece;
  }

  /** Exactly `count` bytes; undefined when the stream ended before the first. */
  async exactly(count: number): Promise<Uint8Array | undefined> {
    const out = new Uint8Array(count);
    let filled = 0;
    while (filled < count) {
      const piece = await this.#next(count - filled);
      if (piece === undefined) {
        if (filled === 0) return undefined;
        bad(this.#name, `it ends in the middle (byte ${this.position})`);
      }
      out.set(piece, filled);
      filled += piece.length;
    }
    return out;
  }

  /** The next `count` bytes as they arrive; reports each piece's length to `onRead`. */
  async *take(count: number, onRead: (count: number) => void): AsyncGenerator<Uint8Array> {
    let left = count;
    while (left > 0) {
      const piece = await this.#next(left);
      if (piece === undefined) bad(this.#name, `it ends in the middle of a file (byte ${this.position})`);
      left -= piece.length;
      onRead(piece.length);
      yield piece;
    }
  }

  async skip(count: number): Promise<void> {
    let left = count;
    while (left > 0) {
      const piece = await this.#next(left);
      if (piece === undefined) bad(this.#name, `it ends in the middle (byte ${this.position})`);
      left -= piece.length;
    }
  }
}
