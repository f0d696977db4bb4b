//! End-to-end, as a hostile client: the upstream request of a cacheable
//! load is built from exactly what was keyed, so no token is ever cached
//! (or served) under the key of another request.
//!
//! The upstream here is [`LastValueIdp`]: it reads repeated parameters and
//! headers the other way from the proxy (the last copy wins, an empty copy
//! counts), the way many real servers do, so a proxy that keyed one reading
//! and forwarded the raw request would be caught. Its tokens carry the
//! request as it read it ([`claims`]), so every answer can be checked
//! against the request it answered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use tokencache_core::TokenRequest;
use tokencache_proxy::{ProxyConfig, RouteConfig};
use tokencache_test_support::last_value_idp::{Claims, Issuing, LastValueIdp, claims};
use tokencache_test_support::raw_http::{self, RawAnswer};
use tokencache_test_support::{ManualClock, ProxyServer};

const PATH: &str = "/oauth2/token";
const FORM: &str = "Content-Type: application/x-www-form-urlencoded";

async fn start(
    issuing: Issuing,
    change: impl FnOnce(&mut ProxyConfig),
) -> (LastValueIdp, ProxyServer) {
    let idp = LastValueIdp::start(issuing).await;
    let mut config = ProxyConfig::new(vec![RouteConfig::new(
        PATH,
        idp.token_url().parse().unwrap(),
    )]);
    change(&mut config);
    let proxy = ProxyServer::start(config, ManualClock::starting_now()).await;
    (idp, proxy)
}

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Authorization: Basic {}",
        STANDARD.encode(format!("{id}:{secret}"))
    )
}

/// `POST /oauth2/token[?query]` with these header lines and body.
async fn send(
    proxy: &ProxyServer,
    headers: &[String],
    query: Option<&str>,
    body: &str,
) -> RawAnswer {
    let path = match query {
        Some(query) => format!("{PATH}?{query}"),
        None => PATH.to_owned(),
    };
    raw_http::post(proxy.addr, &path, headers, body).await
}

/// A well-formed request for `client` (Basic) and `scope`.
async fn plain(proxy: &ProxyServer, client: (&str, &str), scope: &str) -> RawAnswer {
    let mut body = String::from("grant_type=client_credentials");
    if !scope.is_empty() {
        body.push_str("&scope=");
        body.push_str(&scope.replace(' ', "+"));
    }
    send(
        proxy,
        &[FORM.into(), basic(client.0, client.1)],
        None,
        &body,
    )
    .await
}

fn token_claims(answer: &RawAnswer) -> Claims {
    let json = answer.json();
    let token = json["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {answer:?}"));
    claims(token).unwrap()
}

fn assert_token_for(answer: &RawAnswer, client: &str, scopes: &[&str]) -> Claims {
    assert_eq!(answer.status, 200, "{answer:?}");
    let claims = token_claims(answer);
    assert_eq!(claims.client_id, client, "{claims:?}");
    assert_eq!(claims.requested_scopes, scopes, "{claims:?}");
    assert!(claims.extra.is_empty(), "{claims:?}");
    claims
}

// ---- The reproductions of the hostile-input issue, one table -------------

/// What a hostile request must get.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// 400 `invalid_request` whose description names this; nothing upstream.
    Refused(&'static str),
    /// A token issued for exactly this client and these scopes.
    Token(&'static str, &'static [&'static str]),
}

struct Case {
    name: &'static str,
    headers: Vec<String>,
    query: Option<&'static str>,
    body: &'static str,
    expect: Expect,
}

fn reproductions() -> Vec<Case> {
    let a = || basic("svc-a", "secret-a");
    let b = || basic("svc-b", "secret-b");
    let cc = "grant_type=client_credentials";
    vec![
        Case {
            name: "scope repeated with an empty copy",
            headers: vec![FORM.into(), a()],
            query: None,
            body: "grant_type=client_credentials&scope=api/read&scope=",
            expect: Expect::Refused("scope"),
        },
        Case {
            name: "scope in the query, an empty scope in the body",
            headers: vec![FORM.into(), a()],
            query: Some("scope=api/write"),
            body: "grant_type=client_credentials&scope=",
            expect: Expect::Refused("scope"),
        },
        Case {
            name: "resource repeated with an empty copy",
            headers: vec![FORM.into(), a()],
            query: None,
            body: "grant_type=client_credentials&scope=api/read&resource=r9&resource=",
            expect: Expect::Refused("resource"),
        },
        Case {
            name: "an empty client_id appended to body credentials",
            headers: vec![FORM.into()],
            query: None,
            body: "grant_type=client_credentials&client_id=svc-a&client_secret=secret-a&scope=api/read&client_id=",
            expect: Expect::Refused("client_id"),
        },
        Case {
            name: "an empty aws_client_metadata is the parameter absent",
            headers: vec![FORM.into(), a()],
            query: None,
            body: "grant_type=client_credentials&scope=api/read&aws_client_metadata=",
            expect: Expect::Token("svc-a", &["api/read"]),
        },
        Case {
            name: "two Authorization headers",
            headers: vec![FORM.into(), a(), b()],
            query: None,
            body: cc,
            expect: Expect::Refused("authorization"),
        },
        Case {
            name: "two Content-Type headers",
            headers: vec![FORM.into(), a(), "Content-Type: text/plain".into()],
            query: None,
            body: cc,
            expect: Expect::Refused("content-type"),
        },
        Case {
            name: "Connection names Authorization",
            headers: vec![FORM.into(), a(), "Connection: close, authorization".into()],
            query: None,
            body: "grant_type=client_credentials&scope=api/read",
            expect: Expect::Token("svc-a", &["api/read"]),
        },
        Case {
            name: "Connection names Content-Type and Authorization",
            headers: vec![
                FORM.into(),
                a(),
                "Connection: content-type, authorization, close".into(),
            ],
            query: None,
            body: "grant_type=client_credentials&scope=api/read",
            expect: Expect::Token("svc-a", &["api/read"]),
        },
        Case {
            name: "credentials in the header and the body",
            headers: vec![FORM.into(), a()],
            query: None,
            body: "grant_type=client_credentials&client_id=svc-b&client_secret=secret-b",
            expect: Expect::Refused("both"),
        },
    ]
}

/// Each reproduction against a fresh proxy (so the hostile request is the
/// first for its key); then the plain request it could have poisoned gets
/// a token of its own, and nothing was negatively cached for it.
#[tokio::test]
async fn every_reproduction_is_refused_or_answered_for_what_was_keyed() {
    for case in reproductions() {
        let (idp, proxy) = start(Issuing::default(), |_| {}).await;
        let answer = send(&proxy, &case.headers, case.query, case.body).await;
        match case.expect {
            Expect::Refused(mentions) => {
                assert_eq!(answer.status, 400, "{}: {answer:?}", case.name);
                let json = answer.json();
                assert_eq!(json["error"], "invalid_request", "{}", case.name);
                let description = json["error_description"].as_str().unwrap();
                assert!(
                    description.to_ascii_lowercase().contains(mentions),
                    "{}: {description}",
                    case.name
                );
                assert_eq!(idp.count(), 0, "{}: reached the upstream", case.name);
            }
            Expect::Token(client, scopes) => {
                assert_token_for(&answer, client, scopes);
                let received = idp.received();
                assert_eq!(received.len(), 1, "{}", case.name);
                let read_as = &received[0].read_as;
                assert_eq!(read_as.client_id.as_deref(), Some(client), "{}", case.name);
                assert!(read_as.extra.is_empty(), "{}: {read_as:?}", case.name);
            }
        }
        // The request the hostile one shares a client (and maybe a key) with.
        let before = idp.count();
        let answer = plain(&proxy, ("svc-a", "secret-a"), "api/read").await;
        assert_token_for(&answer, "svc-a", &["api/read"]);
        let answer = send(
            &proxy,
            &[FORM.into()],
            None,
            "grant_type=client_credentials&client_id=svc-a&client_secret=secret-a&scope=api/read",
        )
        .await;
        assert_token_for(&answer, "svc-a", &["api/read"]);
        assert!(idp.count() <= before + 2, "{}", case.name);
    }
}

/// An absurd `expires_in` is capped at --max-ttl (default one day), in the
/// cache and in every answer.
#[tokio::test]
async fn a_token_lives_in_the_cache_at_most_max_ttl() {
    for (max_ttl, expected) in [(None, 86_400), (Some(Duration::from_secs(600)), 600)] {
        let issuing = Issuing {
            expires_in: serde_json::json!(1_000_000_000_000u64),
            ..Issuing::default()
        };
        let (idp, proxy) = start(issuing, |config| {
            if let Some(max_ttl) = max_ttl {
                config.freshness = config.freshness.with_max_ttl(max_ttl);
            }
        })
        .await;
        for attempt in 0..2 {
            let answer = plain(&proxy, ("svc-a", "secret-a"), "api/read").await;
            assert_eq!(answer.status, 200, "{answer:?}");
            assert_eq!(answer.json()["expires_in"], expected, "attempt {attempt}");
        }
        assert_eq!(idp.count(), 1, "the second answer came from the cache");
    }
}

/// A token too large for the store is passed through, marked, not stored,
/// and evicts nothing: whether it passes the per-entry limit or the whole
/// budget.
#[tokio::test]
async fn an_entry_too_large_to_cache_is_passed_through_and_evicts_nothing() {
    // (cache budget, per-entry limit, padding of the large answer)
    let cases = [
        (64 << 20, 64 << 10, 70 << 10),
        (16 << 10, 64 << 10, 20 << 10),
    ];
    for (cache_max_bytes, max_entry_bytes, padding) in cases {
        let small = LastValueIdp::start(Issuing::default()).await;
        let large = LastValueIdp::start(Issuing {
            padding,
            ..Issuing::default()
        })
        .await;
        let mut config = ProxyConfig::new(vec![
            RouteConfig::new("/small", small.token_url().parse().unwrap()),
            RouteConfig::new("/large", large.token_url().parse().unwrap()),
        ]);
        config.cache_max_bytes = cache_max_bytes;
        config.max_entry_bytes = max_entry_bytes;
        let proxy = ProxyServer::start(config, ManualClock::starting_now()).await;
        let headers = [FORM.to_owned(), basic("svc-a", "secret-a")];
        let body = "grant_type=client_credentials";
        let kept = raw_http::post(proxy.addr, "/small", &headers, body).await;
        assert_eq!(
            kept.header("cache-status"),
            Some("tokencache; fwd=miss; stored")
        );
        for _ in 0..2 {
            let answer = raw_http::post(proxy.addr, "/large", &headers, body).await;
            assert_eq!(answer.status, 200);
            assert_eq!(
                answer.header("cache-status"),
                Some("tokencache; fwd=miss; detail=too-large"),
                "budget {cache_max_bytes}"
            );
            assert_eq!(answer.json()["padding"].as_str().unwrap().len(), padding);
        }
        assert_eq!(large.count(), 2, "never cached");
        let again = raw_http::post(proxy.addr, "/small", &headers, body).await;
        assert!(
            again
                .header("cache-status")
                .unwrap()
                .starts_with("tokencache; hit"),
            "the small entry was evicted: {again:?}"
        );
        assert_eq!(small.count(), 1);
        assert_eq!(proxy.proxy.cached_entries(), 1);
    }
}

// ---- The differential property test -------------------------------------

const CLIENTS: [(&str, &str); 2] = [("svc-a", "secret-a"), ("svc-b", "secret-b")];
const SCOPES: [&str; 3] = ["api/read", "api/write", "admin"];

/// One thing a hostile client does to an otherwise valid request.
#[derive(Debug, Clone)]
enum Mutation {
    /// Appends `name=value` (an empty value included) to the body or query.
    Parameter {
        name: &'static str,
        value: &'static str,
        in_query: bool,
    },
    /// Adds a second `Authorization` header, for this client.
    SecondAuthorization(usize),
    /// Also puts this client's credentials in the body.
    BodyCredentials(usize),
    /// A `Connection` header naming these headers.
    Connection(&'static str),
    /// Another header of the caller's own.
    Header(&'static str),
}

/// A request as a hostile client builds it.
#[derive(Debug, Clone)]
struct Hostile {
    client: usize,
    wrong_secret: bool,
    basic: bool,
    scopes: Vec<&'static str>,
    scope_in_query: bool,
    percent_encoded: bool,
    mutations: Vec<Mutation>,
}

impl Hostile {
    /// (header lines, query, body).
    fn build(&self) -> (Vec<String>, Option<String>, String) {
        let (id, secret) = CLIENTS[self.client];
        let secret = if self.wrong_secret { "wrong" } else { secret };
        let mut headers = vec![FORM.to_owned()];
        let mut body = vec!["grant_type=client_credentials".to_owned()];
        let mut query = Vec::new();
        if self.basic {
            headers.push(basic(id, secret));
        } else {
            body.push(format!("client_id={id}&client_secret={secret}"));
        }
        if !self.scopes.is_empty() {
            let mut scope = self.scopes.join(" ");
            scope = if self.percent_encoded {
                scope.replace('/', "%2F").replace(' ', "%20")
            } else {
                scope.replace(' ', "+")
            };
            let pair = format!("scope={scope}");
            if self.scope_in_query {
                query.push(pair);
            } else {
                body.push(pair);
            }
        }
        for mutation in &self.mutations {
            match mutation {
                Mutation::Parameter {
                    name,
                    value,
                    in_query,
                } => {
                    let pair = format!("{name}={value}");
                    if *in_query {
                        query.push(pair)
                    } else {
                        body.push(pair)
                    }
                }
                Mutation::SecondAuthorization(other) => {
                    headers.push(basic(CLIENTS[*other].0, CLIENTS[*other].1));
                }
                Mutation::BodyCredentials(other) => body.push(format!(
                    "client_id={}&client_secret={}",
                    CLIENTS[*other].0, CLIENTS[*other].1
                )),
                Mutation::Connection(names) => headers.push(format!("Connection: close, {names}")),
                Mutation::Header(line) => headers.push((*line).to_owned()),
            }
        }
        let query = (!query.is_empty()).then(|| query.join("&"));
        (headers, query, body.join("&"))
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let names = prop::sample::select(vec![
        "scope",
        "client_id",
        "client_secret",
        "grant_type",
        "resource",
        "aws_client_metadata",
        "Scope",
        "SCOPE",
    ]);
    let values = prop::sample::select(vec!["", "api/read", "admin", "r9", "%7B%7D", "svc-b"]);
    prop_oneof![
        (names, values, any::<bool>()).prop_map(|(name, value, in_query)| Mutation::Parameter {
            name,
            value,
            in_query
        }),
        (0..2usize).prop_map(Mutation::SecondAuthorization),
        (0..2usize).prop_map(Mutation::BodyCredentials),
        prop::sample::select(vec![
            "authorization",
            "content-type",
            "Authorization, Content-Type, Content-Length",
        ])
        .prop_map(Mutation::Connection),
        prop::sample::select(vec![
            "X-Forwarded-For: 10.0.0.1",
            "User-Agent: evil/1",
            "Accept-Encoding: gzip",
            "Content-Type: application/json",
        ])
        .prop_map(Mutation::Header),
    ]
}

fn hostile() -> impl Strategy<Value = Hostile> {
    (
        0..2usize,
        prop::bool::weighted(0.15),
        any::<bool>(),
        prop::sample::subsequence(SCOPES.to_vec(), 0..=2),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(mutation(), 0..3),
    )
        .prop_map(
            |(client, wrong_secret, basic, scopes, scope_in_query, percent_encoded, mutations)| {
                Hostile {
                    client,
                    wrong_secret,
                    basic,
                    scopes,
                    scope_in_query,
                    percent_encoded,
                    mutations,
                }
            },
        )
}

/// How the proxy keys a request: its own parser, and its refusal of
/// repeated `Authorization` and `Content-Type` headers.
struct Keyed {
    grant_type: String,
    client_id: Option<String>,
    client_secret: Option<String>,
    scopes: Vec<String>,
    extra: Vec<(String, String)>,
    cacheable: bool,
}

fn keyed(headers: &[String], query: Option<&str>, body: &str) -> Option<Keyed> {
    let values = |name: &str| -> Vec<&str> {
        headers
            .iter()
            .filter_map(|line| line.split_once(": "))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    };
    let (content_types, authorizations) = (values("content-type"), values("authorization"));
    if content_types.len() > 1 || authorizations.len() > 1 {
        return None;
    }
    let request = TokenRequest::parse(
        content_types.first().map(|v| v.as_bytes()),
        authorizations.first().map(|v| v.as_bytes()),
        query,
        body.as_bytes(),
    )
    .ok()?;
    Some(Keyed {
        grant_type: request.grant_type().to_owned(),
        client_id: request.client_id().map(str::to_owned),
        client_secret: request.client_secret().map(|s| s.secret().to_owned()),
        scopes: request.scopes().into_iter().map(str::to_owned).collect(),
        extra: request
            .extra_params()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect(),
        cacheable: request.is_cacheable(),
    })
}

/// Sends `requests` through a fresh proxy to a last-value upstream and
/// checks every exchange, then the plain requests they could have poisoned.
async fn run_differential(requests: Vec<Hostile>) -> Result<(), TestCaseError> {
    let (idp, proxy) = start(Issuing::default(), |_| {}).await;
    for request in &requests {
        let (headers, query, body) = request.build();
        let before = idp.count();
        let answer = send(&proxy, &headers, query.as_deref(), &body).await;
        let received = idp.received();
        let Some(keyed) = keyed(&headers, query.as_deref(), &body) else {
            // Ambiguous: refused, and the upstream never saw it.
            prop_assert_eq!(answer.status, 400, "{:?}", answer);
            prop_assert_eq!(&answer.json()["error"], "invalid_request");
            prop_assert_eq!(
                received.len(),
                before,
                "an ambiguous request reached the upstream"
            );
            continue;
        };
        prop_assert!(answer.status != 500, "{:?}", answer);
        if !keyed.cacheable {
            continue;
        }
        // What reached the upstream (if anything) reads, last copies
        // winning, as exactly what the proxy keyed.
        if let Some(sent) = received.get(before..).and_then(<[_]>::last) {
            prop_assert_eq!(received.len(), before + 1);
            let read = &sent.read_as;
            prop_assert_eq!(read.grant_type.as_deref(), Some(keyed.grant_type.as_str()));
            prop_assert_eq!(&read.client_id, &keyed.client_id);
            prop_assert_eq!(&read.client_secret, &keyed.client_secret);
            prop_assert_eq!(&read.scopes, &keyed.scopes);
            let extra: Vec<_> = read.extra.clone().into_iter().collect();
            prop_assert_eq!(&extra, &keyed.extra);
        }
        // Whatever the source (upstream or cache), a token answers exactly
        // this request.
        if answer.status == 200 {
            let claims = token_claims(&answer);
            prop_assert_eq!(Some(&claims.client_id), keyed.client_id.as_ref());
            prop_assert_eq!(&claims.requested_scopes, &keyed.scopes);
            let extra: Vec<_> = claims.extra.into_iter().collect();
            prop_assert_eq!(&extra, &keyed.extra);
        }
    }
    for client in CLIENTS {
        for scopes in [&[][..], &["api/read"][..], &["api/read", "api/write"][..]] {
            let answer = plain(&proxy, client, &scopes.join(" ")).await;
            prop_assert_eq!(answer.status, 200, "{:?}", answer);
            let claims = token_claims(&answer);
            prop_assert_eq!(claims.client_id.as_str(), client.0);
            prop_assert_eq!(&claims.requested_scopes, &scopes.to_vec());
            prop_assert!(claims.extra.is_empty());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn upstream_reads_exactly_what_was_keyed(requests in prop::collection::vec(hostile(), 1..6)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run_differential(requests))?;
    }
}
