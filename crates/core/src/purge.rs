//! Purges told to a fleet: a short log kept in the shared store, which
//! every replica reads, so a purge on one replica also drops the matching
//! entries from every other replica's memory tier, not only from the store.
//!
//! The log is one value under one store key: an epoch (random, made when
//! the log is first written, so a store that lost its data starts a new log
//! instead of handing out generation numbers a replica has seen already), a
//! generation counting the purges, and the most recent purges with their
//! generations. Stores append with a compare-and-set on the generation
//! ([`PurgeLog::appended`]); replicas keep the [`PurgeMark`] they last saw
//! and ask [`PurgeLog::since`] what they must drop.
//!
//! ```
//! use tokencache_core::{PurgeLog, PurgeScope};
//!
//! let empty = PurgeLog::default();
//! let seen = empty.mark(); // what a replica saw when it started
//! let log = empty.appended(PurgeScope::All); // a purge on another replica
//! assert_eq!(log.since(&seen), [PurgeScope::All]);
//! assert!(log.since(&log.mark()).is_empty());
//! ```

use std::fmt::Write as _;

use crate::key::{ClientTag, push_hex};

/// How many purges a log keeps. A replica that fell further behind (through
/// a long store outage) drops its whole memory tier instead.
pub const PURGE_LOG_KEEPS: usize = 32;

/// What one purge dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PurgeScope {
    /// Every token.
    All,
    /// One client's tokens (its store keys carry this tag).
    Client(ClientTag),
}

impl PurgeScope {
    /// The text a store keeps: `all` or `client:<16 hex>`.
    #[must_use]
    pub fn encode(&self) -> String {
        match self {
            Self::All => "all".to_owned(),
            Self::Client(tag) => format!("client:{}", tag.as_hex()),
        }
    }

    /// Reads what [`encode`](Self::encode) wrote; `None` for anything else.
    #[must_use]
    pub fn decode(text: &str) -> Option<Self> {
        if text == "all" {
            return Some(Self::All);
        }
        let hex = text.strip_prefix("client:")?;
        if hex.len() != 16 {
            return None;
        }
        let mut tag = [0u8; 8];
        for (byte, pair) in tag.iter_mut().zip(hex.as_bytes().chunks(2)) {
            *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
        }
        Some(Self::Client(ClientTag(tag)))
    }
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}

/// Where a purge log stood when a replica last read it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PurgeMark {
    /// The log's epoch; empty before the first purge.
    pub epoch: String,
    /// How many purges the log had counted.
    pub generation: u64,
}

/// A store's purge log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PurgeLog {
    /// Made with the log's first purge; empty while nothing was purged.
    pub epoch: String,
    /// The purges counted in this epoch.
    pub generation: u64,
    /// The most recent purges (at most [`PURGE_LOG_KEEPS`]), oldest first,
    /// each with its generation.
    pub recent: Vec<(u64, PurgeScope)>,
}

impl PurgeLog {
    /// Where the log stands.
    #[must_use]
    pub fn mark(&self) -> PurgeMark {
        PurgeMark {
            epoch: self.epoch.clone(),
            generation: self.generation,
        }
    }

    /// The log with `scope` appended, in a new epoch if the log is empty,
    /// and trimmed to [`PURGE_LOG_KEEPS`]. A store writes it only if its
    /// generation is still `self.generation` (compare-and-set).
    #[must_use]
    pub fn appended(&self, scope: PurgeScope) -> Self {
        let epoch = if self.epoch.is_empty() {
            let bytes: [u8; 8] = rand::random();
            let mut epoch = String::with_capacity(16);
            push_hex(&mut epoch, &bytes);
            epoch
        } else {
            self.epoch.clone()
        };
        let generation = self.generation + 1;
        let skip = (self.recent.len() + 1).saturating_sub(PURGE_LOG_KEEPS);
        let recent = self
            .recent
            .iter()
            .skip(skip)
            .copied()
            .chain([(generation, scope)])
            .collect();
        Self {
            epoch,
            generation,
            recent,
        }
    }

    /// The recent purges as text, one `<generation> <scope>` a line: how
    /// stores keep them.
    #[must_use]
    pub fn recent_text(&self) -> String {
        let mut text = String::new();
        for (generation, scope) in &self.recent {
            // Writing to a String cannot fail.
            let _ = writeln!(text, "{generation} {}", scope.encode());
        }
        text
    }

    /// Reads what [`recent_text`](Self::recent_text) wrote; `None` when a
    /// line is not a purge.
    #[must_use]
    pub fn parse_recent(text: &str) -> Option<Vec<(u64, PurgeScope)>> {
        text.lines()
            .filter(|line| !line.is_empty())
            .map(|line| {
                let (generation, scope) = line.split_once(' ')?;
                Some((generation.parse().ok()?, PurgeScope::decode(scope)?))
            })
            .collect()
    }

    /// What a replica that last saw `seen` must drop: nothing, the clients
    /// purged since, or `[All]` when everything was purged or the log no
    /// longer reaches back to `seen` (it dropped older purges, or went
    /// backwards).
    #[must_use]
    pub fn since(&self, seen: &PurgeMark) -> Vec<PurgeScope> {
        let after = if self.epoch == seen.epoch {
            match self.generation.cmp(&seen.generation) {
                std::cmp::Ordering::Equal => return Vec::new(),
                // Generations only grow within an epoch: this log is not
                // the one the replica saw.
                std::cmp::Ordering::Less => return vec![PurgeScope::All],
                std::cmp::Ordering::Greater => seen.generation,
            }
        } else {
            // A new log (the first purge, or a store that lost the old
            // one): all of it is news.
            0
        };
        let news: Vec<PurgeScope> = self
            .recent
            .iter()
            .filter(|(generation, _)| *generation > after)
            .map(|(_, scope)| *scope)
            .collect();
        let complete = news.len() as u64 == self.generation - after;
        if !complete || news.contains(&PurgeScope::All) {
            return vec![PurgeScope::All];
        }
        let mut unique = Vec::with_capacity(news.len());
        for scope in news {
            if !unique.contains(&scope) {
                unique.push(scope);
            }
        }
        unique
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(byte: u8) -> PurgeScope {
        PurgeScope::Client(ClientTag([byte; 8]))
    }

    #[test]
    fn scopes_round_trip_as_text() {
        for scope in [PurgeScope::All, client(0xab), client(0x01)] {
            assert_eq!(PurgeScope::decode(&scope.encode()), Some(scope));
        }
        assert_eq!(client(0xab).encode(), "client:abababababababab");
        for bad in [
            "",
            "ALL",
            "client:",
            "client:ABABABABABABABAB",
            "client:abab",
            "client:zzzzzzzzzzzzzzzz",
        ] {
            assert_eq!(PurgeScope::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_log_counts_trims_and_keeps_its_epoch() {
        let mut log = PurgeLog::default();
        for _ in 0..PURGE_LOG_KEEPS + 5 {
            log = log.appended(client(1));
        }
        assert_eq!(log.epoch.len(), 16);
        assert_eq!(log.generation, PURGE_LOG_KEEPS as u64 + 5);
        assert_eq!(log.recent.len(), PURGE_LOG_KEEPS);
        assert_eq!(log.recent.last().map(|(g, _)| *g), Some(log.generation));
        let epoch = log.epoch.clone();
        assert_eq!(log.appended(PurgeScope::All).epoch, epoch);
        assert_eq!(
            PurgeLog::parse_recent(&log.recent_text()).unwrap(),
            log.recent
        );
        assert!(PurgeLog::parse_recent("1 all\nnot a purge\n").is_none());
        assert!(PurgeLog::parse_recent("").unwrap().is_empty());
    }

    #[test]
    fn a_replica_learns_what_it_missed() {
        let start = PurgeLog::default();
        let seen = start.mark();
        let one = start.appended(client(1));
        assert_eq!(one.since(&seen), [client(1)]);
        let two = one.appended(client(2)).appended(client(1));
        assert_eq!(two.since(&one.mark()), [client(2), client(1)]);
        assert_eq!(two.since(&seen), [client(1), client(2)]);
        assert!(two.since(&two.mark()).is_empty());
        assert_eq!(
            two.appended(PurgeScope::All).since(&one.mark()),
            [PurgeScope::All]
        );
    }

    #[test]
    fn a_gap_or_a_lost_log_means_everything() {
        let mut log = PurgeLog::default().appended(client(1));
        let early = log.mark();
        for _ in 0..PURGE_LOG_KEEPS {
            log = log.appended(client(2));
        }
        assert_eq!(log.since(&early), [client(2)], "just within the log");
        log = log.appended(client(2));
        assert_eq!(log.since(&early), [PurgeScope::All], "trimmed past it");
        // The store lost its data: a new, shorter log in another epoch.
        let reborn = PurgeLog::default().appended(client(3));
        assert_eq!(reborn.since(&log.mark()), [client(3)]);
        assert!(PurgeLog::default().since(&log.mark()).is_empty());
        // Same epoch, fewer purges than seen: not the log it saw.
        let behind = PurgeMark {
            epoch: log.epoch.clone(),
            generation: log.generation + 3,
        };
        assert_eq!(log.since(&behind), [PurgeScope::All]);
    }
}
