// What the engine's own primitives cost on the bench corpus, per call (best of 9 passes, µs):
// the floor under any design that moves JSON text into linear memory and strings back out.
// Run by `node bench/node.js --prims` and `node bench/browser.js --prims` (Chromium), side by
// side: Blink's TextEncoder.encodeInto measured ~10x slower than Node's (BENCHMARKS.md "## WASM").
export function prims(generate, n = 10000) {
  const corpus = generate(n);
  const encoder = new TextEncoder();
  const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
  const memory = new WebAssembly.Memory({ initial: 20 });
  const linear = new Uint8Array(memory.buffer);
  const kept = linear.subarray(1024, 1024 + 8192);
  const units = new Uint16Array(memory.buffer);
  const halves = corpus.map((s) => encoder.encode(s.slice(0, 300)));
  const short = corpus.map((s) => s.slice(0, 20));
  let sink = 0;
  const time = (name, f) => {
    let best = Infinity;
    for (let round = 0; round < 9; round++) {
      const t = performance.now();
      for (let i = 0; i < corpus.length; i++) f(i);
      best = Math.min(best, performance.now() - t);
    }
    return [name, Number(((best / corpus.length) * 1000).toFixed(3))];
  };
  const rows = [
    time("JSON.parse (whole job)", (i) => (sink += JSON.parse(corpus[i]) ? 1 : 0)),
    time("encodeInto, view kept", (i) => (sink += encoder.encodeInto(corpus[i], kept).written)),
    time("encodeInto, view per call", (i) => (sink += encoder.encodeInto(corpus[i], linear.subarray(1024, 9216)).written)),
    time("encodeInto, 20 chars", (i) => (sink += encoder.encodeInto(short[i], kept).written)),
    time("charCodeAt loop into u16", (i) => {
      const s = corpus[i];
      for (let k = 0; k < s.length; k++) units[512 + k] = s.charCodeAt(k);
      sink += s.length;
    }),
    time("TextDecoder, 300 bytes", (i) => (sink += decoder.decode(halves[i]).length)),
    time("20 slices of the input", (i) => {
      const s = corpus[i];
      for (let k = 0; k < 20; k++) sink += s.slice(k * 20, k * 20 + 15).length;
    }),
  ];
  if (sink === 0) throw new Error("nothing measured");
  return rows;
}

/** The rows as text, one per line. */
export function table(rows, where) {
  return [`${where}; µs per call, best of 9 passes:`, ...rows.map(([name, us]) => `  ${name.padEnd(28)} ${us}`)].join("\n");
}
