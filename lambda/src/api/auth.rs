//! Who is calling: the caller's identity from the API Gateway authorizer's claims (in Lambda), or
//! from an HS256 bearer token signed with `JOBS_JWT_SECRET` (`jobsctl serve`, Function URLs), and
//! the minting of such tokens (`jobsctl token`).
//!
//! Claims: `sub` is the user id (a UUID), `email` optional (ignored when `email_verified` is
//! false), `workspaces` (or Cognito's `custom:workspaces`) optional: the workspace ids the caller
//! belongs to, as a JSON array or as a string. They grant access to those workspaces' jobs, so
//! the issuer must not let users set them (in Cognito: leave the attribute out of the app
//! client's write attributes, or add it in a pre-token-generation trigger). API Gateway hands
//! every JWT claim to the function as a string, arrays flattened to `"[a b]"`, so every string
//! form is read: `"[a b]"`, `"a,b"`, `"a b"` and `'["a","b"]'`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use http::request::Parts;
use lambda_http::request::RequestContext;
use serde_json::{Map, Value, json};
use sha2::Sha256;
use uuid::Uuid;

/// The most workspaces one identity may claim.
pub const MAX_WORKSPACES: usize = 500;
/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: i64 = 60;
/// The shortest secret accepted for signing tokens.
pub const MIN_SECRET_BYTES: usize = 16;

/// The caller, as the claims say.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub user_id: Uuid,
    pub email: Option<String>,
    /// Sorted, without duplicates.
    pub workspaces: Vec<Uuid>,
}

/// The HS256 key of locally signed tokens.
#[derive(Clone)]
pub struct Hs256Key(Vec<u8>);

impl std::fmt::Debug for Hs256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hs256Key(..)")
    }
}

impl Hs256Key {
    pub fn new(secret: &[u8]) -> Result<Hs256Key, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!("the token secret must be at least {MIN_SECRET_BYTES} bytes"));
        }
        Ok(Hs256Key(secret.to_vec()))
    }

    /// From `JOBS_JWT_SECRET`: `Ok(None)` when unset or empty.
    pub fn from_env() -> Result<Option<Hs256Key>, String> {
        match std::env::var("JOBS_JWT_SECRET") {
            Ok(s) if !s.is_empty() => Hs256Key::new(s.as_bytes()).map(Some),
            _ => Ok(None),
        }
    }

    fn mac(&self) -> Result<Hmac<Sha256>, String> {
        // HMAC takes keys of any length: this never fails.
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).map_err(|_| "unusable token key".to_owned())
    }
}

/// What a locally minted token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub user_id: Uuid,
    pub email: Option<String>,
    pub workspaces: Vec<Uuid>,
    /// Seconds since the epoch.
    pub issued_at: i64,
    pub ttl_secs: i64,
}

/// Signs a token (`jobsctl token`).
pub fn mint(key: &Hs256Key, req: &TokenRequest) -> Result<String, String> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let mut claims = json!({
        "sub": req.user_id,
        "iat": req.issued_at,
        "exp": req.issued_at.saturating_add(req.ttl_secs),
    });
    if let Some(obj) = claims.as_object_mut() {
        if let Some(e) = &req.email {
            obj.insert("email".into(), json!(e));
        }
        if !req.workspaces.is_empty() {
            obj.insert("workspaces".into(), json!(req.workspaces));
        }
    }
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let mut mac = key.mac()?;
    mac.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Ok(format!("{signing_input}.{sig}"))
}

/// Checks an HS256 token's signature, `exp` (required) and `nbf` against `now` (seconds since
/// the epoch) and reads the identity from its claims.
pub fn verify(key: &Hs256Key, token: &str, now: i64) -> Result<Identity, String> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("the token is not a JWT (three dot-separated parts)".into());
    };
    let header: Value = decode_part(h).ok_or("the token header is not base64url JSON")?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err("the token is not signed with HS256".into());
    }
    let sig = URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).map_err(|_| "the token signature is not base64url")?;
    let mut mac = key.mac()?;
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(p.as_bytes());
    mac.verify_slice(&sig).map_err(|_| "the token signature does not match")?;
    let claims: Value = decode_part(p).ok_or("the token claims are not base64url JSON")?;
    let Value::Object(claims) = claims else { return Err("the token claims are not a JSON object".into()) };
    match claims.get("exp").and_then(Value::as_f64) {
        Some(exp) if exp + (LEEWAY_SECS as f64) > now as f64 => {}
        Some(_) => return Err("the token has expired".into()),
        None => return Err("the token has no exp claim".into()),
    }
    // A NumericDate or absent (RFC 7519): an nbf of any other type is no reason to skip it.
    match claims.get("nbf").map(Value::as_f64) {
        None => {}
        Some(Some(nbf)) if nbf - (LEEWAY_SECS as f64) <= now as f64 => {}
        Some(Some(_)) => return Err("the token is not valid yet".into()),
        Some(None) => return Err("the token's nbf claim is not a number".into()),
    }
    identity_from_claims(&claims)
}

fn decode_part(part: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The identity in a set of claims (from a token or from the authorizer).
pub fn identity_from_claims(claims: &Map<String, Value>) -> Result<Identity, String> {
    let sub = match claims.get("sub") {
        Some(Value::String(s)) => s.trim(),
        Some(_) => return Err("the sub claim is not a string".into()),
        None => return Err("the token has no sub claim".into()),
    };
    let user_id = jobs_core::text::parse_uuid(sub).map_err(|_| "the sub claim is not a UUID".to_owned())?;
    // An address the issuer says it has not verified (Cognito lets users change their own
    // `email`, unverified until they confirm it) is not recorded on the jobs they create.
    let unverified = match claims.get("email_verified") {
        Some(Value::Bool(b)) => !b,
        Some(Value::String(v)) => v.trim().eq_ignore_ascii_case("false"),
        _ => false,
    };
    let email = match claims.get("email") {
        Some(Value::String(s)) if !s.trim().is_empty() && !unverified => Some(s.trim().to_owned()),
        _ => None,
    };
    let raw = claims.get("workspaces").or_else(|| claims.get("custom:workspaces"));
    let texts: Vec<String> = match raw {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or("the workspaces claim lists a non-string"))
            .collect::<Result<_, _>>()?,
        Some(Value::String(s)) => split_list(s),
        Some(_) => return Err("the workspaces claim is neither a list nor a string".into()),
    };
    if texts.len() > MAX_WORKSPACES {
        return Err(format!("the workspaces claim lists more than {MAX_WORKSPACES} workspaces"));
    }
    let mut workspaces = texts
        .iter()
        .map(|t| jobs_core::text::parse_uuid(t).map_err(|_| format!("the workspaces claim lists {t:?}, not a UUID")))
        .collect::<Result<Vec<_>, _>>()?;
    workspaces.sort_unstable();
    workspaces.dedup();
    Ok(Identity { user_id, email, workspaces })
}

/// A list claim flattened into a string: `'["a","b"]'`, `"[a b]"`, `"a,b"`, `"a b"` or `"a"`.
pub fn split_list(s: &str) -> Vec<String> {
    let s = s.trim();
    if s.starts_with('[')
        && let Ok(items) = serde_json::from_str::<Vec<String>>(s)
    {
        return items;
    }
    let inner = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(s);
    inner
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(|t| t.trim_matches(|c| c == '"' || c == '\''))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The claims an API Gateway authorizer attached to the request, if any: HTTP API (v2) JWT
/// authorizer claims, a v2 Lambda authorizer's context, a REST API (v1) Cognito/JWT authorizer's
/// `claims`, or a v1 Lambda authorizer's context (when it carries `sub`).
pub fn authorizer_claims(ctx: &RequestContext) -> Option<Map<String, Value>> {
    match ctx {
        RequestContext::ApiGatewayV2(c) => {
            let a = c.authorizer.as_ref()?;
            if let Some(jwt) = &a.jwt {
                return Some(jwt.claims.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect());
            }
            (!a.fields.is_empty() && a.fields.contains_key("sub"))
                .then(|| a.fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        }
        RequestContext::ApiGatewayV1(c) => {
            let fields = &c.authorizer.fields;
            match fields.get("claims") {
                Some(Value::Object(claims)) => Some(claims.clone()),
                // Some integrations hand the claims over as JSON text.
                Some(Value::String(text)) => serde_json::from_str(text).ok(),
                _ if fields.contains_key("sub") => Some(fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
                _ => None,
            }
        }
        _ => None,
    }
}

/// How the API finds out who is calling.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// Verifies `Authorization: Bearer` tokens when set (local runs, Function URLs).
    pub key: Option<Hs256Key>,
}

impl Auth {
    /// The caller of a request: the authorizer's claims when API Gateway attached any, else a
    /// bearer token when a key is configured. `now` is seconds since the epoch.
    pub fn identify(&self, parts: &Parts, now: i64) -> Result<Identity, String> {
        if let Some(claims) = parts.extensions.get::<RequestContext>().and_then(authorizer_claims) {
            return identity_from_claims(&claims);
        }
        let Some(key) = &self.key else {
            return Err("no identity: the request carries no authorizer claims".into());
        };
        let header = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .ok_or("no identity: send Authorization: Bearer <token>")?
            .to_str()
            .map_err(|_| "the Authorization header is not text")?;
        let (scheme, token) = header.trim().split_once(' ').ok_or("the Authorization header is not Bearer <token>")?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err("the Authorization header is not Bearer <token>".into());
        }
        verify(key, token.trim(), now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Hs256Key {
        Hs256Key::new(b"0123456789abcdef-test").expect("key")
    }

    const U: &str = "6f1c1c34-0d6a-4c5e-9a57-5b0e3f3f2a11";
    const W1: &str = "0a6e1f6c-3f7b-4b1e-8f7e-0e4f2b1a9c01";
    const W2: &str = "0a6e1f6c-3f7b-4b1e-8f7e-0e4f2b1a9c02";

    fn req(ttl: i64) -> TokenRequest {
        TokenRequest {
            user_id: Uuid::parse_str(U).unwrap_or_default(),
            email: Some("a@example.com".into()),
            workspaces: vec![Uuid::parse_str(W2).unwrap_or_default(), Uuid::parse_str(W1).unwrap_or_default()],
            issued_at: 1_000,
            ttl_secs: ttl,
        }
    }

    #[test]
    fn minted_tokens_verify() {
        let t = mint(&key(), &req(3600)).expect("mint");
        let id = verify(&key(), &t, 1_500).map_err(|e| e.to_string());
        assert_eq!(id.as_ref().map(|i| i.user_id.to_string()), Ok(U.to_owned()));
        assert_eq!(id.as_ref().map(|i| i.email.clone()), Ok(Some("a@example.com".into())));
        assert_eq!(
            id.map(|i| i.workspaces.iter().map(Uuid::to_string).collect::<Vec<_>>()),
            Ok(vec![W1.to_owned(), W2.to_owned()])
        );
    }

    #[test]
    fn bad_tokens_are_refused() {
        let t = mint(&key(), &req(3600)).expect("mint");
        let other = Hs256Key::new(b"another-secret-of-16").expect("key");
        let check = |token: &str, k: &Hs256Key, now: i64, needle: &str| {
            let err = verify(k, token, now).map(|_| ()).expect_err("refused");
            assert!(err.contains(needle), "{token}: {err} (wanted {needle})");
        };
        check(&t, &other, 1_500, "signature");
        check(&t, &key(), 1_000 + 3600 + LEEWAY_SECS + 1, "expired");
        check("abc", &key(), 0, "three");
        check("a.b.c.d", &key(), 0, "three");
        check("e30.e30.AAAA", &key(), 0, "HS256");
        // alg none, unsigned
        let none =
            format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#), URL_SAFE_NO_PAD.encode(r#"{"sub":"x"}"#));
        check(&none, &key(), 0, "HS256");
        // a payload swapped under a valid signature
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"{W1}","exp":99999999999}}"#));
        parts[1] = &forged;
        check(&parts.join("."), &key(), 1_500, "signature");
        // claims of the wrong type are not skipped: a string nbf (or exp) refuses the token
        let signed = |claims: &str| {
            let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#), URL_SAFE_NO_PAD.encode(claims));
            let mut mac = key().mac().expect("mac");
            mac.update(input.as_bytes());
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
        };
        check(&signed(&format!(r#"{{"sub":"{U}","exp":99999999999,"nbf":"9999999999"}}"#)), &key(), 1_500, "nbf");
        check(
            &signed(&format!(r#"{{"sub":"{U}","exp":99999999999,"nbf":9999999999}}"#)),
            &key(),
            1_500,
            "not valid yet",
        );
        check(&signed(&format!(r#"{{"sub":"{U}","exp":"99999999999"}}"#)), &key(), 1_500, "no exp");
        assert!(verify(&key(), &signed(&format!(r#"{{"sub":"{U}","exp":99999999999,"nbf":1000}}"#)), 1_500).is_ok());
        assert!(Hs256Key::new(b"short").is_err());
    }

    #[test]
    fn claims_in_every_shape() {
        fn ws(v: Value) -> Result<usize, String> {
            let mut claims = Map::new();
            claims.insert("sub".into(), json!(U));
            claims.insert("workspaces".into(), v);
            identity_from_claims(&claims).map(|i| i.workspaces.len())
        }
        assert_eq!(ws(json!([W1, W2])), Ok(2));
        assert_eq!(ws(json!(format!("[{W1} {W2}]"))), Ok(2));
        assert_eq!(ws(json!(format!("[\"{W1}\",\"{W2}\"]"))), Ok(2));
        assert_eq!(ws(json!(format!("{W1},{W2}"))), Ok(2));
        assert_eq!(ws(json!(format!("{W1}, {W1}"))), Ok(1));
        assert_eq!(ws(json!(W1)), Ok(1));
        assert_eq!(ws(json!("[]")), Ok(0));
        assert_eq!(ws(json!("")), Ok(0));
        assert_eq!(ws(Value::Null), Ok(0));
        assert!(ws(json!("[nope]")).is_err());
        assert!(ws(json!([1])).is_err());
        assert!(ws(json!({"a": 1})).is_err());
        let email = |verified: Option<Value>| {
            let mut claims = Map::new();
            claims.insert("sub".into(), json!(U));
            claims.insert("email".into(), json!("a@example.com"));
            if let Some(v) = verified {
                claims.insert("email_verified".into(), v);
            }
            identity_from_claims(&claims).map(|i| i.email)
        };
        assert_eq!(email(None), Ok(Some("a@example.com".into())), "issuers that do not say");
        assert_eq!(email(Some(json!(true))), Ok(Some("a@example.com".into())));
        assert_eq!(email(Some(json!("true"))), Ok(Some("a@example.com".into())), "API Gateway's strings");
        assert_eq!(email(Some(json!(false))), Ok(None));
        assert_eq!(email(Some(json!("false"))), Ok(None));
        let mut claims = Map::new();
        assert!(identity_from_claims(&claims).is_err());
        claims.insert("sub".into(), json!("auth0|123"));
        assert!(identity_from_claims(&claims).is_err());
        claims.insert("sub".into(), json!(7));
        assert!(identity_from_claims(&claims).is_err());
    }
}
