//! End-to-end: Cognito's native API (AWS JSON 1.1 at `/`) through the
//! proxy, against the mock IdP's native endpoint: what is cached and how it
//! is keyed, what passes through, what is refused, and the resilience the
//! OAuth routes have (negative cache, retries under throttling, one load
//! per key, refresh ahead).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokencache_core::Backoff;
use tokencache_mock_idp::{ControlUpdate, MockIdp, MockIdpConfig};
use tokencache_test_support::native::{self, refresh, sign_in};
use tokencache_test_support::{ADMIN_TOKEN, ManualClock, MockIdpServer, ProxyServer};

struct Setup {
    clock: ManualClock,
    idp: MockIdpServer,
    proxy: ProxyServer,
}

async fn setup_with(configure: impl FnOnce(&mut tokencache_proxy::ProxyConfig)) -> Setup {
    let clock = ManualClock::starting_now();
    let idp = MockIdpServer::start_with(MockIdp::with_clock(
        MockIdpConfig::default(),
        Arc::new(clock.clone()),
    ))
    .await;
    let mut config = native::config_for(&idp);
    config.resilience.backoff =
        Backoff::new(Duration::from_millis(10), Duration::from_millis(50), 4);
    config.resilience.breaker.failure_threshold = 0;
    configure(&mut config);
    let proxy = ProxyServer::start(config, clock.clone()).await;
    Setup { clock, idp, proxy }
}

async fn setup() -> Setup {
    setup_with(|_| {}).await
}

/// Status, `Cache-Status`, `X-Amzn-ErrorType`, content type, JSON body.
struct Answer {
    status: u16,
    cache_status: String,
    error_type: Option<String>,
    content_type: String,
    body: Value,
}

async fn answer_of(response: reqwest::Response) -> Answer {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (cache_status, error_type, content_type) = (
        header("cache-status").unwrap_or_default(),
        header("x-amzn-errortype"),
        header("content-type").unwrap_or_default(),
    );
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} {e}: {text}"));
    Answer {
        status,
        cache_status,
        error_type,
        content_type,
        body,
    }
}

async fn call(setup: &Setup, operation: &str, body: &Value) -> Answer {
    answer_of(native::call(&setup.proxy, operation, body).await).await
}

fn access_token(answer: &Answer) -> String {
    assert_eq!(answer.status, 200, "{}", answer.body);
    let result = answer
        .body
        .get("AuthenticationResult")
        .or_else(|| answer.body.get("ClientAuthenticationResult"))
        .unwrap();
    result["AccessToken"].as_str().unwrap().to_owned()
}

fn expires_in(answer: &Answer) -> u64 {
    answer.body["AuthenticationResult"]["ExpiresIn"]
        .as_u64()
        .unwrap()
}

fn sign_ins(setup: &Setup, user: &str) -> u64 {
    setup
        .idp
        .idp
        .native_stats()
        .by_user
        .get(user)
        .copied()
        .unwrap_or(0)
}

fn upstream_calls(setup: &Setup, operation: &str) -> u64 {
    setup
        .idp
        .idp
        .native_stats()
        .by_operation
        .get(operation)
        .copied()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_password_sign_in_is_cached_and_answered_with_the_remaining_lifetime() {
    let setup = setup().await;
    let first = call(
        &setup,
        "InitiateAuth",
        &sign_in("demo-user", "demo-password"),
    )
    .await;
    assert_eq!(first.cache_status, "tokencache; fwd=miss; stored");
    assert_eq!(first.content_type, "application/x-amz-json-1.1");
    assert_eq!(expires_in(&first), 3600);
    assert_eq!(first.body["ChallengeParameters"], json!({}));
    assert!(first.body["AuthenticationResult"]["RefreshToken"].is_string());

    setup.clock.advance(Duration::from_secs(600));
    // The same request written differently: members reordered, spaced.
    let reordered = r#" { "AuthParameters" : { "SECRET_HASH" : "@HASH@", "PASSWORD" : "demo-password",
        "USERNAME" : "demo-user" }, "ClientId" : "demo-client", "AuthFlow" : "USER_PASSWORD_AUTH" } "#
        .replace(
            "@HASH@",
            &tokencache_mock_idp::secret_hash("demo-secret", "demo-user", "demo-client"),
        );
    let second = answer_of(native::post(&setup.proxy, "InitiateAuth", reordered, &[]).await).await;
    assert!(
        second.cache_status.starts_with("tokencache; hit"),
        "{} {} {}",
        second.cache_status,
        second.status,
        second.body
    );
    assert_eq!(access_token(&second), access_token(&first));
    assert_eq!(expires_in(&second), 3000);
    assert_eq!(second.body, {
        let mut expected = first.body.clone();
        expected["AuthenticationResult"]["ExpiresIn"] = 3000.into();
        expected
    });
    assert_eq!(sign_ins(&setup, "demo-user"), 1);
    // Both answers are counted and timed under the native route.
    let metrics = setup.proxy.metrics().await;
    for outcome in ["miss", "hit"] {
        for series in [
            "tokencache_requests_total",
            "tokencache_request_duration_seconds_count",
        ] {
            let line = format!(r#"{series}{{outcome="{outcome}",route="cognito-idp"}} 1"#);
            assert!(metrics.contains(&line), "{line} in\n{metrics}");
        }
    }
}

#[tokio::test]
async fn a_wrong_password_is_refused_remembered_briefly_and_never_reads_the_right_ones_token() {
    let setup = setup().await;
    let right = call(
        &setup,
        "InitiateAuth",
        &sign_in("demo-user", "demo-password"),
    )
    .await;
    let wrong = call(&setup, "InitiateAuth", &sign_in("demo-user", "not-it")).await;
    assert_eq!(wrong.status, 400);
    assert_eq!(wrong.body["__type"], "NotAuthorizedException");
    assert_eq!(wrong.error_type.as_deref(), Some("NotAuthorizedException"));
    // The second wrong attempt comes from the negative cache.
    let again = call(&setup, "InitiateAuth", &sign_in("demo-user", "not-it")).await;
    assert_eq!(
        again.cache_status, "tokencache; hit; detail=negative",
        "{}",
        again.cache_status
    );
    assert_eq!(again.body["__type"], "NotAuthorizedException");
    assert_eq!(sign_ins(&setup, "demo-user"), 2);
    // The right password still works, from the cache.
    let still = call(
        &setup,
        "InitiateAuth",
        &sign_in("demo-user", "demo-password"),
    )
    .await;
    assert_eq!(access_token(&still), access_token(&right));
    // A user that does not exist is remembered too.
    for _ in 0..2 {
        let ghost = call(&setup, "InitiateAuth", &sign_in("ghost", "x")).await;
        assert_eq!(ghost.body["__type"], "UserNotFoundException");
    }
    assert_eq!(sign_ins(&setup, "ghost"), 1);
}

#[tokio::test]
async fn a_refresh_is_cached_under_its_own_key() {
    let setup = setup().await;
    let signed_in = call(
        &setup,
        "InitiateAuth",
        &sign_in("demo-user", "demo-password"),
    )
    .await;
    let token = signed_in.body["AuthenticationResult"]["RefreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let first = call(&setup, "InitiateAuth", &refresh("demo-user", &token)).await;
    let second = call(&setup, "InitiateAuth", &refresh("demo-user", &token)).await;
    assert_eq!(first.cache_status, "tokencache; fwd=miss; stored");
    assert_eq!(access_token(&first), access_token(&second));
    assert_ne!(access_token(&first), access_token(&signed_in));
    assert_eq!(upstream_calls(&setup, "InitiateAuth"), 2);
}

#[tokio::test]
async fn challenges_pass_through_and_are_never_cached() {
    let setup = setup().await;
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let challenge = call(
            &setup,
            "InitiateAuth",
            &sign_in("new-user", "temp-password"),
        )
        .await;
        assert_eq!(challenge.status, 200);
        assert_eq!(challenge.body["ChallengeName"], "NEW_PASSWORD_REQUIRED");
        assert!(
            challenge.cache_status.contains("uncacheable"),
            "{}",
            challenge.cache_status
        );
        sessions.push(challenge.body["Session"].as_str().unwrap().to_owned());
    }
    assert_ne!(
        sessions[0], sessions[1],
        "each challenge came from upstream"
    );
    assert_eq!(sign_ins(&setup, "new-user"), 2);
    // Answering the challenge passes through too.
    let respond = json!({
        "ChallengeName": "NEW_PASSWORD_REQUIRED",
        "ClientId": "demo-client",
        "Session": sessions[1],
        "ChallengeResponses": {
            "USERNAME": "new-user",
            "NEW_PASSWORD": "chosen-password",
            "SECRET_HASH": tokencache_mock_idp::secret_hash("demo-secret", "new-user", "demo-client"),
        },
    });
    let answered = call(&setup, "RespondToAuthChallenge", &respond).await;
    assert_eq!(answered.cache_status, "tokencache; fwd=bypass");
    access_token(&answered);
}

#[tokio::test]
async fn client_tokens_are_cached_and_keyed_by_the_scope_set() {
    let setup = setup().await;
    let scoped = |scopes: &[&str]| json!({"ClientId": "demo-client", "Secret": "demo-secret", "Scopes": scopes});
    let both = call(
        &setup,
        "GetClientToken",
        &scoped(&["api/read", "api/write"]),
    )
    .await;
    let reordered = call(
        &setup,
        "GetClientToken",
        &scoped(&["api/write", "api/read"]),
    )
    .await;
    let read = call(&setup, "GetClientToken", &scoped(&["api/read"])).await;
    assert_eq!(access_token(&both), access_token(&reordered));
    assert_ne!(access_token(&both), access_token(&read));
    assert_eq!(
        reordered.body["ClientAuthenticationResult"]["ExpiresIn"],
        3600
    );
    assert_eq!(upstream_calls(&setup, "GetClientToken"), 2);
    // A wrong secret is another key: refused, never the right one's token.
    let wrong = call(
        &setup,
        "GetClientToken",
        &json!({"ClientId": "demo-client", "Secret": "nope", "Scopes": ["api/read"]}),
    )
    .await;
    assert_eq!(wrong.body["__type"], "NotAuthorizedException");
}

#[tokio::test]
async fn two_hundred_concurrent_sign_ins_of_a_cold_user_make_one_upstream_sign_in() {
    let setup = setup().await;
    setup.idp.idp.set_latency(Duration::from_millis(200));
    let calls = (0..200).map(|_| async {
        call(
            &setup,
            "InitiateAuth",
            &sign_in("demo-user", "demo-password"),
        )
        .await
    });
    let answers = futures::future::join_all(calls).await;
    let first = access_token(&answers[0]);
    for answer in &answers {
        assert_eq!(access_token(answer), first);
    }
    assert_eq!(sign_ins(&setup, "demo-user"), 1);
}

#[tokio::test]
async fn throttling_is_retried_with_backoff_and_answered_in_the_aws_shape_when_it_lasts() {
    // Enough retries that the bucket refills (on the manual clock, moved
    // below) before they run out, whatever the jitter draws.
    let setup = setup_with(|config| {
        config.resilience.backoff =
            Backoff::new(Duration::from_millis(20), Duration::from_millis(100), 10);
        config.load_deadline = Duration::from_secs(2);
    })
    .await;
    setup.idp.idp.apply(&ControlUpdate {
        rate_limit_per_sec: Some(1),
        ..ControlUpdate::default()
    });
    // The bucket's one token goes to the first sign-in; the second key is
    // throttled, retried, and gets its token once the bucket refills.
    call(
        &setup,
        "InitiateAuth",
        &sign_in("demo-user", "demo-password"),
    )
    .await;
    let clock = setup.clock.clone();
    let ticker = tokio::spawn(async move {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            clock.advance(Duration::from_secs(1));
        }
    });
    let other = call(
        &setup,
        "GetClientToken",
        &json!({"ClientId": "demo-client", "Secret": "demo-secret"}),
    )
    .await;
    ticker.await.unwrap();
    access_token(&other);
    assert!(setup.idp.idp.stats().throttled >= 1);

    // A throttle that outlasts the retries reaches the SDK as
    // TooManyRequestsException, and nothing is cached.
    setup.idp.idp.apply(&ControlUpdate {
        rate_limit_per_sec: Some(1),
        ..ControlUpdate::default()
    });
    call(
        &setup,
        "GetClientToken",
        &json!({"ClientId": "other-client", "Secret": "other-secret"}),
    )
    .await;
    let throttled = call(
        &setup,
        "GetClientToken",
        &json!({"ClientId": "other-client", "Secret": "other-secret", "Scopes": ["api/admin"]}),
    )
    .await;
    assert_eq!(throttled.status, 400, "{}", throttled.body);
    assert_eq!(throttled.body["__type"], "TooManyRequestsException");
}

#[tokio::test]
async fn an_aging_entry_is_served_while_it_is_refreshed_in_the_background() {
    let setup = setup().await;
    let first = call(
        &setup,
        "InitiateAuth",
        &sign_in("demo-user", "demo-password"),
    )
    .await;
    setup.clock.advance(Duration::from_secs(2_800)); // past 75 %
    let aging = call(
        &setup,
        "InitiateAuth",
        &sign_in("demo-user", "demo-password"),
    )
    .await;
    assert!(
        aging.cache_status.contains("refreshing"),
        "{}",
        aging.cache_status
    );
    assert_eq!(access_token(&aging), access_token(&first));
    assert_eq!(expires_in(&aging), 800);
    for _ in 0..100 {
        if sign_ins(&setup, "demo-user") == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sign_ins(&setup, "demo-user"), 2, "refreshed once");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fresh = call(
        &setup,
        "InitiateAuth",
        &sign_in("demo-user", "demo-password"),
    )
    .await;
    assert_ne!(access_token(&fresh), access_token(&first));
    assert_eq!(expires_in(&fresh), 3600);
}

#[tokio::test]
async fn refused_requests_get_aws_shaped_errors_and_never_reach_the_upstream() {
    let setup = setup().await;
    let valid = sign_in("demo-user", "demo-password").to_string();
    let duplicate = valid.replacen('{', r#"{"ClientId":"other-client","#, 1);
    // (operation, body, extra headers, status, __type)
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: [Case<'_>; 6] = [
        (
            "InitiateAuth",
            "{".into(),
            vec![],
            400,
            "SerializationException",
        ),
        (
            "InitiateAuth",
            "[1]".into(),
            vec![],
            400,
            "SerializationException",
        ),
        (
            "InitiateAuth",
            duplicate,
            vec![],
            400,
            "SerializationException",
        ),
        (
            "InitiateAuth",
            "\u{0}\u{ff}".into(),
            vec![],
            400,
            "SerializationException",
        ),
        (
            "AdminInitiateAuth",
            valid.clone(),
            vec![(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261124/eu-west-1/cognito-idp/aws4_request, SignedHeaders=host, Signature=abc",
            )],
            400,
            "InvalidParameterException",
        ),
        (
            "Initiate Auth",
            valid.clone(),
            vec![],
            400,
            "UnknownOperationException",
        ),
    ];
    for (operation, body, headers, status, kind) in cases {
        let answer =
            answer_of(native::post(&setup.proxy, operation, body.clone(), &headers).await).await;
        assert_eq!(answer.status, status, "{operation} {body}");
        assert_eq!(answer.body["__type"], kind, "{operation} {body}");
        assert_eq!(answer.error_type.as_deref(), Some(kind));
        assert!(answer.body["message"].is_string());
        if kind == "InvalidParameterException" {
            let message = answer.body["message"].as_str().unwrap();
            assert!(
                message.contains("Admin*") && message.contains("directly"),
                "{message}"
            );
        }
    }
    // A target of another service.
    let other = setup
        .proxy
        .http
        .post(format!("http://{}/", setup.proxy.addr))
        .header("x-amz-target", "DynamoDB_20120810.GetItem")
        .body("{}")
        .send()
        .await
        .unwrap();
    let other = answer_of(other).await;
    assert_eq!(other.body["__type"], "UnknownOperationException");
    assert!(setup.idp.idp.native_stats().by_operation.is_empty());
}

#[tokio::test]
async fn other_unsigned_operations_and_uncacheable_requests_pass_through_unchanged() {
    let setup = setup().await;
    let sign_up = call(&setup, "SignUp", &json!({"ClientId": "demo-client"})).await;
    assert_eq!(sign_up.cache_status, "tokencache; fwd=bypass");
    assert_eq!(
        sign_up.body["message"],
        "the mock IdP does not implement SignUp"
    );
    // UserContextData makes a sign-in pass through, each time.
    let mut with_context = sign_in("demo-user", "demo-password");
    with_context["UserContextData"] = json!({"EncodedData": "device"});
    for _ in 0..2 {
        let answer = call(&setup, "InitiateAuth", &with_context).await;
        assert_eq!(answer.cache_status, "tokencache; fwd=bypass");
        access_token(&answer);
    }
    assert_eq!(sign_ins(&setup, "demo-user"), 2);
}

#[tokio::test]
async fn what_the_upstream_is_sent_is_what_was_keyed() {
    let setup = setup().await;
    let mut request = sign_in("demo-user", "demo-password");
    request["ClientMetadata"] = json!({"tenant": "t1", "a": "b"});
    let answer = call(&setup, "InitiateAuth", &request).await;
    let claims = setup
        .idp
        .idp
        .verify_access_token(&access_token(&answer))
        .unwrap();
    assert_eq!(claims["client_metadata"], json!({"a": "b", "tenant": "t1"}));
    // Other metadata is another key, and another token.
    request["ClientMetadata"] = json!({"tenant": "t2"});
    let other = call(&setup, "InitiateAuth", &request).await;
    assert_ne!(access_token(&other), access_token(&answer));
}

#[tokio::test]
async fn refresh_tokens_can_be_left_out_and_a_client_purged() {
    let setup = setup_with(|config| {
        config.cognito_idp.as_mut().unwrap().strip_refresh_token = true;
    })
    .await;
    let first = call(
        &setup,
        "InitiateAuth",
        &sign_in("demo-user", "demo-password"),
    )
    .await;
    assert!(
        first.body["AuthenticationResult"]
            .get("RefreshToken")
            .is_none()
    );
    assert!(first.body["AuthenticationResult"]["IdToken"].is_string());
    let purged: Value = setup
        .proxy
        .http
        .delete(setup.proxy.admin_url("/cache?client_id=demo-client"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(purged["purged"], 1);
    let again = call(
        &setup,
        "InitiateAuth",
        &sign_in("demo-user", "demo-password"),
    )
    .await;
    assert_eq!(again.cache_status, "tokencache; fwd=miss; stored");
}

#[tokio::test]
async fn a_replica_serves_another_replicas_native_entry_from_the_shared_store() {
    use tokencache_core::{EncryptionKey, KeyRing};
    use tokencache_memory_store::InProcessSharedStore;
    use tokencache_proxy::SharedStoreConfig;

    let clock = ManualClock::starting_now();
    let idp = MockIdpServer::start_with(MockIdp::with_clock(
        MockIdpConfig::default(),
        Arc::new(clock.clone()),
    ))
    .await;
    let store = Arc::new(InProcessSharedStore::new(Arc::new(clock.clone())));
    let replica = || {
        let mut config = native::config_for(&idp);
        config.shared_store = Some(SharedStoreConfig::new(
            Arc::clone(&store) as Arc<dyn tokencache_core::SharedStore>,
            KeyRing::new(EncryptionKey::from_bytes([5; 32]), vec![]),
        ));
        ProxyServer::start(config, clock.clone())
    };
    let (a, b) = (replica().await, replica().await);
    let first =
        answer_of(native::call(&a, "InitiateAuth", &sign_in("demo-user", "demo-password")).await)
            .await;
    clock.advance(Duration::from_secs(100));
    let from_b =
        answer_of(native::call(&b, "InitiateAuth", &sign_in("demo-user", "demo-password")).await)
            .await;
    assert!(
        from_b.cache_status.contains("detail=shared"),
        "{}",
        from_b.cache_status
    );
    assert_eq!(access_token(&from_b), access_token(&first));
    assert_eq!(expires_in(&from_b), 3500);
    assert_eq!(from_b.content_type, "application/x-amz-json-1.1");
    assert_eq!(
        idp.idp.native_stats().by_user.get("demo-user").copied(),
        Some(1)
    );
}
