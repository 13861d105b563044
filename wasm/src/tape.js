// The JS half of src/tape.rs: strings into linear memory in one call, and tapes back into plain
// objects with one UTF-8 decode per value. Kept tiny and free of logic: the rules are in Rust.

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
let known = [];
let index = new Map();

let memory;
let buffer, u8, u32, f64;
// The input buffer's view, kept while Rust reuses the buffer and the memory has not grown.
let dest, destPtr = -1, destLen = -1;

export function setup(strings, mem) {
  known = strings.split("\n");
  index = new Map(known.map((s, i) => [s, i]));
  memory = mem;
}

/** Views of linear memory, made again only after it grew (which detaches the old buffer). */
function views() {
  buffer = memory.buffer;
  u8 = new Uint8Array(buffer);
  u32 = new Uint32Array(buffer);
  f64 = new Float64Array(buffer);
  destPtr = -1;
}

/**
 * Bytes written into the `len` bytes at `ptr`, -1 when they hold less than the string, or -2
 * when `text` is not a string (never a throw: see NOT_A_STRING in tape.rs).
 */
export function encodeInto(text, ptr, len) {
  if (typeof text !== "string") return -2;
  if (buffer !== memory.buffer) views();
  if (ptr !== destPtr || len !== destLen) {
    dest = u8.subarray(ptr, ptr + len);
    destPtr = ptr;
    destLen = len;
  }
  const r = encoder.encodeInto(text, dest);
  return r.read === text.length ? r.written : -1;
}

export function stringLength(text) {
  return text.length;
}

/** `Number` of the `len` ASCII bytes at `ptr`: a number the core reads through JavaScript. */
export function number(ptr, len) {
  if (buffer !== memory.buffer) views();
  // Char by char: a TextDecoder call costs ~0.3 µs in Chromium, more than the whole loop for
  // the usual 17-25 digits (BENCHMARKS.md "## WASM").
  let s = "";
  for (let i = ptr; i < ptr + len; i++) s += String.fromCharCode(u8[i]);
  return +s;
}

/** The index of a known string (a kind, a status), or -1 for anything else. */
export function knownIndex(value) {
  const i = index.get(value);
  return i === undefined ? -1 : i;
}

// The tape being read (module state: decoding never re-enters).
let ops, nums, text, at, num, cut;

/** Addresses and lengths (in elements) of the tape's three parts in linear memory. */
export function decodeTape(opsPtr, opsLen, numsPtr, numsLen, textPtr, textLen) {
  if (buffer !== memory.buffer) views();
  ops = u32;
  at = opsPtr >>> 2;
  nums = f64;
  num = numsPtr >>> 3;
  text = textLen === 0 ? "" : decoder.decode(u8.subarray(textPtr, textPtr + textLen));
  cut = 0;
  const v = value();
  ops = nums = text = undefined;
  return v;
}

function string(op) {
  const end = op >>> 4;
  const s = text.slice(cut, end);
  cut = end;
  return s;
}

// Objects of a fixed shape (SHAPES in tape.rs, same keys in the same order): an object literal
// gets its final layout at once, where keys stored one by one cost V8 ~6x more.
const shapes = [
  () => ({
    id: value(),
    workspace_id: value(),
    user_id: value(),
    status: value(),
    type: value(),
    project_name: value(),
    hostname: value(),
    arch: value(),
    user_email: value(),
    error_message: value(),
    metadata: value(),
    created_at: value(),
    updated_at: value(),
    completed_at: value(),
    version: value(),
  }),
  () => ({ path: value(), code: value(), message: value() }),
  () => ({ ok: value(), job: value() }),
  () => ({ ok: value(), errors: value() }),
  () => ({ ok: value(), metadata: value() }),
];

function value() {
  const op = ops[at++];
  switch (op & 15) {
    case 0:
      return null;
    case 1:
      return true;
    case 2:
      return false;
    case 3:
      return nums[num++];
    case 4:
      return string(op);
    case 5:
      return known[op >>> 4];
    case 8:
      return shapes[op >>> 4]();
    case 6: {
      const o = {};
      for (let n = op >>> 4; n > 0; n--) {
        const k = ops[at++];
        const key = (k & 15) === 5 ? known[k >>> 4] : string(k);
        if (key === "__proto__") {
          // An own property, as JSON.parse makes it (assignment would set the prototype).
          Object.defineProperty(o, key, { value: value(), enumerable: true, writable: true, configurable: true });
        } else {
          o[key] = value();
        }
      }
      return o;
    }
    default: {
      const a = [];
      for (let n = op >>> 4; n > 0; n--) a.push(value());
      return a;
    }
  }
}
