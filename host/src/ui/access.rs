//! Who may read the view, and who may act through it.
//!
//! Without a token (loopback only) a request must name a loopback host in its
//! `Host` header, so a web page from elsewhere cannot reach the view by
//! pointing its own name at 127.0.0.1 (DNS rebinding). With a token, every
//! request carries it: as a bearer header, or the cookie the page's first
//! load (`/?token=…`) sets. Operator actions also need the header
//! `X-Wawe-Action`, which no cross-site form can send.

use axum::http::{HeaderMap, Method, StatusCode, header};

/// The cookie the page keeps its token in, with the server's port after it:
/// browsers do not keep cookies apart by port, and two views on one host
/// must not overwrite each other's.
const COOKIE: &str = "wawe_token";

/// The header an operator action must carry.
pub(crate) const ACTION_HEADER: &str = "x-wawe-action";

/// The access rule of one server.
pub(crate) struct Access {
    token: Option<String>,
    port: u16,
    loopback: bool,
}

/// Why a request is refused.
pub(crate) struct Refused(pub(crate) StatusCode, pub(crate) String);

impl Access {
    pub(crate) fn new(token: Option<String>, port: u16, loopback: bool) -> Access {
        Access {
            token,
            port,
            loopback,
        }
    }

    /// Check a request's headers (and the `token` its query carries, which
    /// only the page itself may use).
    pub(crate) fn check(
        &self,
        method: &Method,
        headers: &HeaderMap,
        query_token: Option<&str>,
    ) -> Result<(), Refused> {
        match &self.token {
            Some(token) => {
                let given = bearer(headers)
                    .or_else(|| cookie(headers, &self.cookie_name()))
                    .or(query_token)
                    .unwrap_or("");
                if !same(given.as_bytes(), token.as_bytes()) {
                    return Err(Refused(
                        StatusCode::UNAUTHORIZED,
                        "this view needs its token: open the URL `wawe ui` printed \
                         (it carries ?token=…), or send `Authorization: Bearer TOKEN`"
                            .into(),
                    ));
                }
            }
            None if self.loopback => {
                let host = headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("");
                if !loopback_host(host) {
                    return Err(Refused(
                        StatusCode::FORBIDDEN,
                        format!(
                            "this view answers only to a loopback host name (127.0.0.1, \
                             localhost, [::1]), not {host:?}; to serve other names, \
                             start it with a token (--token)"
                        ),
                    ));
                }
            }
            None => {}
        }
        if *method == Method::POST && !headers.contains_key(ACTION_HEADER) {
            return Err(Refused(
                StatusCode::FORBIDDEN,
                format!("an operator action needs the header `{ACTION_HEADER}: 1`"),
            ));
        }
        Ok(())
    }

    /// The `Set-Cookie` value that keeps `token` for the page, when it is
    /// this server's token. `Lax`, so the printed URL works when followed
    /// from a link; writes are guarded by the action header, not the cookie.
    pub(crate) fn cookie_for(&self, token: &str) -> Option<String> {
        let ours = self.token.as_deref()?;
        same(token.as_bytes(), ours.as_bytes()).then(|| {
            format!(
                "{}={ours}; Path=/; HttpOnly; SameSite=Lax",
                self.cookie_name()
            )
        })
    }

    fn cookie_name(&self) -> String {
        format!("{COOKIE}_{}", self.port)
    }
}

/// Whether a `Host` header names this machine's loopback: `localhost`,
/// `[::1]` or any `127.x.x.x`, on any port (a tunnel may forward another).
fn loopback_host(host: &str) -> bool {
    let name = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.split(':').next().unwrap_or(host)
    };
    match name {
        "localhost" | "[::1]" => true,
        name => name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback()),
    }
}

/// Check a token given on the command line: long enough, and only
/// characters that need no escaping in a URL, a cookie or a header.
pub(crate) fn check_token(token: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        token.len() >= 16,
        "the token is too short ({} characters): give one of at least 16, \
         or leave it out and one is made up",
        token.len()
    );
    anyhow::ensure!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b)),
        "the token may hold only letters, digits and . _ ~ - (it goes into a URL and a cookie)"
    );
    Ok(())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(name)?.strip_prefix('='))
}

/// Compare without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fresh random token (128 bits, hex).
pub(crate) fn new_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("cannot make a token (no random source: {e})"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn loopback_without_token_takes_only_loopback_host_names() {
        let a = Access::new(None, 7878, true);
        let get = Method::GET;
        for ok in [
            "127.0.0.1:7878",
            "localhost:7878",
            "[::1]:7878",
            "localhost",
            "127.0.0.2:7878",
            "localhost:9000",
            "[::1]",
        ] {
            assert!(
                a.check(&get, &headers(&[("host", ok)]), None).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "evil.example:7878",
            "",
            "127.0.0.1.evil:7878",
            "10.0.0.1:7878",
            "[::2]:7878",
        ] {
            assert!(
                a.check(&get, &headers(&[("host", bad)]), None).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_token_is_taken_from_bearer_cookie_or_query_and_nothing_else() {
        let a = Access::new(Some("0123456789abcdef".into()), 7878, false);
        let get = Method::GET;
        let tok = "0123456789abcdef";
        let bearer = format!("Bearer {tok}");
        let cookie = format!("a=b; {COOKIE}_7878={tok}");
        assert!(
            a.check(&get, &headers(&[("authorization", &bearer)]), None)
                .is_ok()
        );
        assert!(
            a.check(&get, &headers(&[("cookie", &cookie)]), None)
                .is_ok()
        );
        assert!(a.check(&get, &HeaderMap::new(), Some(tok)).is_ok());
        assert!(a.check(&get, &HeaderMap::new(), None).is_err());
        assert!(
            a.check(&get, &HeaderMap::new(), Some("0123456789abcdeX"))
                .is_err()
        );
        assert!(a.cookie_for("wrong").is_none());
        let other_port = format!("{COOKIE}_7879={tok}");
        assert!(
            a.check(&get, &headers(&[("cookie", &other_port)]), None)
                .is_err()
        );
    }

    #[test]
    fn tokens_must_be_long_and_url_safe() {
        assert!(check_token("0123456789abcdef").is_ok());
        assert!(check_token("A-b_c.d~0123456789").is_ok());
        assert!(check_token("short").is_err());
        assert!(check_token("correct horse battery staple").is_err());
        assert!(check_token("0123456789abcdef;x").is_err());
    }

    #[test]
    fn a_post_needs_the_action_header() {
        let a = Access::new(None, 1, true);
        let h = headers(&[("host", "127.0.0.1:1")]);
        assert!(a.check(&Method::POST, &h, None).is_err());
        let h = headers(&[("host", "127.0.0.1:1"), (ACTION_HEADER, "1")]);
        assert!(a.check(&Method::POST, &h, None).is_ok());
    }
}
