//! The page's files, built into the binary: no Node build step, nothing to
//! install beside `wawe`.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

fn file(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub(crate) fn page() -> Response {
    file(PAGE, "text/html; charset=utf-8")
}

pub(crate) fn script() -> Response {
    file(SCRIPT, "text/javascript; charset=utf-8")
}

pub(crate) fn style() -> Response {
    file(STYLE, "text/css; charset=utf-8")
}
