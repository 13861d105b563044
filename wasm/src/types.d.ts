// ---- Types of jobs-wasm (kept beside the exports in src/lib.rs; a test checks the unions
// ---- against jobs-core's lists so they cannot drift).

/** Where a job is in its life: QUEUED -> RUNNING | CANCELLED; RUNNING -> SUCCEEDED | FAILED | CANCELLED. */
export type JobStatus = "QUEUED" | "RUNNING" | "SUCCEEDED" | "FAILED" | "CANCELLED";

/** What a job does. */
export type JobType = "BUILD" | "TEST" | "DEPLOY" | "SCAN";

/** Which input a text is: a whole stored job, a create request, or `{ current, patch }`. */
export type Kind = "record" | "create" | "patch";

/** A stable machine code for a problem with input; shared by the API, this package and the page. */
export type ErrorCode =
  | "required"
  | "invalid_type"
  | "unknown_field"
  | "too_long"
  | "blank"
  | "control_chars"
  | "invalid_uuid"
  | "nil_uuid"
  | "unknown_status"
  | "unknown_type"
  | "invalid_hostname"
  | "invalid_arch"
  | "invalid_email"
  | "invalid_timestamp"
  | "completed_at_required"
  | "completed_at_not_allowed"
  | "completed_before_created"
  | "updated_before_created"
  | "error_message_not_allowed"
  | "bad_transition"
  | "metadata_not_object"
  | "metadata_too_large"
  | "metadata_too_deep"
  | "invalid_metadata_key"
  | "invalid_digest"
  | "out_of_range"
  | "not_integer"
  | "not_number"
  | "invalid_json"
  | "invalid_query"
  | "invalid_cursor";

/**
 * One problem with one field. `path` is dotted (`metadata.cpuCores`, `patch.status`); the empty
 * path means the input as a whole. `message` is for people; `code` is for programs.
 */
export interface FieldError {
  path: string;
  code: ErrorCode;
  message: string;
}

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** The JSONB metadata: known keys typed and normalised, any other key kept as given. */
export interface Metadata {
  /** `sha256:` + 64 lowercase hex digits. */
  dockerImageId?: string;
  /** An integer from 1 to 1024 (given as `4.0` or `"4"`, stored as `4`). */
  cpuCores?: number;
  /** A number > 0 and at most 65536 (given as `"4.5"`, stored as `4.5`). */
  memoryGb?: number;
  /** An integer from 0 to 2^53 = 9007199254740992 (given as a string too). */
  buildDurationMs?: number;
  [key: string]: JsonValue | undefined;
}

/**
 * A job as stored and as the API returns it. Timestamps are RFC 3339 in UTC with exactly six
 * fraction digits (`2024-05-01T12:00:00.000000Z`); ids are lowercase hyphenated UUIDs.
 */
export interface Job {
  id: string;
  workspace_id: string | null;
  user_id: string;
  status: JobStatus;
  type: JobType;
  project_name: string;
  hostname: string | null;
  arch: string | null;
  user_email: string | null;
  error_message: string | null;
  metadata: Metadata;
  created_at: string;
  updated_at: string;
  completed_at: string | null;
  version: number;
}

/** A create request after validation (the server adds the user, the clock and, if missing, the id). */
export interface NewJob {
  id: string | null;
  workspace_id: string | null;
  status: JobStatus;
  type: JobType;
  project_name: string;
  hostname: string | null;
  arch: string | null;
  metadata: Metadata;
}

/** What a client sends to create a job (POST /v1/jobs). */
export interface NewJobInput {
  id?: string | null;
  workspace_id?: string | null;
  status?: JobStatus | null;
  type: JobType;
  project_name: string;
  hostname?: string | null;
  arch?: string | null;
  metadata?: { [key: string]: JsonValue } | null;
}

/** A change to one job: absent fields are kept, `null` clears; metadata is an RFC 7396 merge patch. */
export interface JobPatch {
  status?: JobStatus;
  error_message?: string | null;
  hostname?: string | null;
  arch?: string | null;
  metadata?: { [key: string]: JsonValue } | null;
  completed_at?: string | null;
}

/** The input of the `patch` kind: the job as it is and the change to check against it. */
export interface PatchInput {
  current: Job;
  patch: JobPatch;
}

/** The search engine's document for a job: the job plus exact microsecond sort keys. */
export interface SearchDocument extends Job {
  /**
   * The known metadata keys whose values have their field's type (numbers for the numeric keys,
   * a string for `dockerImageId`), as stored, for filtering; other values are left out.
   */
  known_metadata: Pick<Metadata, "dockerImageId" | "cpuCores" | "memoryGb" | "buildDurationMs">;
  created_at_us: number;
  updated_at_us: number;
  completed_at_us: number | null;
}

/** Every problem at once, or the normalised value. */
export type Validation<T> = { ok: true; job: T } | { ok: false; errors: FieldError[] };

/** The result of shaping a metadata object on its own (paths start with `metadata`). */
export type MetadataValidation = { ok: true; metadata: Metadata } | { ok: false; errors: FieldError[] };

/** Thrown by `toSearchDocument` for a value that is not a valid job record. */
export interface InvalidJobError extends Error {
  errors: FieldError[];
}

/**
 * Validates JSON text as `kind` with the server's rules and codes. Returns the normalised job
 * (record, and the patched job for `patch`) or every problem at once. `now` (milliseconds since
 * the epoch, default `Date.now()`) is the clock a patch that ends a job uses for `completed_at`.
 * Throws a TypeError for misuse only (a `json` that is not a string, an unknown `kind`), and an
 * Error for a result past the limit of what crosses back to JS (a string or container of more
 * than 2^28 - 1 bytes or entries).
 */
export function validateJob(json: string, kind: "record", now?: number): Validation<Job>;
export function validateJob(json: string, kind: "create", now?: number): Validation<NewJob>;
export function validateJob(json: string, kind: "patch", now?: number): Validation<Job>;
export function validateJob(json: string, kind: Kind, now?: number): Validation<Job | NewJob>;

/**
 * `validateJob(JSON.stringify(input), kind, now)`: the same rules for a value already in JS.
 * A value JSON cannot represent (a cycle, a BigInt) is reported as `invalid_json`.
 */
export function validateJobObject(input: unknown, kind: "record", now?: number): Validation<Job>;
export function validateJobObject(input: unknown, kind: "create", now?: number): Validation<NewJob>;
export function validateJobObject(input: unknown, kind: "patch", now?: number): Validation<Job>;
export function validateJobObject(input: unknown, kind: Kind, now?: number): Validation<Job | NewJob>;
