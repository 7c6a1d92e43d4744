/**
 * Archives as the fakes send them: a POSIX ustar tar of some files, stored in a Zstandard frame
 * (Together's `tar.zst`) or gzipped. The Zstandard frame holds raw (stored) blocks: a valid frame that
 * every decoder reads (RFC 8878, section 3.1.1), small to write, and enough for a test double.
 */
import { gzipSync } from "node:zlib";

/** A tar archive of `files` (path → content), each under `folder/` when given. */
export function tarArchive(
  files: Record<string, Uint8Array | string>,
  options: { folder?: string } = {},
): Uint8Array {
  const parts: Uint8Array[] = [];
  const encoder = new TextEncoder();
  const prefix = options.folder ? `${options.folder.replace(/\/+$/, "")}/` : "";
  if (prefix) parts.push(header(prefix, 0, "5"));
  for (const [name, content] of Object.entries(files)) {
    const bytes = typeof content === "string" ? encoder.encode(content) : content;
    parts.push(header(`${prefix}${name}`, bytes.length, "0"), bytes, new Uint8Array(padding(bytes.length)));
  }
  parts.push(new Uint8Array(1024)); // two zero blocks end the archive
  return concat(parts);
}

/** `data` as one Zstandard frame of raw blocks. */
export function zstdStore(data: Uint8Array): Uint8Array {
  const BLOCK = 128 * 1024;
  // Magic number, then a frame header: no content size, no checksum, no dictionary; a 128 KB window.
  const parts: Uint8Array[] = [new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0x00, (17 - 10) << 3])];
  let offset = 0;
  do {
    const size = Math.min(BLOCK, data.length - offset);
    const last = offset + size >= data.length ? 1 : 0;
    const value = last | (0 << 1) | (size << 3); // block type 0: raw
    parts.push(new Uint8Array([value & 0xff, (value >> 8) & 0xff, (value >> 16) & 0xff]));
    parts.push(data.subarray(offset, offset + size));
    offset += size;
  } while (offset < data.length);
  return concat(parts);
}

/** `data` gzipped. */
export function gzipBytes(data: Uint8Array): Uint8Array {
  return new Uint8Array(gzipSync(data));
}

function header(name: string, size: number, type: "0" | "5"): Uint8Array {
  const block = new Uint8Array(512);
  const encoder = new TextEncoder();
  const put = (offset: number, length: number, text: string) => {
    const bytes = encoder.encode(text);
    if (bytes.length > length)
      throw new Error(`tarArchive: ${JSON.stringify(text)} is too long for a ustar header`);
    block.set(bytes, offset);
  };
  const octal = (offset: number, length: number, value: number) =>
    put(offset, length, `${value.toString(8).padStart(length - 1, "0")}\0`);
  put(0, 100, name);
  octal(100, 8, type === "5" ? 0o755 : 0o644);
  octal(108, 8, 0);
  octal(116, 8, 0);
  octal(124, 12, size);
  octal(136, 12, 0);
  put(148, 8, "        ");
  put(156, 1, type);
  put(257, 6, "ustar\0");
  put(263, 2, "00");
  let sum = 0;
  for (const byte of block) sum += byte;
  put(148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
  return block;
}

function padding(size: number): number {
  return (512 - (size % 512)) % 512;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
