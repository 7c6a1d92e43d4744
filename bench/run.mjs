// Shared by the benchmarks that time whole processes: a command's stdout and stderr once it exits 0.
import { spawn } from "node:child_process";

export function run(command, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
    });
    child.stderr.on("data", (chunk) => {
      err += chunk;
    });
    child.on("exit", (code) =>
      code === 0 ? resolve({ out, err }) : reject(new Error(`${command} exited ${code}: ${err}`)),
    );
  });
}
