//! Request authentication: basic, API key, and SigV4 (service `es`) for Amazon OpenSearch
//! Service with credentials from the AWS default chain, cached until shortly before they expire.

use super::{Auth, SearchError};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex;

/// Refresh credentials this long before they expire.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Applies the configured authentication to outgoing requests.
pub(crate) struct Signer {
    auth: Auth,
    /// The header value for basic / API-key auth, computed once.
    fixed: Option<HeaderValue>,
    aws: Option<AwsCredentials>,
}

struct AwsCredentials {
    provider: SharedCredentialsProvider,
    cached: Mutex<Option<Credentials>>,
}

impl Signer {
    pub(crate) async fn new(auth: &Auth) -> Result<Signer, SearchError> {
        use base64::Engine as _;
        let fixed = match auth {
            Auth::Basic { username, password } => {
                let token = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
                Some(header(&format!("Basic {token}"))?)
            }
            Auth::ApiKey(key) => Some(header(&format!("ApiKey {key}"))?),
            Auth::None | Auth::SigV4 { .. } => None,
        };
        let aws = match auth {
            Auth::SigV4 { .. } => {
                let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                let provider = sdk
                    .credentials_provider()
                    .ok_or_else(|| SearchError::Config("sigv4: no AWS credentials provider configured".into()))?;
                Some(AwsCredentials { provider, cached: Mutex::new(None) })
            }
            _ => None,
        };
        Ok(Signer { auth: auth.clone(), fixed, aws })
    }

    /// With explicit credentials (tests, tools), no default chain.
    #[cfg(test)]
    pub(crate) fn with_provider(region: &str, provider: SharedCredentialsProvider) -> Signer {
        Signer {
            auth: Auth::SigV4 { region: region.to_owned() },
            fixed: None,
            aws: Some(AwsCredentials { provider, cached: Mutex::new(None) }),
        }
    }

    #[cfg(test)]
    pub(crate) fn none() -> Signer {
        Signer { auth: Auth::None, fixed: None, aws: None }
    }

    /// Adds authentication headers to `req` (whose body, if any, is in memory).
    pub(crate) async fn apply(&self, req: &mut reqwest::Request) -> Result<(), SearchError> {
        if let Some(v) = &self.fixed {
            req.headers_mut().insert(AUTHORIZATION, v.clone());
            return Ok(());
        }
        let (Auth::SigV4 { region }, Some(aws)) = (&self.auth, &self.aws) else { return Ok(()) };
        let creds = aws.credentials().await?;
        let identity = creds.into();
        let mut settings = SigningSettings::default();
        // Amazon OpenSearch Service accepts it, and OpenSearch Serverless requires it.
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("es")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| SearchError::Auth(e.to_string()))?
            .into();
        let body = req.body().and_then(reqwest::Body::as_bytes).unwrap_or_default();
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_owned(), v.to_owned())))
            .collect();
        let signable = SignableRequest::new(
            req.method().as_str(),
            req.url().as_str(),
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(body),
        )
        .map_err(|e| SearchError::Auth(e.to_string()))?;
        let (instructions, _) = sign(signable, &params).map_err(|e| SearchError::Auth(e.to_string()))?.into_parts();
        let (new_headers, _) = instructions.into_parts();
        for h in new_headers {
            let name = HeaderName::from_static(h.name());
            req.headers_mut().insert(name, header(h.value())?);
        }
        Ok(())
    }
}

impl AwsCredentials {
    async fn credentials(&self) -> Result<Credentials, SearchError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            let fresh = c.expiry().is_none_or(|exp| SystemTime::now() + REFRESH_MARGIN < exp);
            if fresh {
                return Ok(c.clone());
            }
        }
        let c = self.provider.provide_credentials().await.map_err(|e| SearchError::Auth(e.to_string()))?;
        *cached = Some(c.clone());
        Ok(c)
    }
}

fn header(v: &str) -> Result<HeaderValue, SearchError> {
    HeaderValue::from_str(v)
        .map_err(|_| SearchError::Config("credentials contain characters not allowed in a header".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sigv4_signs_method_path_and_body() {
        let creds = Credentials::new("AKIDEXAMPLE", "secret", Some("token".into()), None, "test");
        let signer = Signer::with_provider("eu-west-1", SharedCredentialsProvider::new(creds));
        let client = reqwest::Client::new();
        let mut req = client
            .post("https://search-x.eu-west-1.es.amazonaws.com/jobs/_search")
            .header("content-type", "application/json")
            .body(r#"{"size":1}"#)
            .build()
            .expect("request");
        signer.apply(&mut req).await.expect("signed");
        let h = |k: &str| req.headers().get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let auth = h("authorization");
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"), "{auth}");
        assert!(auth.contains("/eu-west-1/es/aws4_request"), "{auth}");
        assert!(
            auth.contains("SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token"),
            "{auth}"
        );
        assert_eq!(h("x-amz-security-token"), "token");
        // sha256 of the body
        assert_eq!(h("x-amz-content-sha256").len(), 64);
        assert!(!h("x-amz-date").is_empty());
    }

    #[tokio::test]
    async fn basic_and_api_key() {
        let client = reqwest::Client::new();
        for (auth, want) in [
            (Auth::Basic { username: "elastic".into(), password: "pw".into() }, "Basic ZWxhc3RpYzpwdw=="),
            (Auth::ApiKey("abc==".into()), "ApiKey abc=="),
        ] {
            let signer = Signer::new(&auth).await.expect("signer");
            let mut req = client.get("http://127.0.0.1:9200/").build().expect("request");
            signer.apply(&mut req).await.expect("applied");
            assert_eq!(req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()), Some(want));
        }
    }
}
