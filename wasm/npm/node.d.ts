// Ready-to-use exports (the module is instantiated on import).
export * from "./jobs_wasm.js";
