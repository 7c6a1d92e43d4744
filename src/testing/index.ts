/**
 * `tunekit/testing`: tunekit's public test doubles, for testing code that uses tunekit without the
 * network: a scripted `MockProvider`, msw handlers that behave like the real services, and tiny
 * generated models for the local engine. The handlers build on msw, an optional peer dependency:
 * install it (`npm i -D msw`) to use this entry.
 */
export * from "./archive.js";
export * from "./byte-level-tokenizer.js";
export * from "./chat-completions.js";
export * from "./fireworks.js";
export * from "./hub.js";
export * from "./mock-chat-target.js";
export * from "./mock-provider.js";
export * from "./openai.js";
export * from "./tiny-model.js";
export * from "./together.js";
