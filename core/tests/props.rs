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
    fn shaping_is_idempotent(rec in arb_record()) {
        // shape(shape(x)) == shape(x): a normalised record is a fixed point, and the value and
        // text entry points agree.
        let text = validate::record_from_json(&serde_json::to_vec(&rec).expect("json"));
        let value = validate::record(&rec);
        prop_assert_eq!(&text, &value);
        if let Ok(job) = text {
            let once = serde_json::to_value(&job).expect("json");
            let twice = validate::record(&once).expect("a normalised record stays valid");
            prop_assert_eq!(twice, job);
        }
    }

    #[test]
    fn patches_never_panic_and_keep_jobs_valid(rec in arb_record(), patch in arb_record()) {
        if let Ok(current) = validate::record(&rec) {
            let mut p = patch.as_object().cloned().unwrap_or_default();
            p.retain(|k, _| ["status", "error_message", "hostname", "arch", "metadata", "completed_at"].contains(&k.as_str()));
            if let Ok(ok) = validate::patch(current.job(), &Value::Object(p), now()) {
                let next = ok.apply(current.job(), now().max(current.job().updated_at));
                let recheck = validate::recheck(&next);
                prop_assert!(recheck.is_ok(), "patched job breaks the rules: {:?}", recheck);
            }
        }
    }
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
