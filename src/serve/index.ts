export { type ServeOptions, type Server, serve } from "./server.js";
export { HttpError } from "./wire.js";
