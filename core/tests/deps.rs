//! jobs-core must stay pure and small: no async runtime, HTTP, AWS, database or regex crates.

use std::process::Command;

const FORBIDDEN: &[&str] = &[
    "tokio",
    "reqwest",
    "hyper",
    "axum",
    "aws-",
    "regex",
    "postgres",
    "mio",
    "socket2",
    "openssl",
    "rustls",
    "getrandom",
    "wasm-bindgen",
    "js-sys",
    "chrono",
    "time",
];

#[test]
fn core_has_no_io_or_heavy_dependencies() {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "-p", "jobs-core", "-e", "normal", "--prefix", "none", "--offline"])
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = tree.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(names.contains(&"serde_json"), "the tree was read: {tree}");
    let bad: Vec<&&str> = names.iter().filter(|n| FORBIDDEN.iter().any(|f| n.starts_with(f))).collect();
    assert!(bad.is_empty(), "jobs-core depends on {bad:?}:\n{tree}");
}
