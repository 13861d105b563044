// A typed use of the package, checked by `tsc --noEmit` (not run): the declarations must let a
// client narrow results, switch over every error code, and reject wrong calls.
import {
  canTransition,
  canonicalArches,
  errorCodes,
  jobStatuses,
  jobTypes,
  newJobId,
  nextStates,
  shapeMetadata,
  toSearchDocument,
  validateJob,
  validateJobObject,
  type ErrorCode,
  type FieldError,
  type InvalidJobError,
  type Job,
  type JobPatch,
  type JobStatus,
  type JobType,
  type Kind,
  type Metadata,
  type NewJob,
  type NewJobInput,
  type PatchInput,
  type SearchDocument,
  type Validation,
} from "../pkg/index.js";

/** Every code has a message here: adding a code to the core without one fails this file. */
function describe(code: ErrorCode): string {
  switch (code) {
    case "required":
    case "invalid_type":
    case "unknown_field":
    case "too_long":
    case "blank":
    case "control_chars":
    case "invalid_uuid":
    case "nil_uuid":
    case "unknown_status":
    case "unknown_type":
    case "invalid_hostname":
    case "invalid_arch":
    case "invalid_email":
    case "invalid_timestamp":
    case "completed_at_required":
    case "completed_at_not_allowed":
    case "completed_before_created":
    case "updated_before_created":
    case "error_message_not_allowed":
    case "bad_transition":
    case "metadata_not_object":
    case "metadata_too_large":
    case "metadata_too_deep":
    case "invalid_metadata_key":
    case "invalid_digest":
    case "out_of_range":
    case "not_integer":
    case "not_number":
    case "invalid_json":
    case "invalid_query":
    case "invalid_cursor":
      return code.replace(/_/g, " ");
    default: {
      const unreachable: never = code;
      return unreachable;
    }
  }
}

const input: NewJobInput = { type: "BUILD", project_name: "api", hostname: "ci-1.example.com", metadata: { cpuCores: 4 } };
const created: Validation<NewJob> = validateJob(JSON.stringify(input), "create");
if (created.ok) {
  const status: JobStatus = created.job.status;
  const type: JobType = created.job.type;
  const host: string | null = created.job.hostname;
  const cores: number | undefined = created.job.metadata.cpuCores;
  console.log(status, type, host, cores);
} else {
  for (const e of created.errors) {
    const f: FieldError = e;
    console.log(f.path, describe(f.code), f.message);
  }
}

const record = validateJob("{}", "record", Date.now());
if (record.ok) {
  const job: Job = record.job;
  const doc: SearchDocument = toSearchDocument(job);
  const us: number | null = doc.completed_at_us;
  const cores: number | undefined = doc.known_metadata.cpuCores;
  const meta: Metadata = job.metadata;
  console.log(us, cores, meta.dockerImageId, job.version + 1);
  const patch: JobPatch = { status: "RUNNING", metadata: { memoryGb: 8 } };
  const envelope: PatchInput = { current: job, patch };
  const patched: Validation<Job> = validateJobObject(envelope, "patch");
  console.log(patched.ok && patched.job.updated_at);
}

const kind: Kind = Math.random() > 0.5 ? "record" : "create";
const either: Validation<Job | NewJob> = validateJob("{}", kind);
console.log(either.ok);

const shaped = shapeMetadata({ cpuCores: "4" });
if (shaped.ok) console.log(shaped.metadata.cpuCores);
else console.log(shaped.errors.map((e) => e.code satisfies ErrorCode));

try {
  toSearchDocument(JSON.parse("{}") as Job);
} catch (e) {
  console.log((e as InvalidJobError).errors.length);
}

const to: JobStatus[] = nextStates("RUNNING");
const ok: boolean = canTransition("QUEUED", to[0] ?? "RUNNING");
const id: string = newJobId();
const lists: [JobStatus[], JobType[], ErrorCode[], string[]] = [jobStatuses(), jobTypes(), errorCodes(), canonicalArches()];
console.log(ok, id, lists);

// @ts-expect-error: the kind is checked.
validateJob("{}", "update");
// @ts-expect-error: the status is checked.
canTransition("DONE", "RUNNING");
// @ts-expect-error: a create result is not a record.
const wrong: Validation<Job> = validateJob("{}", "create");
console.log(wrong);
