//! The registry of a listener's live connections: who may connect, and
//! whom to close to make room.
//!
//! The listener keeps accepting however many connections are open (so a
//! caller never queues in the kernel's backlog behind idle sockets), and
//! asks the registry about each new one:
//!
//! - over the per-peer-IP limit: the new connection is closed at once, so
//!   one host cannot take every slot;
//! - below the connection limit: it is served;
//! - at the limit: the connection idle longest is told to close and the new
//!   one is served in its place, preferring one that never sent a request
//!   (an idle socket) to one that did (a keep-alive client); when every
//!   connection has a request in flight, the new one is closed at once, and
//!   `/readyz` says the listener is saturated.
//!
//! The registry's lock is taken when a connection opens or closes, and by
//! `/readyz`: never per request. At the limit, choosing whom to reclaim
//! reads every connection's counters (some microseconds per thousand
//! connections), on the accept path only. A reclaimed connection closes within a
//! moment; while it does, it does not count against the limit (it has no
//! request in flight), but no more than the limit may be closing at once.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::activity::{Activity, Snapshot, Ticks};

/// How many connections the registry admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectionLimits {
    /// Connections served at once (at least 1).
    pub(crate) max: usize,
    /// Connections from one IP address; 0 for no limit.
    pub(crate) per_ip: usize,
}

/// A listener's live connections.
#[derive(Debug)]
pub(crate) struct Connections {
    limits: ConnectionLimits,
    ticks: Ticks,
    table: Mutex<Table>,
}

/// What the registry decided about a new connection.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Serve it; it stays registered until the ticket drops.
    Admitted(Ticket),
    /// Its IP address already has the most connections allowed.
    OverPerIpLimit,
    /// Every connection has a request in flight.
    Saturated,
}

/// A registered connection: removed from the registry when dropped.
#[derive(Debug)]
pub(crate) struct Ticket {
    registry: Arc<Connections>,
    id: u64,
    activity: Arc<Activity>,
    /// Whether another connection was told to close to make room.
    reclaimed: bool,
}

impl Ticket {
    /// Whether admitting this connection closed an idle one.
    pub(crate) fn reclaimed(&self) -> bool {
        self.reclaimed
    }
}

/// The listener has no room for another connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Saturation {
    /// Connections open.
    pub(crate) open: usize,
    /// The connection limit.
    pub(crate) max: usize,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    per_ip: HashMap<IpAddr, usize>,
    /// Entries asked to close that are still open.
    closing: usize,
}

#[derive(Debug)]
struct Entry {
    peer: IpAddr,
    activity: Arc<Activity>,
}

/// Where a new connection can go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Room {
    Free,
    /// After this connection is told to close.
    Reclaim(u64),
    Full,
}

impl Connections {
    /// An empty registry.
    pub(crate) fn new(limits: ConnectionLimits) -> Self {
        Self {
            limits: ConnectionLimits {
                max: limits.max.max(1),
                per_ip: limits.per_ip,
            },
            ticks: Ticks::start(),
            table: Mutex::new(Table::default()),
        }
    }

    /// The clock connections' times are kept on.
    pub(crate) fn ticks(&self) -> Ticks {
        self.ticks
    }

    /// Decides about a connection from `peer`, just accepted.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Admission {
        // One host, one count, however its address is written.
        let peer = peer.to_canonical();
        let mut table = self.lock();
        let from_peer = table.per_ip.get(&peer).copied().unwrap_or(0);
        if self.limits.per_ip != 0 && from_peer >= self.limits.per_ip {
            return Admission::OverPerIpLimit;
        }
        let mut reclaimed = false;
        match table.room(self.limits.max) {
            Room::Full => return Admission::Saturated,
            Room::Reclaim(victim) => {
                if let Some(entry) = table.entries.get(&victim) {
                    entry.activity.ask_to_close();
                    table.closing += 1;
                    reclaimed = true;
                }
            }
            Room::Free => {}
        }
        let id = table.next_id;
        table.next_id += 1;
        let activity = Arc::new(Activity::new(self.ticks));
        table.entries.insert(
            id,
            Entry {
                peer,
                activity: Arc::clone(&activity),
            },
        );
        *table.per_ip.entry(peer).or_insert(0) += 1;
        Admission::Admitted(Ticket {
            registry: Arc::clone(self),
            id,
            activity,
            reclaimed,
        })
    }

    /// `Some` when a new connection would be refused: the limit is reached
    /// and no connection is idle.
    pub(crate) fn saturation(&self) -> Option<Saturation> {
        let table = self.lock();
        (table.room(self.limits.max) == Room::Full).then(|| Saturation {
            open: table.entries.len(),
            max: self.limits.max,
        })
    }

    /// Connections open (those closing included).
    #[cfg(test)]
    fn open(&self) -> usize {
        self.lock().entries.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // The table stays consistent across a panic (every update is a
        // single insert or remove), so a poisoned lock is still usable.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remove(&self, id: u64) {
        let mut table = self.lock();
        let Some(entry) = table.entries.remove(&id) else {
            return;
        };
        if entry.activity.snapshot().close_asked {
            table.closing = table.closing.saturating_sub(1);
        }
        if let Some(count) = table.per_ip.get_mut(&entry.peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                table.per_ip.remove(&entry.peer);
            }
        }
    }
}

impl Table {
    fn room(&self, max: usize) -> Room {
        let serving = self.entries.len() - self.closing.min(self.entries.len());
        if serving < max {
            return Room::Free;
        }
        if self.closing >= max {
            // Closing connections still hold sockets: bound them too.
            return Room::Full;
        }
        let candidates = self
            .entries
            .iter()
            .map(|(id, entry)| (*id, entry.activity.snapshot()));
        pick_victim(candidates).map_or(Room::Full, Room::Reclaim)
    }
}

/// The connection to reclaim: among those with no request in flight and
/// not already closing, one that never sent a request before one that did,
/// then the one idle longest.
fn pick_victim(candidates: impl Iterator<Item = (u64, Snapshot)>) -> Option<u64> {
    candidates
        .filter(|(_, seen)| seen.in_flight == 0 && !seen.close_asked)
        .min_by_key(|(id, seen)| (seen.requests > 0, seen.idle_since, *id))
        .map(|(id, _)| id)
}

impl Ticket {
    /// The connection's activity, for its service and its watchdog.
    pub(crate) fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

impl fmt::Display for Saturation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "saturated: {} connections open (limit {}), none idle",
            self.open, self.max
        )
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    fn registry(max: usize, per_ip: usize) -> Arc<Connections> {
        Arc::new(Connections::new(ConnectionLimits { max, per_ip }))
    }

    fn admitted(admission: Admission) -> Ticket {
        match admission {
            Admission::Admitted(ticket) => ticket,
            other => panic!("refused: {other:?}"),
        }
    }

    fn asked_to_close(ticket: &Ticket) -> bool {
        ticket.activity().snapshot().close_asked
    }

    /// An idle connection that has served `requests`, idle since `since`.
    fn idle(ticket: &Ticket, requests: u64, since: u64) {
        for _ in 0..requests {
            ticket.activity().request_started();
            ticket.activity().request_ended();
        }
        ticket.activity().set_idle_since(since);
    }

    #[test]
    fn the_victim_is_idle_never_used_first_then_idle_longest() {
        let seen = |requests, in_flight, idle_since, close_asked| Snapshot {
            requests,
            in_flight,
            idle_since,
            close_asked,
        };
        // (candidates, the one reclaimed)
        let table = vec![
            (vec![], None),
            // Every one busy: none.
            (
                vec![(1, seen(1, 1, 0, false)), (2, seen(3, 2, 0, false))],
                None,
            ),
            // The one idle longest.
            (
                vec![(1, seen(1, 0, 500, false)), (2, seen(4, 0, 100, false))],
                Some(2),
            ),
            // One that never sent a request, even if idle for less time.
            (
                vec![(1, seen(1, 0, 100, false)), (2, seen(0, 0, 900, false))],
                Some(2),
            ),
            // Not one already asked to close.
            (
                vec![(1, seen(0, 0, 100, true)), (2, seen(0, 0, 900, false))],
                Some(2),
            ),
        ];
        for (candidates, victim) in table {
            assert_eq!(
                pick_victim(candidates.iter().copied()),
                victim,
                "{candidates:?}"
            );
        }
    }

    #[test]
    fn at_the_limit_the_longest_idle_is_reclaimed_and_busy_ones_are_kept() {
        let connections = registry(3, 0);
        let served_long_ago = admitted(connections.admit(A));
        let never_sent = admitted(connections.admit(B));
        let busy = admitted(connections.admit(A));
        idle(&served_long_ago, 2, 0);
        busy.activity().request_started();

        // Full: the socket that never sent anything goes first...
        let fourth = admitted(connections.admit(B));
        assert!(asked_to_close(&never_sent));
        assert!(!asked_to_close(&served_long_ago) && !asked_to_close(&busy));
        assert_eq!(connections.open(), 4, "closing, still registered");
        // ...then the keep-alive connection idle longest...
        fourth.activity().request_started();
        let fifth = admitted(connections.admit(A));
        assert!(asked_to_close(&served_long_ago));
        // ...and with every one busy, none: saturated.
        fifth.activity().request_started();
        assert!(matches!(connections.admit(B), Admission::Saturated));
        assert_eq!(
            connections.saturation(),
            Some(Saturation { open: 5, max: 3 })
        );
        drop((never_sent, served_long_ago));
        assert_eq!(connections.open(), 3);
        assert!(connections.saturation().is_some());
        // A request ends: room again, by reclaiming that connection.
        busy.activity().request_ended();
        assert_eq!(connections.saturation(), None);
        drop(busy);
        assert_eq!(connections.open(), 2);
        let _sixth = admitted(connections.admit(B));
        drop((fourth, fifth));
    }

    #[test]
    fn one_address_cannot_take_more_than_its_share() {
        let connections = registry(100, 2);
        let first = admitted(connections.admit(A));
        let _second = admitted(connections.admit(A));
        assert!(matches!(connections.admit(A), Admission::OverPerIpLimit));
        // The same host written as an IPv4-mapped IPv6 address.
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert!(matches!(
            connections.admit(mapped),
            Admission::OverPerIpLimit
        ));
        // Another host is not affected, and a closed connection frees a
        // slot.
        let _other = admitted(connections.admit(B));
        drop(first);
        let _third = admitted(connections.admit(A));
        // 0: no per-address limit.
        let unlimited = registry(100, 0);
        let tickets: Vec<_> = (0..50).map(|_| admitted(unlimited.admit(A))).collect();
        assert_eq!(unlimited.open(), tickets.len());
    }

    #[test]
    fn no_more_than_the_limit_may_be_closing_at_once() {
        let connections = registry(1, 0);
        let first = admitted(connections.admit(A));
        // The first is reclaimed for the second...
        let second = admitted(connections.admit(A));
        assert!(asked_to_close(&first));
        // ...but while it has not closed, the second is not reclaimed in
        // turn for a third.
        assert!(matches!(connections.admit(A), Admission::Saturated));
        drop(first);
        let _third = admitted(connections.admit(A));
        assert!(asked_to_close(&second));
    }
}
