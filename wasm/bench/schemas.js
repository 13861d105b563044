// The job-record rules written for ajv (JSON Schema), valibot and zod, as far as each can say
// them. What none of them can say without custom code: completed_at/updated_at not before
// created_at, metadata depth and serialised size, NUL inside nested metadata, and every
// normalisation (lowercase ids and hostnames, arch aliases, UTC microsecond timestamps, numeric
// strings to numbers). Each library brings its own format checks; where they disagree with the
// core (urn:uuid, 2024-02-30, 23:59:60, lowercase t/z, +0200) is measured by bench/disagree.js.
import Ajv from "ajv";
import addFormats from "ajv-formats";
import * as v from "valibot";
import { z } from "zod";

export const STATUSES = ["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"];
export const TERMINAL = ["SUCCEEDED", "FAILED", "CANCELLED"];
export const WITH_ERROR = ["FAILED", "CANCELLED"];
export const TYPES = ["BUILD", "TEST", "DEPLOY", "SCAN"];
const NIL = "00000000-0000-0000-0000-000000000000";
const ARCH_ALIASES = ["amd64", "x64", "x86-64", "aarch64", "arm64v8", "armv8", "armv7l", "armhf", "arm32v7",
  "i486", "i586", "i686", "x86", "386", "ppc64el", "riscv64gc"];
const ARCH_TOKEN = "^[a-z0-9_]{1,50}$";
/** The aliases, case-insensitively, without regex flags (JSON Schema patterns have none). */
const ARCH_ALIAS = `^(?:${ARCH_ALIASES.map((a) => [...a].map((c) => (/[a-z]/.test(c) ? `[${c}${c.toUpperCase()}]` : c)).join("")).join("|")})$`;
const NO_CONTROL = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";
const NO_NUL = "^[^\\u0000]*$";
const HOSTNAME = "^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$";
const DIGEST = "^sha256:[0-9a-fA-F]{64}$";
const JSON_NUMBER = "^-?(?:0|[1-9][0-9]*)(?:\\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$";
const JSON_INTEGER = "^-?(?:0|[1-9][0-9]*)$";

// ---------------------------------------------------------------- ajv (JSON Schema draft-07)

const uuid = { type: "string", format: "uuid", not: { const: NIL } };
const nullableUuid = { type: ["string", "null"], format: "uuid", not: { const: NIL } };
const timestamp = { type: "string", format: "date-time" };
const intOrString = (min, max) => ({
  anyOf: [{ type: "integer", minimum: min, maximum: max }, { type: "string", pattern: JSON_INTEGER }],
});

export const jsonSchema = {
  type: "object",
  additionalProperties: false,
  required: ["id", "user_id", "status", "type", "project_name", "created_at", "updated_at", "version"],
  properties: {
    id: uuid,
    workspace_id: nullableUuid,
    user_id: uuid,
    status: { enum: STATUSES },
    type: { enum: TYPES },
    project_name: { type: "string", minLength: 1, maxLength: 255, pattern: "\\S", allOf: [{ pattern: NO_CONTROL }] },
    hostname: { type: ["string", "null"], maxLength: 253, format: "hostname" },
    arch: { type: ["string", "null"], anyOf: [{ pattern: ARCH_TOKEN }, { pattern: ARCH_ALIAS }] },
    user_email: { type: ["string", "null"], maxLength: 255, format: "email" },
    error_message: { type: ["string", "null"], maxLength: 65536, pattern: NO_NUL },
    metadata: {
      type: ["object", "null"],
      propertyNames: { minLength: 1, maxLength: 128, pattern: NO_NUL },
      properties: {
        dockerImageId: { type: "string", pattern: DIGEST },
        cpuCores: intOrString(1, 1024),
        buildDurationMs: intOrString(0, 2 ** 53),
        memoryGb: {
          anyOf: [{ type: "number", exclusiveMinimum: 0, maximum: 65536 }, { type: "string", pattern: JSON_NUMBER }],
        },
      },
    },
    created_at: timestamp,
    updated_at: timestamp,
    completed_at: { type: ["string", "null"], format: "date-time" },
    version: { type: "integer", minimum: 0 },
  },
  allOf: [
    {
      if: { required: ["status"], properties: { status: { enum: TERMINAL } } },
      then: { required: ["completed_at"], properties: { completed_at: { type: "string" } } },
      else: { properties: { completed_at: { type: "null" } } },
    },
    {
      if: { required: ["status"], properties: { status: { enum: WITH_ERROR } } },
      else: { properties: { error_message: { type: "null" } } },
    },
  ],
};

export function ajvValidator() {
  const ajv = new Ajv({ allErrors: true, strict: false });
  addFormats(ajv); // "full" mode: real calendar days, time checks
  const validate = ajv.compile(jsonSchema);
  /** JSON.parse + validate: `{ ok, errors }` like the others. */
  return (text) => {
    let data;
    try {
      data = JSON.parse(text);
    } catch (e) {
      return { ok: false, errors: [{ path: "", message: e.message }] };
    }
    return validate(data) ? { ok: true, job: data } : { ok: false, errors: validate.errors };
  };
}

// ---------------------------------------------------------------- valibot

const vUuid = v.pipe(v.string(), v.uuid(), v.notValue(NIL));
const vTimestamp = v.pipe(v.string(), v.isoTimestamp());
const vIntOrString = (min, max) =>
  v.union([v.pipe(v.number(), v.integer(), v.minValue(min), v.maxValue(max)), v.pipe(v.string(), v.regex(new RegExp(JSON_INTEGER)))]);
const archToken = new RegExp(ARCH_TOKEN);
const archAlias = new RegExp(ARCH_ALIAS);

const valibotSchema = v.pipe(
  v.strictObject({
    id: vUuid,
    workspace_id: v.nullish(vUuid),
    user_id: vUuid,
    status: v.picklist(STATUSES),
    type: v.picklist(TYPES),
    project_name: v.pipe(v.string(), v.minLength(1), v.maxLength(255), v.regex(/\S/), v.regex(new RegExp(NO_CONTROL))),
    hostname: v.nullish(v.pipe(v.string(), v.maxLength(253), v.regex(new RegExp(HOSTNAME)))),
    arch: v.nullish(v.pipe(v.string(), v.check((s) => archToken.test(s) || archAlias.test(s), "invalid arch"))),
    user_email: v.nullish(v.pipe(v.string(), v.maxLength(255), v.email())),
    error_message: v.nullish(v.pipe(v.string(), v.maxLength(65536), v.regex(new RegExp(NO_NUL)))),
    metadata: v.nullish(
      v.looseObject({
        dockerImageId: v.optional(v.pipe(v.string(), v.regex(new RegExp(DIGEST)))),
        cpuCores: v.optional(vIntOrString(1, 1024)),
        buildDurationMs: v.optional(vIntOrString(0, 2 ** 53)),
        memoryGb: v.optional(
          v.union([v.pipe(v.number(), v.gtValue(0), v.maxValue(65536)), v.pipe(v.string(), v.regex(new RegExp(JSON_NUMBER)))]),
        ),
      }),
    ),
    created_at: vTimestamp,
    updated_at: vTimestamp,
    completed_at: v.nullish(vTimestamp),
    version: v.pipe(v.number(), v.integer(), v.minValue(0)),
  }),
  v.check((j) => TERMINAL.includes(j.status) === (j.completed_at != null), "completed_at iff terminal"),
  v.check((j) => j.error_message == null || WITH_ERROR.includes(j.status), "error_message only when FAILED or CANCELLED"),
);

export function valibotValidator() {
  return (text) => {
    let data;
    try {
      data = JSON.parse(text);
    } catch (e) {
      return { ok: false, errors: [{ path: "", message: e.message }] };
    }
    const r = v.safeParse(valibotSchema, data);
    return r.success ? { ok: true, job: r.output } : { ok: false, errors: r.issues };
  };
}

// ---------------------------------------------------------------- zod

const zUuid = z.uuid().refine((s) => s !== NIL, "nil uuid");
const zTimestamp = z.iso.datetime({ offset: true });
const zIntOrString = (min, max) => z.union([z.number().int().min(min).max(max), z.string().regex(new RegExp(JSON_INTEGER))]);

const zodSchema = z
  .strictObject({
    id: zUuid,
    workspace_id: zUuid.nullish(),
    user_id: zUuid,
    status: z.enum(STATUSES),
    type: z.enum(TYPES),
    project_name: z.string().min(1).max(255).regex(/\S/).regex(new RegExp(NO_CONTROL)),
    hostname: z.string().max(253).regex(new RegExp(HOSTNAME)).nullish(),
    arch: z
      .string()
      .refine((s) => archToken.test(s) || archAlias.test(s), "invalid arch")
      .nullish(),
    user_email: z.string().max(255).pipe(z.email({ pattern: z.regexes.html5Email })).nullish(),
    error_message: z.string().max(65536).regex(new RegExp(NO_NUL)).nullish(),
    metadata: z
      .looseObject({
        dockerImageId: z.string().regex(new RegExp(DIGEST)).optional(),
        cpuCores: zIntOrString(1, 1024).optional(),
        buildDurationMs: zIntOrString(0, 2 ** 53).optional(),
        memoryGb: z.union([z.number().gt(0).max(65536), z.string().regex(new RegExp(JSON_NUMBER))]).optional(),
      })
      .nullish(),
    created_at: zTimestamp,
    updated_at: zTimestamp,
    completed_at: zTimestamp.nullish(),
    version: z.number().int().min(0),
  })
  .refine((j) => TERMINAL.includes(j.status) === (j.completed_at != null), "completed_at iff terminal")
  .refine((j) => j.error_message == null || WITH_ERROR.includes(j.status), "error_message only when FAILED or CANCELLED");

export function zodValidator() {
  return (text) => {
    let data;
    try {
      data = JSON.parse(text);
    } catch (e) {
      return { ok: false, errors: [{ path: "", message: e.message }] };
    }
    const r = zodSchema.safeParse(data);
    return r.success ? { ok: true, job: r.data } : { ok: false, errors: r.error.issues };
  };
}
