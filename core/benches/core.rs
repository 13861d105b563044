//! Our work beside bare serde_json on the same bytes, so the ratio is visible:
//! parse+validate vs parse to `Value`; document mapping vs serialising the job; a 1,000-job
//! `_bulk` body vs serialising the same jobs; arrays of numbers read by the core's reader vs
//! serde_json's (`float_roundtrip`: both give the nearest double).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use jobs_core::search::{self, Change};
use jobs_core::validate::{self, json};
use jobs_core::{Job, Timestamp};
use serde_json::Value;
use std::hint::black_box;

/// A realistic stored job, 699 bytes as JSON.
const JOB: &str = r#"{"id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","workspace_id":"0190a1b2-0000-7000-8000-0000000000aa","user_id":"0190a1b2-0000-7000-8000-000000000001","status":"FAILED","type":"BUILD","project_name":"payments-api","hostname":"build-07.ci.example.com","arch":"x86_64","user_email":"dev.ops@example.com","error_message":"step 4/9 failed: exit code 137 (out of memory)","metadata":{"cpuCores":8,"memoryGb":15.5,"buildDurationMs":412345,"dockerImageId":"sha256:9b2a4f0d7c1e5b8a3f6d2c9e0b4a7f1d8c5e2b9a6f3d0c7e4b1a8f5d2c9e6b3a","branch":"main","commit":"4f2a9c1"},"created_at":"2024-05-01T12:00:00.123456Z","updated_at":"2024-05-01T12:07:41.654321Z","completed_at":"2024-05-01T12:07:41.654321Z","version":4}"#;

fn job() -> Job {
    validate::record_from_json(JOB.as_bytes()).expect("valid benchmark job").into_job()
}

fn parse_validate(c: &mut Criterion) {
    let bytes = JOB.as_bytes();
    let mut g = c.benchmark_group("parse_validate");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("serde_json_value", |b| b.iter(|| serde_json::from_slice::<Value>(black_box(bytes))));
    g.bench_function("jobs_core_record", |b| b.iter(|| validate::record_from_json(black_box(bytes))));
    let create = br#"{"type":"BUILD","project_name":"payments-api","hostname":"build-07.ci.example.com","arch":"amd64","metadata":{"cpuCores":"8","memoryGb":15.5,"branch":"main"}}"#;
    g.bench_function("serde_json_value_create", |b| b.iter(|| serde_json::from_slice::<Value>(black_box(create))));
    g.bench_function("jobs_core_create", |b| b.iter(|| validate::create_from_json(black_box(create))));
    g.finish();
}

fn document(c: &mut Criterion) {
    let j = job();
    let mut g = c.benchmark_group("document");
    g.bench_function("serde_json_serialise_job", |b| b.iter(|| serde_json::to_vec(black_box(&j))));
    g.bench_function("jobs_core_document_serialised", |b| {
        b.iter(|| serde_json::to_vec(&search::document(black_box(&j))))
    });
    g.finish();
}

fn bulk(c: &mut Criterion) {
    let base = job();
    let jobs: Vec<Job> = (0..1000u128)
        .map(|i| Job {
            id: uuid::Uuid::from_u128(0x0190_a1b2_c3d4_7e5f_8a9b_0000_0000_0000 + i),
            created_at: Timestamp::from_millis(1_714_564_800_000 + i as i64),
            ..base.clone()
        })
        .collect();
    let changes: Vec<Change<'_>> = jobs.iter().map(Change::Upsert).collect();
    let mut g = c.benchmark_group("bulk_1000");
    g.throughput(Throughput::Elements(1000));
    g.bench_function(BenchmarkId::new("serde_json_serialise_jobs", 1000), |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(1000 * 700);
            for j in &jobs {
                let _ = serde_json::to_writer(&mut out, black_box(j));
                out.push(b'\n');
            }
            out
        })
    });
    g.bench_function(BenchmarkId::new("jobs_core_bulk_body", 1000), |b| {
        b.iter(|| search::bulk_body("jobs-v1", black_box(&changes)))
    });
    g.finish();
}

/// 200 numbers of one kind as a JSON array: what JavaScript writes for fractions (16-17
/// digits), doubles with large exponents, and short decimals (Clinger's fast path).
fn numbers(c: &mut Criterion) {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut g = c.benchmark_group("numbers_200");
    for name in ["fractions", "large_exponents", "short"] {
        let mut numbers = Vec::new();
        while numbers.len() < 200 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = match name {
                "fractions" => (x >> 11) as f64 / (1u64 << 53) as f64 * 1000.0,
                "large_exponents" => f64::from_bits(x >> 1),
                _ => (x % 10_000) as f64 / 8.0,
            };
            if f.is_finite() {
                numbers.push(format!("{f:?}"));
            }
        }
        let text = format!("[{}]", numbers.join(","));
        let bytes = text.as_bytes();
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(BenchmarkId::new("serde_json_value", name), |b| {
            b.iter(|| serde_json::from_slice::<Value>(black_box(bytes)))
        });
        g.bench_function(BenchmarkId::new("jobs_core_json", name), |b| b.iter(|| json::parse_value(black_box(bytes))));
    }
    g.finish();
}

criterion_group!(benches, parse_validate, document, bulk, numbers);
criterion_main!(benches);
