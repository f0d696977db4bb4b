//! Where Redis is and how to reach it: the store URL and its settings.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use tokencache_core::StoreError;
use zeroize::Zeroizing;

/// The port a node listens on when its URL names none.
pub const DEFAULT_PORT: u16 = 6379;

/// The key prefix when none is configured.
pub const DEFAULT_PREFIX: &str = "tokencache:";

/// How long one store operation may take by default: a slow store degrades
/// the proxy (memory tier, upstream), it never makes callers wait.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_millis(250);

/// How long one connection attempt (TCP, TLS, `AUTH`) may take by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether the URL names one server or the seed nodes of a Redis Cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Topology {
    /// One server (or a primary behind a stable endpoint, as ElastiCache's
    /// primary endpoint): `redis://` and `rediss://`.
    Standalone,
    /// A Redis Cluster, found from one or more seed nodes:
    /// `redis-cluster://` and `rediss-cluster://`.
    Cluster,
}

/// One node's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisNode {
    /// A host name or an IP address (IPv6 without brackets).
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

impl fmt::Display for RedisNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A password, kept out of `Debug` and wiped when dropped.
#[derive(Clone)]
pub(crate) struct Password(Zeroizing<String>);

impl Password {
    pub(crate) fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How to reach Redis: parsed from a store URL, then adjusted through the
/// public fields.
///
/// URL forms (user and password are optional and percent-decoded; the port
/// defaults to 6379):
///
/// - `redis://[user:password@]host[:port][/db]`: one server;
/// - `rediss://…`: the same over TLS (rustls; the system roots, plus
///   [`ca_file`](Self::ca_file) when set);
/// - `redis-cluster://[user:password@]host:port,host:port,…`: a Redis
///   Cluster, found from these seed nodes (database 0 only);
/// - `rediss-cluster://…`: a Redis Cluster over TLS.
///
/// A password alone is written `redis://:password@host`. IPv6 hosts go in
/// brackets: `redis://[::1]:6379`. Query strings and fragments are refused
/// rather than ignored.
///
/// `Debug` shows the URL with the password replaced by `[redacted]`.
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Put before every key; `tokencache:` by default. It must not contain
    /// `{` or `}` (the key's hash tag follows it) and must not be empty
    /// (a purge removes every entry under it).
    pub prefix: String,
    /// A PEM file of CA certificates to trust besides the system roots,
    /// for servers whose certificates a private CA issued (TLS URLs only).
    pub ca_file: Option<PathBuf>,
    /// The longest one operation may take, connection included; 250 ms by
    /// default. Past it the operation fails as unavailable.
    pub op_timeout: Duration,
    /// The longest one connection attempt (TCP, TLS, `AUTH`) may take; 1 s
    /// by default. It also bounds the first connection of
    /// [`RedisStore::connect`](crate::RedisStore::connect).
    pub connect_timeout: Duration,
    topology: Topology,
    tls: bool,
    nodes: Vec<RedisNode>,
    username: Option<String>,
    password: Option<Password>,
    db: u32,
}

impl RedisConfig {
    /// Parses a store URL (see the type's docs for the forms), with the
    /// default prefix and timeouts.
    ///
    /// # Errors
    /// [`StoreError::Refused`] naming what is wrong. The message never
    /// quotes the URL: a mistyped URL can carry its password anywhere.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("expected scheme://host:port, e.g. redis://127.0.0.1:6379"))?;
        let (topology, tls) = match scheme.to_ascii_lowercase().as_str() {
            "redis" => (Topology::Standalone, false),
            "rediss" => (Topology::Standalone, true),
            "redis-cluster" => (Topology::Cluster, false),
            "rediss-cluster" => (Topology::Cluster, true),
            _ => {
                return Err(invalid(
                    "unknown scheme: expected redis, rediss, redis-cluster or rediss-cluster",
                ));
            }
        };
        // The last `@` ends the user info, so a password with an unescaped
        // `/`, `?`, `#` or `@` still lands in the user info, never in an
        // error message about hosts.
        let (userinfo, location) = match rest.rsplit_once('@') {
            Some((userinfo, location)) => (Some(userinfo), location),
            None => (None, rest),
        };
        let (username, password) = parse_userinfo(userinfo)?;
        if location.contains(['?', '#']) {
            return Err(invalid("query strings and fragments are not supported"));
        }
        let (hosts, path) = match location.split_once('/') {
            Some((hosts, path)) => (hosts, path),
            None => (location, ""),
        };
        let db = parse_db(path)?;
        let nodes = hosts
            .split(',')
            .enumerate()
            .map(|(index, node)| parse_node(index + 1, node))
            .collect::<Result<Vec<_>, _>>()?;
        match topology {
            Topology::Standalone if nodes.len() != 1 => {
                return Err(invalid(
                    "redis:// and rediss:// name one host; use redis-cluster:// for several",
                ));
            }
            Topology::Cluster if db != 0 => {
                return Err(invalid("a Redis Cluster has only database 0"));
            }
            _ => {}
        }
        Ok(Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            ca_file: None,
            op_timeout: DEFAULT_OP_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            topology,
            tls,
            nodes,
            username,
            password,
            db,
        })
    }

    /// One server or a cluster.
    #[must_use]
    pub fn topology(&self) -> Topology {
        self.topology
    }

    /// Whether connections use TLS (`rediss://`, `rediss-cluster://`).
    #[must_use]
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The server, or the cluster's seed nodes.
    #[must_use]
    pub fn nodes(&self) -> &[RedisNode] {
        &self.nodes
    }

    /// The ACL user, if the URL names one (else the `default` user).
    #[must_use]
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// Whether the URL carries a password. The password itself is only
    /// handed to the Redis client.
    #[must_use]
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// The database index (always 0 for a cluster).
    #[must_use]
    pub fn db(&self) -> u32 {
        self.db
    }

    pub(crate) fn password(&self) -> Option<&Password> {
        self.password.as_ref()
    }

    /// The URL with the password replaced by `[redacted]`, for logs.
    #[must_use]
    pub fn redacted_url(&self) -> String {
        let scheme = match (self.topology, self.tls) {
            (Topology::Standalone, false) => "redis",
            (Topology::Standalone, true) => "rediss",
            (Topology::Cluster, false) => "redis-cluster",
            (Topology::Cluster, true) => "rediss-cluster",
        };
        let userinfo = match (&self.username, &self.password) {
            (Some(user), Some(_)) => format!("{user}:[redacted]@"),
            (None, Some(_)) => ":[redacted]@".to_owned(),
            (Some(user), None) => format!("{user}@"),
            (None, None) => String::new(),
        };
        let nodes: Vec<String> = self.nodes.iter().map(ToString::to_string).collect();
        let db = if self.db == 0 {
            String::new()
        } else {
            format!("/{}", self.db)
        };
        format!("{scheme}://{userinfo}{}{db}", nodes.join(","))
    }

    /// Checks the settings the URL does not carry.
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        if self.prefix.is_empty() {
            return Err(invalid("the key prefix must not be empty"));
        }
        if self
            .prefix
            .chars()
            .any(|c| c == '{' || c == '}' || c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                "the key prefix must not contain braces, spaces or control characters",
            ));
        }
        if self.ca_file.is_some() && !self.tls {
            return Err(invalid(
                "a CA file needs a TLS URL (rediss:// or rediss-cluster://)",
            ));
        }
        if self.op_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(invalid("timeouts must be longer than zero"));
        }
        Ok(())
    }
}

impl FromStr for RedisConfig {
    type Err = StoreError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        Self::parse(url)
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("prefix", &self.prefix)
            .field("ca_file", &self.ca_file)
            .field("op_timeout", &self.op_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

fn invalid(what: &str) -> StoreError {
    StoreError::Refused(format!("invalid Redis store URL or settings: {what}"))
}

/// `user:password`, `:password`; a user without a password is refused
/// (Redis would ignore the user).
fn parse_userinfo(
    userinfo: Option<&str>,
) -> Result<(Option<String>, Option<Password>), StoreError> {
    let Some(userinfo) = userinfo else {
        return Ok((None, None));
    };
    let Some((user, password)) = userinfo.split_once(':') else {
        return Err(invalid(
            "the user info needs a password: user:password@host or :password@host",
        ));
    };
    let user = decode(user, "the user name")?;
    let password = Zeroizing::new(decode(password, "the password")?);
    if password.is_empty() {
        return Err(invalid("the password is empty"));
    }
    let user = (!user.is_empty()).then_some(user);
    Ok((user, Some(Password(password))))
}

fn decode(text: &str, what: &str) -> Result<String, StoreError> {
    percent_decode_str(text)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| invalid(&format!("{what} is not UTF-8 once percent-decoded")))
}

fn parse_db(path: &str) -> Result<u32, StoreError> {
    if path.is_empty() {
        return Ok(0);
    }
    if !path.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("the path must be a database number, as in /0"));
    }
    path.parse()
        .map_err(|_| invalid("the database number is too large"))
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; `position` counts from 1
/// and names the node in errors instead of quoting it.
fn parse_node(position: usize, node: &str) -> Result<RedisNode, StoreError> {
    let at = |what: &str| invalid(&format!("node {position}: {what}"));
    let (host, port) = if let Some(bracketed) = node.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| at("an IPv6 address lacks its closing bracket"))?;
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(at("not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| at("expected :port after the IPv6 address"))?,
            ),
        };
        (host, port)
    } else {
        match node.split_once(':') {
            Some((_, port)) if port.contains(':') => {
                return Err(at("IPv6 addresses go in brackets, as in [::1]:6379"));
            }
            Some((host, port)) => (host, Some(port)),
            None => (node, None),
        }
    };
    if host.is_empty() {
        return Err(at("the host is missing"));
    }
    if !node.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    {
        return Err(at("the host has characters a host name cannot have"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| at("the port is not a number from 1 to 65535"))?,
    };
    Ok(RedisNode {
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> String {
        match RedisConfig::parse(url) {
            Err(StoreError::Refused(message)) => message,
            other => panic!("{url}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn standalone_with_defaults() {
        let config = RedisConfig::parse("redis://127.0.0.1").unwrap();
        assert_eq!(config.topology(), Topology::Standalone);
        assert!(!config.tls());
        assert_eq!(
            config.nodes(),
            [RedisNode {
                host: "127.0.0.1".into(),
                port: 6379
            }]
        );
        assert_eq!(config.username(), None);
        assert!(!config.has_password());
        assert_eq!(config.db(), 0);
        assert_eq!(config.prefix, "tokencache:");
        assert_eq!(config.op_timeout, Duration::from_millis(250));
        assert_eq!(config.connect_timeout, Duration::from_secs(1));
        assert_eq!(config.ca_file, None);
    }

    #[test]
    fn user_password_port_and_db() {
        let config: RedisConfig = "rediss://tokencache:s3cr%40t%2Fpw@cache.example.com:6380/3"
            .parse()
            .unwrap();
        assert!(config.tls());
        assert_eq!(config.username(), Some("tokencache"));
        assert_eq!(config.password().unwrap().secret(), "s3cr@t/pw");
        assert_eq!(config.nodes()[0].host, "cache.example.com");
        assert_eq!(config.nodes()[0].port, 6380);
        assert_eq!(config.db(), 3);
    }

    #[test]
    fn password_only_and_trailing_slash() {
        let config = RedisConfig::parse("redis://:hunter2@localhost:7000/").unwrap();
        assert_eq!(config.username(), None);
        assert_eq!(config.password().unwrap().secret(), "hunter2");
        assert_eq!(config.db(), 0);
    }

    #[test]
    fn unescaped_specials_in_the_password_stay_in_the_password() {
        let config = RedisConfig::parse("redis://u:p@ss/w?rd#x@host:1").unwrap();
        assert_eq!(config.password().unwrap().secret(), "p@ss/w?rd#x");
        assert_eq!(config.nodes()[0].host, "host");
    }

    #[test]
    fn ipv6_hosts() {
        let config = RedisConfig::parse("redis://[::1]:6390").unwrap();
        assert_eq!(config.nodes()[0].host, "::1");
        assert_eq!(config.nodes()[0].port, 6390);
        assert_eq!(config.nodes()[0].to_string(), "[::1]:6390");
        let config = RedisConfig::parse("redis://[fe80::2]").unwrap();
        assert_eq!(config.nodes()[0].port, 6379);
    }

    #[test]
    fn cluster_node_lists() {
        let config = RedisConfig::parse(
            "redis-cluster://app:pw@10.0.0.1:7000,10.0.0.2:7001,node-3.internal",
        )
        .unwrap();
        assert_eq!(config.topology(), Topology::Cluster);
        assert!(!config.tls());
        let nodes: Vec<String> = config.nodes().iter().map(ToString::to_string).collect();
        assert_eq!(
            nodes,
            ["10.0.0.1:7000", "10.0.0.2:7001", "node-3.internal:6379"]
        );
        assert_eq!(config.username(), Some("app"));

        let tls = RedisConfig::parse("REDISS-CLUSTER://h1:1,h2:2").unwrap();
        assert!(tls.tls());
        assert_eq!(tls.topology(), Topology::Cluster);
        assert_eq!(tls.nodes().len(), 2);
    }

    #[test]
    fn bad_urls_are_refused() {
        for (url, expected) in [
            ("127.0.0.1:6379", "scheme://"),
            ("http://127.0.0.1", "unknown scheme"),
            ("redis://", "host is missing"),
            ("redis://host:0", "port"),
            ("redis://host:65536", "port"),
            ("redis://host:abc", "port"),
            ("redis://host/x", "database number"),
            ("redis://host/99999999999", "too large"),
            ("redis://a:1,b:2", "one host"),
            ("redis-cluster://a:1,,b:2", "node 2"),
            ("redis-cluster://a:1/2", "only database 0"),
            ("redis://host?timeout=1", "query"),
            ("redis://host#frag", "query"),
            ("redis://::1:6379", "brackets"),
            ("redis://[::1", "closing bracket"),
            ("redis://[zz]:1", "IPv6"),
            ("redis://ho st", "characters"),
            ("redis://user@host", "needs a password"),
            ("redis://user:@host", "password is empty"),
            ("redis://user:%ff@host", "UTF-8"),
        ] {
            let message = refused(url);
            assert!(message.contains(expected), "{url}: {message}");
        }
    }

    #[test]
    fn errors_never_quote_the_password() {
        // Mistyped URLs that put the password where a host or port belongs.
        for url in [
            "redis://user:Sup3rS3cret/host",
            "redis://user:Sup3rS3cret",
            "redis://:Sup3rS3cret",
            "Sup3rS3cret://host",
            "redis-cluster://h:1,user:Sup3rS3cret",
            "redis://user:Sup3rS3cret@",
            "redis://user:Sup3rS3cret@host:port",
            "redis://user:Sup3rS3cret@host/db",
            "redis://user:Sup3rS3cret@host?x",
            "redis://us%ffer:Sup3rS3cret@host",
        ] {
            let message = refused(url);
            assert!(!message.contains("Sup3rS3cret"), "{url}: {message}");
            assert!(!message.contains("S3cret"), "{url}: {message}");
        }
    }

    #[test]
    fn debug_redacts_the_password() {
        let config = RedisConfig::parse("rediss://tokencache:Sup3rS3cret@h:6380/2").unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("Sup3rS3cret"), "{debug}");
        assert!(
            debug.contains("rediss://tokencache:[redacted]@h:6380/2"),
            "{debug}"
        );
        assert_eq!(
            RedisConfig::parse("redis-cluster://:pw@a:1,[::1]:2")
                .unwrap()
                .redacted_url(),
            "redis-cluster://:[redacted]@a:1,[::1]:2"
        );
        assert_eq!(
            RedisConfig::parse("redis://h").unwrap().redacted_url(),
            "redis://h:6379"
        );
    }

    #[test]
    fn settings_are_checked() {
        let mut config = RedisConfig::parse("redis://h").unwrap();
        assert!(config.validate().is_ok());
        config.prefix = "app:{x}:".into();
        assert!(config.validate().is_err());
        config.prefix = String::new();
        assert!(config.validate().is_err());
        config.prefix = "app:".into();
        config.ca_file = Some("/tmp/ca.pem".into());
        assert!(config.validate().is_err(), "a CA file without TLS");
        config.ca_file = None;
        config.op_timeout = Duration::ZERO;
        assert!(config.validate().is_err());
    }
}
