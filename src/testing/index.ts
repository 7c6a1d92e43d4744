/**
 * `tunekit/testing`: tunekit's public test doubles, for testing code that uses tunekit without the
 * network. They build on msw, an optional peer dependency that tests install themselves.
 */
export * from "./hub.js";
