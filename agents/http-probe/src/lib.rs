//! `http-probe`: sends a GET to each URL in its `urls` config (a JSON
//! array) with `wasi:http`, following redirects itself when `follow` is
//! `true` (wasi:http does not), and records in the value `http/<name>` what
//! it saw: the status, the response's header names, the body, or the
//! error. It sees nothing the host adds to its requests.

use serde::Serialize;
use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, IncomingResponse, Method, OutgoingRequest, Scheme};
use wawe_sdk::values::{self, WriteOptions};
use wawe_sdk::{Agent, Config};

#[derive(Serialize, Default)]
struct Seen {
    url: String,
    status: Option<u16>,
    headers: Vec<String>,
    body: Option<String>,
    error: Option<String>,
}

fn get(url: &str) -> Result<IncomingResponse, String> {
    let (scheme, rest) = url.split_once("://").ok_or("no scheme")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let req = OutgoingRequest::new(Fields::new());
    req.set_method(&Method::Get).map_err(|()| "method")?;
    req.set_scheme(Some(&if scheme == "https" {
        Scheme::Https
    } else {
        Scheme::Http
    }))
    .map_err(|()| "scheme")?;
    req.set_authority(Some(authority))
        .map_err(|()| "authority")?;
    req.set_path_with_query(Some(path)).map_err(|()| "path")?;
    let future = outgoing_handler::handle(req, None).map_err(|e| format!("{e:?}"))?;
    future.subscribe().block();
    match future.get() {
        Some(Ok(Ok(response))) => Ok(response),
        Some(Ok(Err(e))) => Err(format!("{e:?}")),
        Some(Err(())) => Err("the response was taken already".into()),
        None => Err("no response".into()),
    }
}

fn read_body(response: &IncomingResponse) -> Result<String, String> {
    let body = response.consume().map_err(|()| "no body")?;
    let stream = body.stream().map_err(|()| "no stream")?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend(chunk),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(wasi::io::streams::StreamError::LastOperationFailed(e)) => {
                return Err(e.to_debug_string());
            }
        }
    }
    drop(stream);
    if let Some(Err(e)) = wasi::http::types::IncomingBody::finish(body)
        .get()
        .and_then(|r| r.ok())
    {
        return Err(format!("{e:?}"));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn probe(url: &str, follow: bool) -> Seen {
    let mut seen = Seen {
        url: url.to_string(),
        ..Seen::default()
    };
    let mut url = url.to_string();
    for _ in 0..4 {
        let response = match get(&url) {
            Ok(r) => r,
            Err(e) => {
                seen.error = Some(e);
                return seen;
            }
        };
        let status = response.status();
        let headers = response.headers().entries();
        let location = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("location"))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
        seen.status = Some(status);
        seen.headers = headers.into_iter().map(|(n, _)| n).collect();
        match (follow, (300..400).contains(&status), location) {
            (true, true, Some(next)) => url = next,
            _ => {
                match read_body(&response) {
                    Ok(b) => seen.body = Some(b),
                    Err(e) => seen.error = Some(e),
                }
                return seen;
            }
        }
    }
    seen.error = Some("too many redirects".into());
    seen
}

struct Probe;

impl Agent for Probe {
    fn run(config: Config) -> wawe_sdk::RunResult {
        let name = config.get_or("name", "probe");
        let follow = config.get_or("follow", "false") == "true";
        let urls: Vec<String> =
            serde_json::from_str(config.require("urls")?).map_err(|e| format!("urls: {e}"))?;
        let seen: Vec<Seen> = urls.iter().map(|u| probe(u, follow)).collect();
        values::put_json(&format!("http/{name}"), &seen, WriteOptions::new())
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

wawe_sdk::agent!(Probe);
