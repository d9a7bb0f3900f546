//! A hook that renders the answers the HTTP/1 dispatcher gives on its own.

use std::{fmt, sync::Arc};

use crate::{body::BoxBody, Response, StatusCode};

/// Renders the answers the HTTP/1 dispatcher gives without calling the service: 400 for a
/// request it cannot parse, 414 for a request line too long, 431 for header fields too large,
/// 408 for a request head that did not arrive in time, and 500 for an internal error.
///
/// Put one in the connection's data (with actix-web, in `HttpServer::on_connect`): the
/// dispatcher then sends what it returns for the status instead of an empty body, with
/// `Connection: close`, and closes the connection after it as it would have anyway. The body
/// must be in memory (`Bytes`, `String`, ...): any other body is left out.
#[derive(Clone)]
pub struct ErrorRenderer(Arc<dyn Fn(StatusCode) -> Response<BoxBody> + Send + Sync>);

impl ErrorRenderer {
    /// A renderer that calls `render` with the status the dispatcher answers.
    pub fn new(render: impl Fn(StatusCode) -> Response<BoxBody> + Send + Sync + 'static) -> Self {
        Self(Arc::new(render))
    }

    pub(crate) fn render(&self, status: StatusCode) -> Response<BoxBody> {
        (self.0)(status)
    }
}

impl fmt::Debug for ErrorRenderer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorRenderer").finish_non_exhaustive()
    }
}
