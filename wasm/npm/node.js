// Entry for Node: instantiates the module synchronously from the file beside this one
// (`fetch` cannot read file: URLs, so the browser entry's init does not work here).
import { readFileSync } from "node:fs";
import { initSync } from "./jobs_wasm.js";

initSync({ module: readFileSync(new URL("./jobs_wasm_bg.wasm", import.meta.url)) });

export * from "./jobs_wasm.js";
