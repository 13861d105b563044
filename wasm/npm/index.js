// Entry for browsers and bundlers: fetches and instantiates the module once (top-level await),
// then every export is ready. Without top-level await, import "jobs-wasm/web" and call its
// default export (init) yourself.
import init from "./jobs_wasm.js";

await init({ module_or_path: new URL("./jobs_wasm_bg.wasm", import.meta.url) });

export * from "./jobs_wasm.js";
