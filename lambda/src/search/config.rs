//! How the search client reaches its engine: URL, authentication, alias and limits, from the
//! environment (`SEARCH_URL`, `SEARCH_AUTH`, ...) or built explicitly (tests, tools).

use super::SearchError;
use reqwest::Url;
use std::fmt;
use std::time::Duration;

/// How requests are authenticated.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Basic {
        username: String,
        password: String,
    },
    /// An Elasticsearch API key, sent as `Authorization: ApiKey <key>` (the base64 "encoded"
    /// form Elastic Cloud hands out).
    ApiKey(String),
    /// Amazon OpenSearch Service: SigV4 (service `es`) with credentials from the AWS default
    /// chain (environment, profile, container or instance role).
    SigV4 {
        region: String,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets.
        match self {
            Auth::None => f.write_str("None"),
            Auth::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Auth::ApiKey(_) => f.write_str("ApiKey(***)"),
            Auth::SigV4 { region } => write!(f, "SigV4({region})"),
        }
    }
}

/// Everything the client needs. Build with [`SearchConfig::new`] and the setters, or
/// [`SearchConfig::from_env`].
#[derive(Debug, Clone)]
pub struct SearchConfig {
    pub url: Url,
    pub auth: Auth,
    /// The alias readers and writers use (`jobs`); indexes are `{alias}-v{N}` and a reindex in
    /// progress is marked by the alias `{alias}-reindex`.
    pub alias: String,
    /// Shards and replicas of a new index.
    pub shards: u32,
    pub replicas: u32,
    /// The time limit of one request unless the caller gives a shorter one.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// A `_bulk` request carries at most this many bytes and this many documents; larger
    /// batches are split.
    pub bulk_max_bytes: usize,
    pub bulk_max_docs: usize,
}

pub const DEFAULT_BULK_MAX_BYTES: usize = 5 * 1024 * 1024;
pub const DEFAULT_BULK_MAX_DOCS: usize = 1_000;

impl SearchConfig {
    pub fn new(url: &str) -> Result<SearchConfig, SearchError> {
        let url =
            Url::parse(url.trim()).map_err(|e| SearchError::Config(format!("SEARCH_URL {:?}: {e}", redact(url))))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(SearchError::Config(format!("SEARCH_URL must be http(s), not {}", url.scheme())));
        }
        Ok(SearchConfig {
            url,
            auth: Auth::None,
            alias: jobs_core::search::ALIAS.to_owned(),
            shards: 1,
            replicas: 1,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            bulk_max_bytes: DEFAULT_BULK_MAX_BYTES,
            bulk_max_docs: DEFAULT_BULK_MAX_DOCS,
        })
    }

    pub fn auth(mut self, auth: Auth) -> SearchConfig {
        self.auth = auth;
        self
    }

    /// Uses another alias (tests: a unique one each). Lowercase letters, digits, `_` and `-`.
    pub fn alias(mut self, alias: impl Into<String>) -> SearchConfig {
        self.alias = alias.into();
        self
    }

    pub fn shards(mut self, shards: u32) -> SearchConfig {
        self.shards = shards.max(1);
        self
    }

    pub fn replicas(mut self, replicas: u32) -> SearchConfig {
        self.replicas = replicas;
        self
    }

    pub fn request_timeout(mut self, t: Duration) -> SearchConfig {
        self.request_timeout = t;
        self
    }

    pub fn bulk_limits(mut self, max_bytes: usize, max_docs: usize) -> SearchConfig {
        self.bulk_max_bytes = max_bytes.max(1);
        self.bulk_max_docs = max_docs.max(1);
        self
    }

    /// From the environment; `Ok(None)` when `SEARCH_URL` is unset or empty (no engine: the
    /// API answers from the database).
    ///
    /// - `SEARCH_URL`: `http(s)://host:port` (a path prefix is kept);
    /// - `SEARCH_AUTH`: `none` (default), `basic` (`SEARCH_USERNAME`, `SEARCH_PASSWORD`),
    ///   `apikey` (`SEARCH_API_KEY`) or `sigv4` (`SEARCH_REGION`, else `AWS_REGION`);
    /// - `SEARCH_ALIAS` (default `jobs`), `SEARCH_SHARDS` (1), `SEARCH_REPLICAS` (1),
    ///   `SEARCH_TIMEOUT_MS` (30000).
    pub fn from_env() -> Result<Option<SearchConfig>, SearchError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`SearchConfig::from_env`] over any lookup (tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<SearchConfig>, SearchError> {
        let Some(url) = get("SEARCH_URL").filter(|u| !u.trim().is_empty()) else { return Ok(None) };
        let mut cfg = SearchConfig::new(&url)?;
        let need =
            |k: &str| get(k).filter(|v| !v.is_empty()).ok_or_else(|| SearchError::Config(format!("{k} is required")));
        let auth = get("SEARCH_AUTH").unwrap_or_default().to_ascii_lowercase();
        cfg.auth = match auth.as_str() {
            "" | "none" => Auth::None,
            "basic" => Auth::Basic { username: need("SEARCH_USERNAME")?, password: need("SEARCH_PASSWORD")? },
            "apikey" | "api_key" => Auth::ApiKey(need("SEARCH_API_KEY")?),
            "sigv4" | "aws" => Auth::SigV4 {
                region: get("SEARCH_REGION")
                    .or_else(|| get("AWS_REGION"))
                    .or_else(|| get("AWS_DEFAULT_REGION"))
                    .filter(|r| !r.is_empty())
                    .ok_or_else(|| SearchError::Config("SEARCH_REGION (or AWS_REGION) is required for sigv4".into()))?,
            },
            other => {
                return Err(SearchError::Config(format!(
                    "SEARCH_AUTH {other:?}: expected none, basic, apikey or sigv4"
                )));
            }
        };
        // Credentials in the URL (`http://user:pass@host`) mean basic auth, and only then: kept
        // beside another SEARCH_AUTH, they reached every error that names the URL.
        if cfg.auth != Auth::None && (!cfg.url.username().is_empty() || cfg.url.password().is_some()) {
            return Err(SearchError::Config(
                "SEARCH_URL carries credentials and SEARCH_AUTH is set: give them one way".into(),
            ));
        }
        if cfg.auth == Auth::None && !cfg.url.username().is_empty() {
            let username = cfg.url.username().to_owned();
            let password = cfg.url.password().unwrap_or_default().to_owned();
            let _ = cfg.url.set_username("");
            let _ = cfg.url.set_password(None);
            cfg.auth = Auth::Basic { username, password };
        }
        if let Some(a) = get("SEARCH_ALIAS").filter(|a| !a.is_empty()) {
            cfg.alias = a;
        }
        let num = |k: &str, default: u64| -> Result<u64, SearchError> {
            match get(k).filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(v) => v.parse().map_err(|_| SearchError::Config(format!("{k} must be a whole number, not {v:?}"))),
            }
        };
        cfg.shards = u32::try_from(num("SEARCH_SHARDS", 1)?.max(1)).unwrap_or(1);
        cfg.replicas = u32::try_from(num("SEARCH_REPLICAS", 1)?).unwrap_or(1);
        cfg.request_timeout = Duration::from_millis(num("SEARCH_TIMEOUT_MS", 30_000)?.max(1));
        cfg.validate()?;
        Ok(Some(cfg))
    }

    pub(crate) fn validate(&self) -> Result<(), SearchError> {
        let ok = !self.alias.is_empty()
            && self.alias.len() <= 200
            && !self.alias.starts_with(['-', '_'])
            && self.alias.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(())
        } else {
            Err(SearchError::Config(format!("alias {:?}: use lowercase letters, digits, _ and -", self.alias)))
        }
    }
}

/// A URL as it may be shown: everything from the scheme to the last `@` replaced by `***`
/// (also in text that does not parse as a URL: a password may hold a raw `/`). An `@` in the path
/// hides more than the credentials, never less.
pub fn redact(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else { return url.to_owned() };
    match url[start..].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &url[start + at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Result<Option<SearchConfig>, String> {
        let m: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        SearchConfig::from_lookup(|k| m.get(k).cloned()).map_err(|e| e.to_string())
    }

    #[test]
    fn from_env() {
        assert!(matches!(cfg(&[]), Ok(None)));
        assert!(matches!(cfg(&[("SEARCH_URL", " ")]), Ok(None)));
        let c = cfg(&[("SEARCH_URL", "http://127.0.0.1:9200")]).ok().flatten().map(|c| (c.auth, c.alias));
        assert_eq!(c, Some((Auth::None, "jobs".to_owned())));
        let c = cfg(&[("SEARCH_URL", "https://u:p@es.example.com/prefix")]).ok().flatten();
        assert_eq!(
            c.as_ref().map(|c| c.auth.clone()),
            Some(Auth::Basic { username: "u".into(), password: "p".into() })
        );
        assert_eq!(c.map(|c| c.url.to_string()), Some("https://es.example.com/prefix".to_owned()));
        let c = cfg(&[("SEARCH_URL", "https://x"), ("SEARCH_AUTH", "sigv4"), ("AWS_REGION", "eu-west-1")]);
        assert_eq!(c.ok().flatten().map(|c| c.auth), Some(Auth::SigV4 { region: "eu-west-1".into() }));
        let c = cfg(&[("SEARCH_URL", "https://x"), ("SEARCH_AUTH", "apikey"), ("SEARCH_API_KEY", "k==")]);
        assert_eq!(c.ok().flatten().map(|c| c.auth), Some(Auth::ApiKey("k==".into())));
        for (vars, needle) in [
            (vec![("SEARCH_URL", "ftp://x")], "http(s)"),
            (vec![("SEARCH_URL", "not a url")], "SEARCH_URL"),
            (vec![("SEARCH_URL", "http://x"), ("SEARCH_AUTH", "basic")], "SEARCH_USERNAME"),
            (vec![("SEARCH_URL", "http://x"), ("SEARCH_AUTH", "sigv4")], "SEARCH_REGION"),
            (vec![("SEARCH_URL", "http://x"), ("SEARCH_AUTH", "kerberos")], "expected none"),
            (vec![("SEARCH_URL", "http://x"), ("SEARCH_ALIAS", "Jobs")], "alias"),
            (vec![("SEARCH_URL", "http://x"), ("SEARCH_TIMEOUT_MS", "soon")], "SEARCH_TIMEOUT_MS"),
            (vec![("SEARCH_URL", "https://u:p@x"), ("SEARCH_AUTH", "apikey"), ("SEARCH_API_KEY", "k")], "one way"),
        ] {
            let got = cfg(&vars);
            assert!(got.as_ref().is_err_and(|e| e.contains(needle)), "{vars:?}: {got:?}");
        }
    }

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(redact("https://u:hunter2@es.example.com:9200/p"), "https://***@es.example.com:9200/p");
        assert_eq!(redact("https://u:pa/ss@es.example.com"), "https://***@es.example.com");
        assert_eq!(redact("https://es.example.com/p?q=a@b"), "https://***@b", "more hidden, never less");
        assert_eq!(redact("http://es:9200"), "http://es:9200");
        assert_eq!(redact("http://a@b@c d"), "http://***@c d");
        assert_eq!(redact("no scheme u:p@x"), "no scheme u:p@x");
        let bad = cfg(&[("SEARCH_URL", "http://u:hunter2@exa mple")]);
        assert!(bad.is_err_and(|e| !e.contains("hunter2")));
    }

    #[test]
    fn debug_hides_secrets() {
        let a = Auth::Basic { username: "u".into(), password: "hunter2".into() };
        assert!(!format!("{a:?}").contains("hunter2"));
        assert!(!format!("{:?}", Auth::ApiKey("sekrit".into())).contains("sekrit"));
    }
}
