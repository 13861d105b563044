// The measuring loop shared by the Node and the Chromium benchmark: every contender runs over the
// same corpus of strings, rounds interleaved (a noisy machine hurts all alike) with the order
// reversed every other round (a fixed order favoured one slot by up to 1.5x under load; rounds
// made even, as many in each order), median reported; the ratio to ajv is the median of each
// round's own ratio (both ran in that round).

/** Runs `contenders` ({name: (text) => result}) over `corpus`; returns ops/s and acceptance. */
export function measure(contenders, corpus, rounds = 8, warmup = 4) {
  // As many rounds in each order, or the median leans to the order that has one more.
  rounds += rounds % 2;
  warmup += warmup % 2;
  const valid = {};
  for (const [name, f] of Object.entries(contenders)) {
    if (!name.startsWith("JSON")) valid[name] = corpus.filter((s) => f(s).ok).length;
  }
  const pass = (f) => {
    let sink = 0;
    const t = performance.now();
    for (let i = 0; i < corpus.length; i++) if (f(corpus[i])) sink++;
    const ms = performance.now() - t;
    if (sink !== corpus.length) throw new Error("a contender returned nothing");
    return corpus.length / (ms / 1000);
  };
  const order = Object.entries(contenders);
  const inOrder = (r) => (r % 2 === 0 ? order : [...order].reverse());
  for (let w = 0; w < warmup; w++) for (const [, f] of inOrder(w)) pass(f);
  const samples = Object.fromEntries(Object.keys(contenders).map((k) => [k, []]));
  for (let r = 0; r < rounds; r++) {
    for (const [name, f] of inOrder(r)) samples[name].push(pass(f));
  }
  const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    const m = Math.floor(s.length / 2);
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  };
  const ops = Object.fromEntries(Object.entries(samples).map(([k, xs]) => [k, Math.round(median(xs))]));
  const [ours, ajv] = [samples["jobs-wasm validateJob"], samples["ajv (allErrors)"]];
  return {
    corpus: { jobs: corpus.length, avg_bytes: Math.round(corpus.reduce((a, s) => a + s.length, 0) / corpus.length) },
    rounds,
    ops_per_sec: ops,
    valid,
    ratio_vs_ajv: +median(ours.map((x, r) => x / ajv[r])).toFixed(2),
    ratio_of_medians: +(ops["jobs-wasm validateJob"] / ops["ajv (allErrors)"]).toFixed(2),
  };
}

/** The contenders, given the package's validateJob and the three libraries' validators. */
export function contenders(validateJob, { ajv, valibot, zod }) {
  return {
    "JSON.parse (floor)": (s) => JSON.parse(s),
    "jobs-wasm validateJob": (s) => validateJob(s, "record"),
    "ajv (allErrors)": ajv,
    valibot,
    zod,
  };
}

export function report(result, where) {
  const lines = [`${where}; corpus ${result.corpus.jobs} jobs, ${result.corpus.avg_bytes} bytes avg; median of ${result.rounds} interleaved rounds:`];
  for (const [k, v] of Object.entries(result.ops_per_sec)) {
    const acc = result.valid[k] === undefined ? "" : `  (accepts ${result.valid[k]})`;
    lines.push(`  ${k.padEnd(24)} ${String(v).padStart(9)} ops/s${acc}`);
  }
  lines.push(`jobs-wasm / ajv = ${result.ratio_vs_ajv}x (median of the rounds' ratios; ratio of the medians ${result.ratio_of_medians}x)`);
  return lines.join("\n");
}
