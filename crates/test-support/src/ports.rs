//! Ports for the servers the tests start (redis-server, moto): free on
//! loopback, never handed out twice by one process, and below the kernel's
//! ephemeral range.
//!
//! A port found by binding `127.0.0.1:0` comes from the ephemeral range,
//! which every outgoing connection also draws its local port from: between
//! releasing it and the server binding it, a client socket of a test running
//! beside can take it ("Address already in use", seen in CI starting a
//! six-node cluster, twelve ports). The kernel never picks a port below that
//! range for an outgoing connection.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::{Mutex, PoisonError};

use rand::Rng;

/// The lowest port handed out: clear of the well-known and registered
/// services a test machine may run.
const LOWEST: u16 = 20_000;

/// Where the kernel's ephemeral range starts when it cannot be read.
const EPHEMERAL_START: u16 = 32_768;

/// A loopback port free a moment ago, below the ephemeral range, and not
/// handed out before by this process.
///
/// # Panics
/// If loopback cannot be bound at all.
#[must_use]
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let below = ephemeral_start().max(LOWEST + 1_000);
    let mut rng = rand::rng();
    for _ in 0..1_000 {
        let port = rng.random_range(LOWEST..below);
        if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    // A crowded range: fall back to an ephemeral port.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|error| panic!("finding a free loopback port: {error}"));
    handed_out.insert(port);
    port
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(EPHEMERAL_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_distinct_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        for port in ports {
            assert!((LOWEST..ephemeral_start()).contains(&port), "{port}");
            assert!(TcpListener::bind(("127.0.0.1", port)).is_ok(), "{port}");
        }
    }
}
