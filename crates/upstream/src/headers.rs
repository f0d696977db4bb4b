//! What of a request or an answer crosses the proxy.

use http::header::{self, HeaderMap, HeaderName};

/// Hop-by-hop headers (RFC 9110 §7.6.1), plus the ones the proxy sets
/// itself for the upstream hop.
const NOT_FORWARDED: [HeaderName; 12] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    header::CONTENT_LENGTH,
    // The proxy must read the answer to cache it, so it asks for it
    // uncompressed whatever the caller accepts.
    header::ACCEPT_ENCODING,
];

/// The headers of a caller's request that travel on to the upstream:
/// everything but hop-by-hop headers, those named in `Connection`, `Host`,
/// `Content-Length` and `Accept-Encoding`. `Authorization` and `User-Agent`
/// travel on.
#[must_use]
pub fn forwardable_headers(incoming: &HeaderMap) -> HeaderMap {
    let mut forwarded = HeaderMap::with_capacity(incoming.len());
    for (name, value) in incoming {
        if !is_hop_by_hop(incoming, name) {
            forwarded.append(name.clone(), value.clone());
        }
    }
    forwarded
}

/// Removes hop-by-hop headers from an answer before it goes back.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_tokens(headers).collect();
    for name in NOT_FORWARDED.iter().chain(&named) {
        if *name != header::ACCEPT_ENCODING {
            headers.remove(name);
        }
    }
}

fn is_hop_by_hop(headers: &HeaderMap, name: &HeaderName) -> bool {
    NOT_FORWARDED.contains(name) || connection_tokens(headers).any(|token| token == *name)
}

/// Header names listed in `Connection`.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = HeaderName> + '_ {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_end_to_end_headers_only() {
        let mut incoming = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Basic abc"),
            ("user-agent", "app/1"),
            ("content-type", "application/x-www-form-urlencoded"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("host", "proxy"),
            ("content-length", "10"),
            ("accept-encoding", "gzip"),
            ("te", "trailers"),
        ] {
            incoming.append(name, value.parse().unwrap());
        }
        let forwarded = forwardable_headers(&incoming);
        let mut names: Vec<_> = forwarded.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["authorization", "content-type", "user-agent"]);
    }

    #[test]
    fn strips_answer_hop_by_hop() {
        let mut answer = HeaderMap::new();
        answer.insert("connection", "close, x-private".parse().unwrap());
        answer.insert("x-private", "1".parse().unwrap());
        answer.insert("transfer-encoding", "chunked".parse().unwrap());
        answer.insert("www-authenticate", "Basic".parse().unwrap());
        answer.insert("retry-after", "3".parse().unwrap());
        strip_hop_by_hop(&mut answer);
        let mut names: Vec<_> = answer.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["retry-after", "www-authenticate"]);
    }
}
