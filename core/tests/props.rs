//! Property tests: validation never panics, shaping is idempotent, and keyset paging over the
//! reference semantics returns every matching job exactly once, in order.

use jobs_core::query::{Scope, SearchRequest};
use jobs_core::spec::JOB_FIELDS;
use jobs_core::validate::{self, Kind};
use jobs_core::{Job, JobStatus, JobType, Timestamp};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use uuid::Uuid;

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Field values drawn from pools of valid and invalid spellings, so most records are close to
/// valid and the rules themselves get exercised.
fn arb_field(name: &'static str) -> BoxedStrategy<Option<Value>> {
    let pool: Vec<Value> = match name {
        "id" | "user_id" | "workspace_id" => vec![
            json!("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
            json!("0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5C"),
            json!("00000000-0000-0000-0000-000000000000"),
            json!("x"),
            json!(null),
            json!(7),
        ],
        "status" => vec![
            json!("QUEUED"),
            json!("RUNNING"),
            json!("SUCCEEDED"),
            json!("FAILED"),
            json!("CANCELLED"),
            json!("done"),
        ],
        "type" => vec![json!("BUILD"), json!("TEST"), json!("DEPLOY"), json!("SCAN"), json!("x")],
        "project_name" => {
            vec![json!("api"), json!("é".repeat(255)), json!(" "), json!("a\u{7}"), json!("p".repeat(256))]
        }
        "hostname" => vec![json!("Build-01.Example.com"), json!("a_b"), json!(null), json!("x".repeat(300))],
        "arch" => vec![json!("amd64"), json!("AARCH64"), json!("riscv64"), json!("A B"), json!(null)],
        "user_email" => vec![json!("Dev@Example.COM"), json!("x@"), json!(null)],
        "error_message" => vec![json!("boom"), json!(null), json!("a\u{0}")],
        "metadata" => vec![
            json!({"cpuCores": "4", "memoryGb": 2.50, "x": [1, {"y": null}]}),
            json!({"buildDurationMs": 1e3}),
            json!({"cpuCores": 0}),
            json!([]),
            json!(null),
            json!({"dockerImageId": format!("sha256:{}", "AB".repeat(32))}),
        ],
        "created_at" | "updated_at" | "completed_at" => vec![
            json!("2024-05-01T12:00:00+02:00"),
            json!("2024-05-01T10:00:00.1234567Z"),
            json!("2024-05-01t09:00:00z"),
            json!("2024-02-30T00:00:00Z"),
            json!(null),
        ],
        "version" => vec![json!(0), json!(3), json!(-1), json!(1.5), json!("2")],
        _ => vec![json!(1)],
    };
    prop_oneof![1 => Just(None), 6 => prop::sample::select(pool).prop_map(Some)].boxed()
}

fn arb_record() -> impl Strategy<Value = Value> {
    JOB_FIELDS.iter().map(|f| arb_field(f.name)).collect::<Vec<_>>().prop_map(|vals| {
        let mut m = Map::new();
        for (field, v) in JOB_FIELDS.iter().zip(vals) {
            if let Some(v) = v {
                m.insert(field.name.to_owned(), v);
            }
        }
        Value::Object(m)
    })
}

/// Records valid by construction, in many spellings the rules normalise (uppercase UUIDs and
/// hostnames, arch aliases, offsets and fractions in timestamps, numbers as strings in known
/// metadata keys), with the status, completion, error and timestamp-order rules kept. The
/// pooled records above are valid about once in 10,000: properties that hold for valid jobs
/// need these.
fn arb_valid_record() -> impl Strategy<Value = Value> {
    let uuid = prop::sample::select(vec![
        "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        "0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5C",
        "6f1c1c34-0d6a-4c5e-9a57-5b0e3f3f2a11",
    ]);
    let status = prop::sample::select(vec!["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]);
    let job_type = prop::sample::select(vec!["BUILD", "TEST", "DEPLOY", "SCAN"]);
    let project = prop::sample::select(vec!["api".to_owned(), "é".repeat(255), "Web Frontend".to_owned()]);
    let hostname = prop::sample::select(vec![json!("Build-01.Example.com"), json!("ci"), json!(null)]);
    let arch = prop::sample::select(vec![json!("amd64"), json!("AARCH64"), json!("riscv64"), json!(null)]);
    let email = prop::sample::select(vec![json!("Dev@Example.COM"), json!("a.b+c@x.io"), json!(null)]);
    let metadata = prop::sample::select(vec![
        json!({"cpuCores": "4", "memoryGb": 2.50, "x": [1, {"y": null}]}),
        json!({"buildDurationMs": 1e3, "memoryGb": "16.0"}),
        json!({"dockerImageId": format!("sha256:{}", "AB".repeat(32))}),
        json!({}),
        json!(null),
    ]);
    // Seconds after 2024-05-01T00:00:00Z, written with an offset and a fraction or not.
    let at = |secs: u32, style: u8| {
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        match style % 3 {
            0 => format!("2024-05-01T{h:02}:{m:02}:{s:02}Z"),
            1 => format!("2024-05-01T{:02}:{m:02}:{s:02}.1234567+02:00", h + 2),
            _ => format!("2024-05-01t{h:02}:{m:02}:{s:02}.5z"),
        }
    };
    (
        (uuid.clone(), uuid.clone(), prop::option::of(uuid), status, job_type, project),
        (hostname, arch, email, metadata, 0u32..20_000, 1u32..20_000, 1u32..20_000, any::<u8>()),
        (0i64..1_000, any::<bool>()),
    )
        .prop_map(move |((id, user, ws, st, ty, pj), (h, a, e, md, c, u, d, style), (v, with_error))| {
            let terminal = matches!(st, "SUCCEEDED" | "FAILED" | "CANCELLED");
            let mut m = Map::new();
            m.insert("id".into(), json!(id));
            m.insert("user_id".into(), json!(user));
            m.insert("workspace_id".into(), json!(ws));
            m.insert("status".into(), json!(st));
            m.insert("type".into(), json!(ty));
            m.insert("project_name".into(), json!(pj));
            m.insert("hostname".into(), h);
            m.insert("arch".into(), a);
            m.insert("user_email".into(), e);
            m.insert("metadata".into(), md);
            m.insert("created_at".into(), json!(at(c, style)));
            m.insert("updated_at".into(), json!(at(c + u, style / 3)));
            if terminal {
                m.insert("completed_at".into(), json!(at(c + d, style / 9)));
            }
            let errors = matches!(st, "FAILED" | "CANCELLED");
            m.insert("error_message".into(), if errors && with_error { json!("boom") } else { json!(null) });
            m.insert("version".into(), json!(v));
            Value::Object(m)
        })
}

/// Patches mostly made of valid values (each field absent a third of the time), some of them
/// refused for the job they meet (a transition the state machine forbids, completed_at on a
/// job that is not done), so accepted patches are common and refused ones exercised too.
fn arb_patch() -> impl Strategy<Value = Value> {
    let field = |pool: Vec<Value>| prop_oneof![1 => Just(None), 2 => prop::sample::select(pool).prop_map(Some)];
    (
        field(vec![json!("QUEUED"), json!("RUNNING"), json!("SUCCEEDED"), json!("FAILED"), json!("CANCELLED")]),
        field(vec![json!("2024-05-02T00:00:00Z"), json!("2024-05-02T01:00:00.25+01:00"), json!(null)]),
        field(vec![json!("boom"), json!(null)]),
        field(vec![json!("Build-02.Example.com"), json!(null), json!("a_b")]),
        field(vec![json!("x86-64"), json!("ARM64"), json!(null)]),
        field(vec![json!({"cpuCores": "8", "x": null}), json!({"memoryGb": 1.5}), json!(null), json!({"y": {"z": 1}})]),
    )
        .prop_map(|(st, done, err, host, arch, md)| {
            let mut m = Map::new();
            for (k, v) in [
                ("status", st),
                ("completed_at", done),
                ("error_message", err),
                ("hostname", host),
                ("arch", arch),
                ("metadata", md),
            ] {
                if let Some(v) = v {
                    m.insert(k.to_owned(), v);
                }
            }
            Value::Object(m)
        })
}

fn now() -> Timestamp {
    Timestamp::from_millis(1_717_200_000_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for kind in [Kind::Record, Kind::Create, Kind::Patch] {
            let _ = validate::validate_json(kind, &bytes, now());
        }
    }

    #[test]
    fn never_panics_on_json(v in arb_json()) {
        let bytes = serde_json::to_vec(&v).expect("json");
        for kind in [Kind::Record, Kind::Create, Kind::Patch] {
            let _ = validate::validate_json(kind, &bytes, now());
        }
        let _ = validate::record(&v);
        let _ = validate::create(&v);
    }

    #[test]
    fn text_and_value_entry_points_agree(rec in arb_record()) {
        let text = validate::record_from_json(&serde_json::to_vec(&rec).expect("json"));
        prop_assert_eq!(&text, &validate::record(&rec));
    }

    #[test]
    fn shaping_is_idempotent(rec in arb_valid_record()) {
        // shape(shape(x)) == shape(x): a normalised record is a fixed point, and the value and
        // text entry points agree.
        let text = validate::record_from_json(&serde_json::to_vec(&rec).expect("json"));
        prop_assert_eq!(&text, &validate::record(&rec));
        let job = text.map_err(|e| TestCaseError::fail(format!("valid by construction, refused: {e:?} {rec}")))?;
        let once = serde_json::to_value(&job).expect("json");
        let twice = validate::record(&once).expect("a normalised record stays valid");
        prop_assert_eq!(twice, job);
    }
}

/// Patches on valid jobs: none panics, and every one accepted
/// leaves a job the rules accept. Counted: a generator that stopped making acceptable patches
/// would pass having checked nothing.
#[test]
fn patches_never_panic_and_keep_jobs_valid() {
    let applied = std::cell::Cell::new(0u32);
    let mut runner =
        proptest::test_runner::TestRunner::new(ProptestConfig { cases: 2000, ..ProptestConfig::default() });
    let result = runner.run(&(arb_valid_record(), arb_patch()), |(rec, patch)| {
        let current = validate::record(&rec).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        if let Ok(ok) = validate::patch(current.job(), &patch, now()) {
            applied.set(applied.get() + 1);
            let next = ok.apply(current.job(), now().max(current.job().updated_at));
            let recheck = validate::recheck(&next);
            prop_assert!(recheck.is_ok(), "patched job breaks the rules: {:?}", recheck);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(applied.get() >= 250, "only {} of 2,000 patches were accepted: the generators drifted", applied.get());
}

// ---- paging over the reference semantics

fn arb_job(users: Vec<Uuid>, workspaces: Vec<Uuid>) -> impl Strategy<Value = Job> {
    (
        any::<u128>(),
        prop::sample::select(users),
        prop::option::of(prop::sample::select(workspaces)),
        prop::sample::select(JobStatus::ALL.to_vec()),
        prop::sample::select(JobType::ALL.to_vec()),
        prop::sample::select(vec!["api", "web", "API-gateway", "db_50%"]),
        0i64..20,
        prop::option::of(1i64..8),
        prop::option::of(prop::sample::select(vec!["x86_64", "arm64"])),
    )
        .prop_map(|(id, user, ws, status, t, project, minute, cores, arch)| {
            let created = Timestamp::from_millis(1_700_000_000_000 + minute * 60_000);
            let mut metadata = Map::new();
            if let Some(c) = cores {
                metadata.insert("cpuCores".into(), json!(c));
            }
            Job {
                id: Uuid::from_u128(id | 1),
                workspace_id: ws,
                user_id: user,
                status,
                job_type: t,
                project_name: project.into(),
                hostname: None,
                arch: arch.map(str::to_owned),
                user_email: None,
                error_message: (status == JobStatus::Failed).then(|| "Exit 1: API down".to_owned()),
                metadata: metadata.into(),
                created_at: created,
                updated_at: created,
                completed_at: status.is_terminal().then_some(created),
                version: 0,
            }
        })
}

fn arb_params() -> impl Strategy<Value = Vec<(String, String)>> {
    let one = prop_oneof![
        prop::sample::select(vec!["RUNNING", "FAILED,SUCCEEDED", "QUEUED"])
            .prop_map(|v| ("status".to_owned(), v.to_owned())),
        prop::sample::select(vec!["BUILD", "TEST,DEPLOY"]).prop_map(|v| ("type".to_owned(), v.to_owned())),
        prop::sample::select(vec!["amd64", "arm64"]).prop_map(|v| ("arch".to_owned(), v.to_owned())),
        prop::sample::select(vec!["api", "50%", "API", "down"]).prop_map(|v| ("q".to_owned(), v.to_owned())),
        prop::sample::select(vec!["2", "4"]).prop_map(|v| ("metadata.cpuCores.gte".to_owned(), v.to_owned())),
        prop::sample::select(vec!["created_at", "-created_at", "-completed_at", "updated_at"])
            .prop_map(|v| ("sort".to_owned(), v.to_owned())),
        prop::sample::select(vec!["2023-11-14T22:20:00Z"]).prop_map(|v| ("created_after".to_owned(), v.to_owned())),
    ];
    prop::collection::vec(one, 0..4)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn keyset_pages_cover_every_match_once_in_order(
        jobs in prop::collection::vec(arb_job(vec![Uuid::from_u128(10), Uuid::from_u128(11)], vec![Uuid::from_u128(20), Uuid::from_u128(21)]), 0..60),
        params in arb_params(),
        limit in 1u32..7,
    ) {
        let scope = Scope { user_id: Uuid::from_u128(10), workspace_ids: vec![Uuid::from_u128(20)] };
        let mut pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let limit_s = limit.to_string();
        pairs.retain(|(k, _)| *k != "sort" || !params.iter().filter(|(n, _)| n == "sort").skip(1).any(|_| true));
        pairs.push(("limit", &limit_s));
        let first = SearchRequest::from_params(pairs.clone()).expect("valid params");
        let mut expected: Vec<&Job> = jobs.iter().filter(|j| first.matches(&scope, j)).collect();
        expected.sort_by(|a, b| first.compare(a, b));
        expected.dedup_by_key(|j| j.id);

        let mut seen: Vec<&Job> = Vec::new();
        let mut req = first.clone();
        for _ in 0..100 {
            let mut page: Vec<&Job> = jobs.iter().filter(|j| req.matches(&scope, j)).collect();
            page.sort_by(|a, b| req.compare(a, b));
            page.dedup_by_key(|j| j.id);
            page.truncate(req.fetch_size() as usize);
            let more = page.len() > req.limit as usize;
            page.truncate(req.limit as usize);
            seen.extend(page.iter().copied());
            if !more {
                break;
            }
            let cursor = req.cursor_after(page[page.len() - 1]);
            let mut next = pairs.clone();
            next.push(("cursor", &cursor));
            req = SearchRequest::from_params(next).expect("own cursor is accepted");
        }
        let ids = |v: &[&Job]| v.iter().map(|j| j.id).collect::<Vec<_>>();
        prop_assert_eq!(ids(&seen), ids(&expected));
        for j in &seen {
            prop_assert!(scope.allows(j), "tenancy");
        }
        let (sql, binds) = first.to_sql(&scope, "id");
        let max_placeholder = (1..=binds.len()).rev().find(|n| sql.contains(&format!("${n}")));
        prop_assert_eq!(max_placeholder, if binds.is_empty() { None } else { Some(binds.len()) });
    }
}
