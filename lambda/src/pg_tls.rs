//! TLS for the direct Postgres driver, with libpq's meanings of `sslmode` and `sslrootcert`
//! (RDS and Aurora for PostgreSQL 15+ refuse unencrypted connections by default).
//!
//! tokio-postgres knows only `disable`, `prefer` and `require` and rejects `sslrootcert`, so
//! both are taken out of the connection string here (or read from `PGSSLMODE` /
//! `PGSSLROOTCERT` when the string does not say) and turned into a rustls connector:
//!
//! | sslmode | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | no | - |
//! | `prefer` (default) | if the server offers it | no (as libpq) |
//! | `require` | yes | no, unless `sslrootcert` names a file: then as `verify-ca` (as libpq) |
//! | `verify-ca` | yes | chain to `sslrootcert`, or to the system's roots |
//! | `verify-full` | yes | chain and host name |
//!
//! For RDS, `sslmode=verify-full&sslrootcert=/path/to/global-bundle.pem` (the RDS CA bundle).

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values (`allow` is read as `prefer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<SslMode, String> {
        match s {
            "disable" => Ok(SslMode::Disable),
            "allow" | "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => {
                Err(format!("invalid sslmode {other:?} (disable, allow, prefer, require, verify-ca or verify-full)"))
            }
        }
    }
}

/// What the connection string (or the environment) asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub root_cert: Option<PathBuf>,
}

/// Takes `sslmode` and `sslrootcert` out of `url` (a `postgres://` URL or a `key=value` string),
/// falling back to `env` (`PGSSLMODE`, `PGSSLROOTCERT`) for what the string does not set.
/// Returns the string tokio-postgres can parse and the settings.
pub fn split(url: &str, env: impl Fn(&str) -> Option<String>) -> Result<(String, TlsSettings), String> {
    let (rest, mode, root) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        split_url(url)?
    } else {
        split_key_values(url)
    };
    let mode = match mode.or_else(|| env("PGSSLMODE").filter(|v| !v.is_empty())) {
        Some(m) => SslMode::parse(&m)?,
        None => SslMode::Prefer,
    };
    let root_cert = root.or_else(|| env("PGSSLROOTCERT")).filter(|v| !v.is_empty()).map(PathBuf::from);
    Ok((rest, TlsSettings { mode, root_cert }))
}

type Split = (String, Option<String>, Option<String>);

fn split_url(url: &str) -> Result<Split, String> {
    let Some((base, query)) = url.split_once('?') else { return Ok((url.to_owned(), None, None)) };
    let (mut mode, mut root) = (None, None);
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => mode = Some(decode(v)?),
            "sslrootcert" => root = Some(decode(v)?),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    Ok((rest, mode, root))
}

/// Percent-decoding of one query value (`%2F` -> `/`).
fn decode(v: &str) -> Result<String, String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(byte.ok_or_else(|| format!("bad percent-encoding in {v:?}"))?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{v:?} is not UTF-8 once decoded"))
}

/// `key=value` strings: plain values only (no quoting) for the two keys taken out.
fn split_key_values(s: &str) -> Split {
    let (mut mode, mut root) = (None, None);
    let mut kept = Vec::new();
    for token in s.split_whitespace() {
        match token.split_once('=') {
            Some(("sslmode", v)) => mode = Some(v.to_owned()),
            Some(("sslrootcert", v)) => root = Some(v.to_owned()),
            _ => kept.push(token),
        }
    }
    (kept.join(" "), mode, root)
}

impl TlsSettings {
    /// The mode to give tokio-postgres.
    pub fn pg_mode(&self) -> PgSslMode {
        match self.mode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
        }
    }

    /// The connector for these settings (also used, never handshaking, for `disable`).
    pub fn connector(&self) -> Result<MakeRustlsConnect, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let algorithms = provider.signature_verification_algorithms;
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?;
        let check = match (self.mode, &self.root_cert) {
            (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, None) => Check::Nothing,
            (SslMode::Require | SslMode::VerifyCa, _) => Check::Chain,
            (SslMode::VerifyFull, _) => Check::Full,
        };
        let lenient = |chain| Arc::new(Lenient { chain, algorithms });
        let config = match check {
            Check::Nothing => builder.dangerous().with_custom_certificate_verifier(lenient(None)),
            Check::Chain | Check::Full => {
                let roots = Arc::new(self.roots()?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| format!("TLS setup: {e}"))?;
                if check == Check::Full {
                    builder.with_webpki_verifier(webpki)
                } else {
                    builder.dangerous().with_custom_certificate_verifier(lenient(Some(webpki)))
                }
            }
        }
        .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }

    /// `sslrootcert`'s certificates, or the system's.
    fn roots(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        match &self.root_cert {
            Some(path) => {
                let shown = path.display();
                for cert in
                    CertificateDer::pem_file_iter(path).map_err(|e| format!("reading sslrootcert {shown}: {e}"))?
                {
                    let cert = cert.map_err(|e| format!("reading sslrootcert {shown}: {e}"))?;
                    roots.add(cert).map_err(|e| format!("sslrootcert {shown}: {e}"))?;
                }
                if roots.is_empty() {
                    return Err(format!("sslrootcert {shown} holds no PEM certificate"));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err("no system root certificates found; set sslrootcert".into());
                }
            }
        }
        Ok(roots)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    Full,
}

/// The checks rustls' standard verifier does not do as libpq does. `chain: None` is `prefer` /
/// `require` without a root certificate: encrypted, not authenticated (libpq's behaviour; say
/// `verify-full` to be safe from a man in the middle). `Some` is `verify-ca`: the chain must
/// lead to a trusted root, and the name in the certificate is not compared with the host.
/// Handshake signatures are checked either way, as rustls' own verifier checks them.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn urls_lose_the_two_keys_and_keep_the_rest() {
        let (rest, s) =
            split("postgres://u@h:5432/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca.pem", none)
                .expect("split");
        assert_eq!(rest, "postgres://u@h:5432/db?application_name=x");
        assert_eq!(s, TlsSettings { mode: SslMode::VerifyFull, root_cert: Some("/tmp/ca.pem".into()) });
        let (rest, s) = split("postgres://u@h/db?sslmode=require", none).expect("split");
        assert_eq!((rest.as_str(), s.mode, s.root_cert), ("postgres://u@h/db", SslMode::Require, None));
        let (rest, s) = split("postgres://u@h/db", none).expect("split");
        assert_eq!((rest.as_str(), s.mode), ("postgres://u@h/db", SslMode::Prefer));
    }

    #[test]
    fn key_values_and_the_environment() {
        let env = |k: &str| match k {
            "PGSSLMODE" => Some("verify-ca".to_owned()),
            "PGSSLROOTCERT" => Some("/env/ca.pem".to_owned()),
            _ => None,
        };
        let (rest, s) = split("host=h user=u sslmode=disable", env).expect("split");
        assert_eq!(rest, "host=h user=u");
        assert_eq!(s, TlsSettings { mode: SslMode::Disable, root_cert: Some("/env/ca.pem".into()) });
        let (_, s) = split("postgres://h/db", env).expect("split");
        assert_eq!(s.mode, SslMode::VerifyCa);
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(split("postgres://h/db?sslmode=sometimes", none).expect_err("an error").contains("invalid sslmode"));
        assert!(split("postgres://h/db?sslrootcert=%zz", none).is_err());
        let missing = TlsSettings { mode: SslMode::VerifyFull, root_cert: Some("/nonexistent/ca.pem".into()) };
        assert!(missing.connector().err().is_some_and(|e| e.contains("/nonexistent/ca.pem")));
    }
}
