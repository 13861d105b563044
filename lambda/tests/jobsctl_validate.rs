//! `jobsctl validate` as a user runs it: the built binary, NDJSON on stdin or in a file,
//! verdict lines on stdout, exit 0 / 1 / 2.

use std::io::Write;
use std::process::{Command, Stdio};

fn jobsctl(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_jobsctl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("jobsctl starts");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("jobsctl ends");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn all_valid_exits_zero_with_normalised_jobs() {
    let (code, out, _) = jobsctl(
        &["validate", "--kind", "create"],
        "{\"type\":\"TEST\",\"project_name\":\"web\",\"arch\":\"aarch64\"}\n",
    );
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "{\"line\":1,\"ok\":true,\"job\":{\"arch\":\"arm64\",\"hostname\":null,\"id\":null,\"metadata\":{},\"project_name\":\"web\",\"status\":\"QUEUED\",\"type\":\"TEST\",\"workspace_id\":null}}\n"
    );
}

#[test]
fn any_invalid_exits_one_and_reports_each_line() {
    let input = "{\"type\":\"TEST\",\"project_name\":\"web\"}\nnot json\n{\"type\":\"NOPE\",\"project_name\":\"\"}\n";
    let (code, out, _) = jobsctl(&["validate", "--kind", "create", "-"], input);
    assert_eq!(code, 1);
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["errors"][0]["code"], "invalid_json");
    let codes: Vec<&str> =
        lines[2]["errors"].as_array().expect("errors").iter().filter_map(|e| e["code"].as_str()).collect();
    assert_eq!(codes, ["unknown_type", "blank"]);
}

#[test]
fn patch_lines_carry_current_and_patch() {
    let current = r#"{"id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","user_id":"0190a1b2-0000-7000-8000-000000000001","status":"RUNNING","type":"BUILD","project_name":"a","created_at":"2024-05-01T12:00:00Z","updated_at":"2024-05-01T12:00:00Z","version":1}"#;
    let input = format!("{{\"current\":{current},\"patch\":{{\"status\":\"FAILED\",\"error_message\":\"exit 2\"}}}}\n");
    let (code, out, _) = jobsctl(&["validate", "--kind", "patch"], &input);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["job"]["status"], "FAILED");
    assert_eq!(v["job"]["version"], 2);
    assert!(v["job"]["completed_at"].is_string());
}

#[test]
fn usage_errors_exit_two() {
    assert_eq!(jobsctl(&["validate", "--kind", "bogus"], "").0, 2);
    assert_eq!(jobsctl(&["validate", "/nonexistent/file.ndjson"], "").0, 2);
    assert_eq!(jobsctl(&["frobnicate"], "").0, 2);
}
