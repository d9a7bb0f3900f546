//! CORS (CONTRACT.md §9): preflights from an allowed origin are answered here, before auth;
//! answers to an allowed origin carry the headers a browser needs to read them. The list of
//! origins lives in `[cors]` and is reloaded with the rest on SIGHUP.

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::Method;
use actix_web::HttpResponse;

use crate::config::CorsSettings;

const ALLOW_METHODS: &str = "GET, HEAD";
const ALLOW_HEADERS: &str = "Authorization, If-None-Match, X-Request-Id";
const EXPOSE_HEADERS: &str = "ETag, X-Cache, X-RateLimit-Limit, X-RateLimit-Remaining, \
                              X-RateLimit-Reset, Retry-After, X-Request-Id";
const MAX_AGE_SECONDS: &str = "600";

/// The value of `Access-Control-Allow-Origin` for a request from `origin`, if allowed.
fn allowed(cors: &CorsSettings, origin: &HeaderValue) -> Option<HeaderValue> {
    let any = cors.allowed_origins.iter().any(|o| o == "*");
    let listed = || {
        let origin = origin.to_str().ok()?;
        cors.allowed_origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
            .then_some(())
    };
    match (any, listed()) {
        (_, Some(())) => Some(origin.clone()),
        (true, None) => Some(HeaderValue::from_static("*")),
        (false, None) => None,
    }
}

/// The answer to a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
/// from an allowed origin; `None` for anything else.
pub fn preflight(
    cors: &CorsSettings,
    method: &Method,
    headers: &HeaderMap,
) -> Option<HttpResponse> {
    if method != Method::OPTIONS || !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        return None;
    }
    let allow_origin = allowed(cors, headers.get(header::ORIGIN)?)?;
    Some(
        HttpResponse::NoContent()
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS))
            .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, MAX_AGE_SECONDS))
            .insert_header((header::VARY, "Origin"))
            .finish(),
    )
}

/// Adds the CORS headers to an answer for a request from an allowed `origin`.
pub fn decorate(cors: &CorsSettings, origin: Option<&HeaderValue>, out: &mut HeaderMap) {
    let Some(allow_origin) = origin.and_then(|o| allowed(cors, o)) else {
        return;
    };
    out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
    out.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
    // Once: a preflight's answer has it already.
    let varies_by_origin = out.get_all(header::VARY).any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|n| n.trim().eq_ignore_ascii_case("origin"))
        })
    });
    if !varies_by_origin {
        out.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str]) -> CorsSettings {
        CorsSettings {
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
        }
    }

    fn preflight_from(c: &CorsSettings, origin: &str) -> Option<HttpResponse> {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("GET"),
        );
        preflight(c, &Method::OPTIONS, &h)
    }

    #[test]
    fn only_listed_origins_or_a_star_get_cors_and_an_empty_list_turns_it_off() {
        let c = cors(&["https://dash.example"]);
        let ok = preflight_from(&c, "https://dash.example").expect("allowed");
        assert_eq!(ok.status(), 204);
        assert_eq!(
            ok.headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .unwrap(),
            "https://dash.example"
        );
        assert!(preflight_from(&c, "https://evil.example").is_none());
        assert!(preflight_from(&cors(&[]), "https://dash.example").is_none());
        let star = preflight_from(&cors(&["*"]), "https://any.example").unwrap();
        assert_eq!(
            star.headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .unwrap(),
            "*"
        );

        let mut out = HeaderMap::new();
        decorate(
            &c,
            Some(&HeaderValue::from_static("https://evil.example")),
            &mut out,
        );
        assert!(out.is_empty());
        decorate(
            &c,
            Some(&HeaderValue::from_static("https://dash.example")),
            &mut out,
        );
        assert_eq!(out.get(header::VARY).unwrap(), "Origin");
        assert!(out
            .get(header::ACCESS_CONTROL_EXPOSE_HEADERS)
            .unwrap()
            .to_str()
            .unwrap()
            .contains("X-RateLimit-Remaining"));
    }
}
