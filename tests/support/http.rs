//! A small HTTP/1.1 client for the tests (hyper's, one connection per
//! request): plain requests, and reading a server-sent-event stream.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// An answer: status, headers and the body as text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    /// The body as JSON (panics, showing it, if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> hyper::Response<Incoming> {
    let uri: http::Uri = url.parse().expect("a URL");
    let authority = uri.authority().expect("a host").clone();
    let stream = tokio::net::TcpStream::connect(authority.as_str())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {authority}: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("an HTTP connection");
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(uri.path_and_query().map_or("/", |p| p.as_str()));
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req = req.header("host", authority.as_str());
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("a request");
    sender.send_request(req).await.expect("an answer")
}

/// One request, its whole answer.
pub async fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let res = send(method, url, headers, body).await;
    let (parts, body) = res.into_parts();
    let body = body.collect().await.expect("a body").to_bytes();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// `GET url`.
pub async fn get(url: &str) -> Reply {
    request("GET", url, &[], "").await
}

/// An open server-sent-event stream.
pub struct EventStream {
    body: Incoming,
    buf: String,
}

impl EventStream {
    /// Open `url` as a stream (panics unless it answers 200).
    pub async fn open(url: &str, headers: &[(&str, &str)]) -> EventStream {
        let res = send("GET", url, headers, "").await;
        assert_eq!(res.status(), 200, "stream refused");
        EventStream {
            body: res.into_body(),
            buf: String::new(),
        }
    }

    /// The next event (name, data) within `wait`, or `None`.
    pub async fn next(&mut self, wait: Duration) -> Option<(String, String)> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() && name == "message" {
                    continue; // a keep-alive comment
                }
                return Some((name, data));
            }
            let frame = tokio::time::timeout_at(until, self.body.frame()).await;
            match frame {
                Ok(Some(Ok(f))) => {
                    if let Ok(data) = f.into_data() {
                        self.buf.push_str(&String::from_utf8_lossy(&data));
                    }
                }
                _ => return None,
            }
        }
    }
}
