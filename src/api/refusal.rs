//! The HTTP layer's own refusals (CONTRACT.md §12): a request head that cannot be parsed or
//! came too slowly, a URL or header section too long. Each is answered as an ErrorResponse
//! with an `X-Request-Id`, whether the dispatcher refuses it (through `context::renderer`) or
//! the request is parsed but over this service's limits (`of_request`, in `context::around`).

use actix_web::dev::ServiceRequest;
use actix_web::http::StatusCode;

/// The longest URL served (path and query, in bytes): a longer one is 414.
pub const MAX_URL_BYTES: usize = 8 * 1024;
/// The most header bytes served (names and values): more is 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400: not HTTP this layer can parse (a bad byte in a header, a junk request line).
    BadRequest,
    /// 408: the request head did not arrive within `client_request_timeout_ms`.
    RequestTimeout,
    /// 414: the URL is over `MAX_URL_BYTES`.
    UriTooLong,
    /// 431: the header fields are over `MAX_HEADER_BYTES`, or too many to parse.
    HeaderFieldsTooLarge,
}

impl Refusal {
    /// The refusal an answer of the HTTP layer stands for; `None` for a status that is not one.
    pub fn of_status(status: StatusCode) -> Option<Self> {
        match status {
            StatusCode::BAD_REQUEST => Some(Refusal::BadRequest),
            StatusCode::REQUEST_TIMEOUT => Some(Refusal::RequestTimeout),
            StatusCode::URI_TOO_LONG => Some(Refusal::UriTooLong),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Some(Refusal::HeaderFieldsTooLarge),
            _ => None,
        }
    }

    /// The refusal of a parsed request over this service's limits, if it is.
    pub fn of_request(req: &ServiceRequest) -> Option<Self> {
        let url = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
        if url > MAX_URL_BYTES {
            return Some(Refusal::UriTooLong);
        }
        let headers: usize = req
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        (headers > MAX_HEADER_BYTES).then_some(Refusal::HeaderFieldsTooLarge)
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;
    use actix_web::ResponseError as _;

    use super::*;
    use crate::api::error::ApiError;

    #[test]
    fn requests_over_the_limits_are_refused_and_those_at_them_are_not() {
        let path = |n: usize| format!("/{}", "a".repeat(n - 1));
        let refusal = |req: TestRequest| Refusal::of_request(&req.to_srv_request());
        assert_eq!(refusal(TestRequest::with_uri(&path(MAX_URL_BYTES))), None);
        assert_eq!(
            refusal(TestRequest::with_uri(&path(MAX_URL_BYTES + 1))),
            Some(Refusal::UriTooLong)
        );
        let header = |n: usize| ("x-big", "v".repeat(n - "x-big".len()));
        assert_eq!(
            refusal(TestRequest::default().insert_header(header(MAX_HEADER_BYTES))),
            None
        );
        assert_eq!(
            refusal(TestRequest::default().insert_header(header(MAX_HEADER_BYTES + 1))),
            Some(Refusal::HeaderFieldsTooLarge)
        );
    }

    #[test]
    fn every_status_the_dispatcher_refuses_with_has_its_refusal() {
        for refusal in [
            Refusal::BadRequest,
            Refusal::RequestTimeout,
            Refusal::UriTooLong,
            Refusal::HeaderFieldsTooLarge,
        ] {
            let status = ApiError::Refused(refusal).status_code();
            assert_eq!(Refusal::of_status(status), Some(refusal));
        }
        assert_eq!(Refusal::of_status(StatusCode::INTERNAL_SERVER_ERROR), None);
    }
}
