//! The OpenAPI 3.1 description of the API, kept in the repository as `lambda/openapi.json` and
//! served as is at `/v1/openapi.json` (schemathesis tests the running API against it).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The document's text.
pub const DOCUMENT: &str = include_str!("../../openapi.json");

/// `GET /v1/openapi.json`.
pub async fn serve() -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], DOCUMENT).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobs_core::issue::Code;
    use serde_json::Value;

    fn doc() -> Value {
        serde_json::from_str(DOCUMENT).expect("openapi.json is JSON")
    }

    #[test]
    fn is_openapi_3_1() {
        assert_eq!(doc()["openapi"].as_str().map(|v| v.starts_with("3.1")), Some(true));
    }

    /// The error codes in the document are exactly the API's and the core's.
    #[test]
    fn lists_every_error_code() {
        let d = doc();
        let listed = |ptr: &str| -> Vec<String> {
            d.pointer(ptr)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default()
        };
        let mut top = listed("/components/schemas/Error/properties/code/enum");
        top.sort();
        let mut want: Vec<String> = super::super::error::CODES.iter().map(|c| (*c).to_owned()).collect();
        want.sort();
        assert_eq!(top, want);
        let issue_codes = listed("/components/schemas/Issue/properties/code/enum");
        let core: Vec<String> = Code::ALL.iter().map(|c| c.as_str().to_owned()).collect();
        assert_eq!(issue_codes, core);
    }
}
