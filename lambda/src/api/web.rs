//! The demo page's static files for `jobsctl serve`: `/` from the page's directory
//! (`wasm/web`), `/pkg/` from the built npm package (`wasm/pkg`). Whatever exists is served;
//! anything else is 404. Paths are taken segment by segment: no `..`, no hidden files, no
//! escapes, so nothing outside the two directories can be reached.

use super::ApiError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::path::{Path, PathBuf};

/// Where the page and the package live.
#[derive(Debug, Clone)]
pub struct Site {
    root: PathBuf,
    pkg: PathBuf,
}

impl Site {
    pub fn new(root: impl Into<PathBuf>, pkg: impl Into<PathBuf>) -> Site {
        Site { root: root.into(), pkg: pkg.into() }
    }

    /// The file for a request path, if the path is acceptable (not whether it exists).
    pub fn resolve(&self, path: &str) -> Option<PathBuf> {
        let (base, rest) = match path.strip_prefix("/pkg/") {
            Some(rest) => (&self.pkg, rest),
            None if path == "/pkg" => (&self.pkg, ""),
            None => (&self.root, path.strip_prefix('/')?),
        };
        let mut file = base.clone();
        for seg in rest.split('/').filter(|s| !s.is_empty()) {
            let ok = !seg.starts_with('.') && !seg.contains(['\\', '%', '\0', ':']);
            if !ok {
                return None;
            }
            file.push(seg);
        }
        if rest.is_empty() || rest.ends_with('/') {
            file.push("index.html");
        }
        Some(file)
    }

    /// The file's response (or 404). `no-cache` with an ETag (size and modification time): a
    /// reload asks again and gets 304 for what did not change, not the whole module again.
    /// `nosniff`: the browser takes the content type as given. [`CSP`]: the page holds a
    /// bearer token, so nothing but its own files may run, connect or frame it; no referrer
    /// (the first load may carry `?token=`).
    pub async fn serve(&self, path: &str, head: bool, if_none_match: Option<&str>) -> Response {
        let Some(mut file) = self.resolve(path) else { return ApiError::NoRoute.into_response() };
        let Ok(mut meta) = tokio::fs::metadata(&file).await else { return ApiError::NoRoute.into_response() };
        if meta.is_dir() {
            file.push("index.html");
            let Ok(index) = tokio::fs::metadata(&file).await else { return ApiError::NoRoute.into_response() };
            meta = index;
        }
        let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        let etag = format!("W/\"{:x}-{:x}\"", meta.len(), modified.map_or(0, |d| d.as_nanos()));
        // Weak comparison (RFC 9110): a tag matches with or without its W/.
        fn opaque(t: &str) -> &str {
            t.trim().trim_start_matches("W/")
        }
        let fresh =
            if_none_match.is_some_and(|tags| tags.split(',').any(|t| t.trim() == "*" || opaque(t) == opaque(&etag)));
        let headers = [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type(&file))),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (header::ETAG, HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\""))),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        ];
        if fresh {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        match tokio::fs::read(&file).await {
            Ok(bytes) => {
                let len = bytes.len();
                let body = if head { Vec::new() } else { bytes };
                let mut resp = (StatusCode::OK, headers, body).into_response();
                if head {
                    resp.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                }
                resp
            }
            Err(_) => ApiError::NoRoute.into_response(),
        }
    }
}

/// The page's scripts and the package from this origin only (`wasm-unsafe-eval`: compiling the
/// module), its inline `<style>`, requests to this origin (the API, the `.wasm`); no plugins,
/// no `<base>`, no form submission, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "ts" | "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_inside_the_two_directories_only() {
        let site = Site::new("/w/web", "/w/pkg");
        let check = |p: &str, want: Option<&str>| assert_eq!(site.resolve(p), want.map(PathBuf::from), "{p}");
        check("/", Some("/w/web/index.html"));
        check("/app.js", Some("/w/web/app.js"));
        check("/a/b/", Some("/w/web/a/b/index.html"));
        check("/pkg/jobs_wasm_bg.wasm", Some("/w/pkg/jobs_wasm_bg.wasm"));
        check("/pkg", Some("/w/pkg/index.html"));
        check("/../etc/passwd", None);
        check("/pkg/../../etc/passwd", None);
        check("/.git/config", None);
        check("/a%2f..%2fb", None);
        check("/a\\b", None);
        check("relative", None);
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type(Path::new("x.wasm")), "application/wasm");
        assert_eq!(content_type(Path::new("x.js")), "text/javascript; charset=utf-8");
        assert_eq!(content_type(Path::new("x")), "application/octet-stream");
    }
}
