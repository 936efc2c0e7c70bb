//! The outbound HTTP capability: `wasi:http`, with every request checked
//! by the host against the agent's allow-list of origins.
//!
//! A request goes out only if its scheme, host and port match an entry
//! written in the manifest (a host may start with `*.` to take its
//! subdomains, and only then). The host resolves the name itself and
//! refuses private, loopback, link-local and other non-public addresses
//! unless the entry names that address literally; it then connects to the
//! address it checked (so a name cannot be re-pointed between check and
//! connect). Anything refused ends with `HttpRequestDenied` and is journaled
//! as `http.denied`. Headers an entry carries (filled from the host's
//! environment variables at start) are added by the host to requests for
//! that origin only: the guest never sees them, and they are never logged.
//! Each request counts against the agent's call rate, has an overall
//! timeout and a cap on the response body.
//!
//! wasi:http does not follow redirects: a guest that follows one makes a new
//! request, checked like any other.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use wasmtime::component::Linker;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{
    Error, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use crate::env::{AgentId, Env};
use crate::runtime::quota::{self, Call, Quota};
use crate::runtime::state::AgentState;

/// The component import names of the capability (any version).
pub(crate) const IMPORT_PREFIX: &str = "wasi:http/";

/// One origin an agent may call, as written in its `allow_http`.
#[derive(Clone, PartialEq, Eq)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: String,
    /// A host name (lower case; `*.` takes its subdomains) or an IP literal.
    pub host: String,
    /// The port (the scheme's default when not written).
    pub port: u16,
    /// Headers the host adds to requests for this origin, values filled in
    /// (and marked sensitive).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values are credentials: never shown.
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        write!(f, "{self} (adds headers {names:?})")
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
            _ => self.host.clone(),
        };
        write!(f, "{}://{host}:{}", self.scheme, self.port)
    }
}

impl Origin {
    /// Parse `scheme://host[:port]` (no path, query or user), with `headers`
    /// whose values may name host environment variables as `${NAME}`
    /// (looked up with `var`; a missing one is an error naming it).
    pub fn parse(
        text: &str,
        headers: &[(String, String)],
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Origin, String> {
        let bad = |why: &str| {
            format!(
                "{text:?} is not an origin ({why}); write it like \"https://api.example.com\" or \
                 \"http://127.0.0.1:8080\""
            )
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(bad("the scheme must be http or https")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return Err(bad("only scheme, host and port"));
        }
        let (host, port) = split_host_port(rest).ok_or_else(|| bad("a malformed host or port"))?;
        let host = host.to_ascii_lowercase();
        let wildcard = host.strip_prefix("*.").unwrap_or(&host);
        if wildcard.is_empty() || wildcard.contains('*') {
            return Err(bad(
                "a wildcard may only start the host, as in *.example.com",
            ));
        }
        let mut filled = Vec::new();
        for (name, value) in headers {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{name:?} is not a header name"))?;
            let value = fill(value, &var)
                .map_err(|v| format!("header `{name}` for {text} needs the host environment variable `{v}`, which is not set"))?;
            let mut value = http::HeaderValue::from_str(&value).map_err(|_| {
                format!("the value of header `{name}` for {text} is not a valid header value")
            })?;
            value.set_sensitive(true);
            filled.push((name, value));
        }
        Ok(Origin {
            scheme,
            host,
            port: port.unwrap_or(default_port),
            headers: filled,
        })
    }

    /// Whether a request to `scheme://host:port` is for this origin.
    fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        if self.scheme != scheme || self.port != port {
            return false;
        }
        match self.host.strip_prefix("*.") {
            Some(base) => host.len() > base.len() + 1 && host.ends_with(&format!(".{base}")),
            None => self.host == host,
        }
    }
}

/// Split `host[:port]` (IPv6 in brackets).
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        return match after.strip_prefix(':') {
            Some(p) => Some((host, Some(p.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host, Some(port.parse().ok()?))),
        Some(_) => None,
        None => Some((s, None)),
    }
}

/// Replace each `${NAME}` in `template` with `var(NAME)`; `Err(NAME)` for a
/// variable that is not set.
fn fill(template: &str, var: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &after[..end];
        out.push_str(&var(name).ok_or_else(|| name.to_string())?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether `ip` is an address on the public internet (not loopback,
/// private, link-local, shared, documentation, multicast or unspecified).
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
                || first == 0x0064 && v6.segments()[1] == 0xff9b)
        }
    }
}

/// Timeouts and size caps of an agent's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long one request may take, from connecting to the body's end.
    pub timeout: Duration,
    /// The largest response body accepted.
    pub max_response_bytes: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            max_response_bytes: 16 << 20,
        }
    }
}

/// One agent's HTTP state: wasi:http's context and the filtering hooks.
pub(crate) struct HttpState {
    ctx: WasiHttpCtx,
    hooks: Filter,
}

impl HttpState {
    pub(crate) fn new(
        id: AgentId,
        env: Env,
        allowed: Vec<Origin>,
        limits: HttpLimits,
        quota: Arc<Mutex<Quota>>,
    ) -> Self {
        Self {
            ctx: WasiHttpCtx::new(),
            hooks: Filter {
                id,
                env,
                allowed: Arc::new(allowed),
                limits,
                quota,
            },
        }
    }
}

impl WasiHttpView for AgentState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http.ctx,
            table: &mut self.table,
            hooks: &mut self.http.hooks,
        }
    }
}

/// Link `wasi:http` (its types and outgoing handler).
pub(crate) fn add_to_linker(linker: &mut Linker<AgentState>) -> anyhow::Result<()> {
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    Ok(())
}

/// The hooks that check each request.
struct Filter {
    id: AgentId,
    env: Env,
    allowed: Arc<Vec<Origin>>,
    limits: HttpLimits,
    quota: Arc<Mutex<Quota>>,
}

type Sent = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    Error,
>;

impl WasiHttpHooks for Filter {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let (id, env, allowed, limits, quota) = (
            self.id.clone(),
            self.env.clone(),
            self.allowed.clone(),
            self.limits,
            self.quota.clone(),
        );
        Box::new(async move {
            // A read: only the rate counts it, so there is no cap to go past.
            let _ = quota::pay(&quota, Call::Read, &id).await;
            let target = shown(request.uri());
            let checked = check(&allowed, request.uri()).await;
            let checked = match checked {
                Ok(ok) => ok,
                Err(why) => {
                    tracing::warn!(agent = %id, "HTTP request to {target} denied: {why}");
                    let detail = serde_json::json!({"url": target, "reason": why});
                    if let Err(e) = env
                        .record_denied(&id, "http.denied", format!("http/{target}"), detail)
                        .await
                    {
                        tracing::warn!(agent = %id, "cannot journal a denied request: {e}");
                    }
                    return Err(Error::HttpRequestDenied);
                }
            };
            send(request, checked, options, limits).await
        })
    }
}

/// The request's URL without its query and without any `user:password@`,
/// as logs and the journal show it (a guest's credentials stay out of both).
fn shown(uri: &http::Uri) -> String {
    let host_port = uri
        .authority()
        .map_or("?", |a| a.as_str().rsplit('@').next().unwrap_or("?"));
    format!(
        "{}://{host_port}{}",
        uri.scheme_str().unwrap_or("?"),
        uri.path()
    )
}

/// Where a request may go, once checked.
struct Checked {
    /// The allow-list entry that lets it.
    origin: Origin,
    /// The host it names (what TLS verifies; the entry may be a `*.` wildcard).
    host: String,
    /// The address to connect to.
    addr: SocketAddr,
}

/// Find the origin `uri` is allowed by and the address to connect to, or
/// say why not.
async fn check(allowed: &[Origin], uri: &http::Uri) -> Result<Checked, String> {
    let scheme = match uri.scheme() {
        Some(s) if *s == Scheme::HTTPS => "https",
        Some(s) if *s == Scheme::HTTP => "http",
        _ => return Err("only http and https are allowed".into()),
    };
    let authority = uri.authority().ok_or("the URL has no host")?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let host = host.to_ascii_lowercase();
    let port = authority
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let origin = allowed
        .iter()
        .find(|o| o.matches(scheme, &host, port))
        .ok_or_else(|| format!("{scheme}://{host}:{port} is not in its allow_http"))?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        // An IP literal matched an entry naming it: allowed, whatever it is.
        return Ok(Checked {
            origin: origin.clone(),
            addr: SocketAddr::new(ip, port),
            host,
        });
    }
    let resolved = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::lookup_host((host.as_str(), port)),
    )
    .await
    .map_err(|_| format!("resolving {host} timed out"))?
    .map_err(|e| format!("cannot resolve {host}: {e}"))?
    .collect::<Vec<_>>();
    // A name resolving to a private address is refused even when its entry
    // allows the name: only an entry naming the address itself allows that.
    if let Some(bad) = resolved.iter().find(|a| !is_public(a.ip())) {
        return Err(format!(
            "{host} resolves to {}, a private or local address; allow it by writing the \
             address itself in allow_http",
            bad.ip()
        ));
    }
    let addr = resolved
        .first()
        .copied()
        .ok_or_else(|| format!("{host} resolves to no address"))?;
    Ok(Checked {
        origin: origin.clone(),
        host,
        addr,
    })
}

/// Send `request` to `addr` (checked for `origin`), with the origin's
/// headers added, within the agent's limits.
async fn send(
    mut request: http::Request<WasiBody>,
    checked: Checked,
    options: Option<RequestOptions>,
    limits: HttpLimits,
) -> Sent {
    let deadline = tokio::time::Instant::now() + limits.timeout;
    let cap = |t: Option<Duration>| t.map_or(limits.timeout, |t| t.min(limits.timeout));
    let connect_timeout = cap(options.and_then(|o| o.connect_timeout));
    let first_byte_timeout = cap(options.and_then(|o| o.first_byte_timeout));
    for (name, value) in &checked.origin.headers {
        request.headers_mut().insert(name.clone(), value.clone());
    }
    let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect(checked.addr))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::Connect)?;
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    let (mut sender, conn) = if checked.origin.scheme == "https" {
        let tls = tls_connect(&checked.host, tcp).await?;
        handshake(tls, connect_timeout).await?
    } else {
        handshake(tcp, connect_timeout).await?
    };
    // The connection is driven on its own task for as long as the response
    // is wanted: the task ends with the connection, or is aborted when the
    // response body (or, before it, this future) is dropped.
    let driver = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)?
        .map_err(Error::from)?;
    if let Some(len) = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && len > limits.max_response_bytes
    {
        return Err(Error::HttpResponseBodySize(Some(len)));
    }
    let response = response.map(|incoming| {
        Capped {
            inner: incoming,
            read: 0,
            max: limits.max_response_bytes,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            _driver: driver,
        }
        .boxed_unsync()
    });
    Ok((response, Box::new(async { Ok(()) })))
}

type ConnFuture = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// Start HTTP/1.1 on `io`: the request sender, and the connection to drive.
async fn handshake<S>(
    io: S,
    timeout: Duration,
) -> Result<
    (
        hyper::client::conn::http1::SendRequest<WasiBody>,
        ConnFuture,
    ),
    Error,
>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = tokio::time::timeout(
        timeout,
        hyper::client::conn::http1::handshake::<_, WasiBody>(TokioIo::new(io)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;
    Ok((sender, Box::pin(conn)))
}

async fn tls_connect(
    host: &str,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Error> {
    /// Built once: the web's root certificates, ring, safe protocol versions.
    static CONFIG: LazyLock<Arc<rustls::ClientConfig>> = LazyLock::new(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Arc::new(config)
    });
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    tokio_rustls::TlsConnector::from(CONFIG.clone())
        .connect(name, tcp)
        .await
        .map_err(Error::Tls)
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A response body cut off at a size cap and a deadline.
struct Capped {
    inner: hyper::body::Incoming,
    read: u64,
    max: u64,
    deadline: Pin<Box<tokio::time::Sleep>>,
    _driver: AbortOnDrop,
}

impl Body for Capped {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Error::HttpResponseTimeout)));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.read += data.len() as u64;
                    if self.read > self.max {
                        return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(
                            self.read,
                        )))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(text: &str) -> Origin {
        Origin::parse(text, &[], |_| None).unwrap()
    }

    #[test]
    fn origins_parse_scheme_host_and_port_only() {
        let o = origin("https://API.example.com");
        assert_eq!(
            (o.scheme.as_str(), o.host.as_str(), o.port),
            ("https", "api.example.com", 443)
        );
        assert_eq!(origin("http://127.0.0.1:8080").port, 8080);
        assert_eq!(origin("http://[::1]:9000").host, "::1");
        for bad in [
            "api.example.com",
            "ftp://x",
            "https://x/path",
            "https://u@x",
            "https://x:port",
            "https://a.*.com",
        ] {
            assert!(Origin::parse(bad, &[], |_| None).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_request_matches_scheme_host_and_port_exactly_and_wildcards_only_when_written() {
        let o = origin("https://api.example.com");
        assert!(o.matches("https", "api.example.com", 443));
        assert!(!o.matches("http", "api.example.com", 443));
        assert!(!o.matches("https", "api.example.com", 8443));
        assert!(!o.matches("https", "x.api.example.com", 443));
        let w = origin("https://*.example.com");
        assert!(w.matches("https", "a.example.com", 443));
        assert!(!w.matches("https", "example.com", 443));
        assert!(!w.matches("https", "aexample.com", 443));
    }

    #[test]
    fn shown_urls_keep_no_credentials_and_no_query() {
        let uri: http::Uri = "https://user:secret@api.example.com:8443/v1/x?token=abc"
            .parse()
            .unwrap();
        assert_eq!(shown(&uri), "https://api.example.com:8443/v1/x");
    }

    #[test]
    fn header_values_are_filled_from_the_hosts_environment_and_never_shown() {
        let headers = [("Authorization".to_string(), "Bearer ${KEY}".to_string())];
        let o = Origin::parse("https://m.example", &headers, |v| {
            (v == "KEY").then(|| "s3cret".into())
        })
        .unwrap();
        assert_eq!(o.headers.len(), 1);
        assert_eq!(o.headers[0].0, "authorization");
        assert_eq!(o.headers[0].1, "Bearer s3cret");
        assert!(o.headers[0].1.is_sensitive());
        assert!(!format!("{o:?}").contains("s3cret"));
        let e = Origin::parse("https://m.example", &headers, |_| None).unwrap_err();
        assert!(e.contains("`KEY`"), "{e}");
    }

    #[test]
    fn only_public_addresses_count_as_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["1.1.1.1", "93.184.216.34", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
