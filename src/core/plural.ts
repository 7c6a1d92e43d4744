/** `1 error`, `2 errors`, `1,024 examples`: a count and its noun, for messages people read. */
export function plural(count: number, noun: string, many = `${noun}s`): string {
  return `${count.toLocaleString("en-US")} ${count === 1 ? noun : many}`;
}
