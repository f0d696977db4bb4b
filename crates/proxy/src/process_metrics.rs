//! The process's own metrics under their standard names (`process_*`, as
//! every Prometheus client library exports them), read from `/proc` when
//! scraped. Elsewhere than Linux they are left out.

use std::fmt::Write as _;

/// Linux reports CPU times in `/proc` in USER_HZ ticks, which the kernel
/// fixes at 100 per second for user space whatever its internal HZ.
const TICKS_PER_SECOND: f64 = 100.0;

/// What `/proc` says about this process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ProcessSample {
    cpu_seconds: f64,
    resident_bytes: u64,
    open_fds: u64,
    start_time_seconds: f64,
}

impl ProcessSample {
    /// Reads this process's sample; `None` where there is no `/proc`.
    pub(crate) fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count();
        Self::parse(&stat, &status, &boot, open_fds)
    }

    /// The sample from the texts of `/proc/self/stat`, `/proc/self/status`
    /// and `/proc/stat`.
    #[allow(clippy::cast_precision_loss)] // tick counts far below 2^53
    fn parse(stat: &str, status: &str, boot: &str, open_fds: usize) -> Option<Self> {
        // The command name (field 2) may hold spaces and parentheses: the
        // fields that follow start after its last `)`.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3 (state): field N is at index N - 3.
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        let ticks = field(14)? + field(15)?;
        let started_ticks = field(22)?;
        let resident_kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()?;
        let boot_time = boot
            .lines()
            .find_map(|line| line.strip_prefix("btime "))?
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(Self {
            cpu_seconds: ticks as f64 / TICKS_PER_SECOND,
            resident_bytes: resident_kib * 1024,
            open_fds: u64::try_from(open_fds).unwrap_or(u64::MAX),
            start_time_seconds: boot_time as f64 + started_ticks as f64 / TICKS_PER_SECOND,
        })
    }

    /// Appends the sample in the Prometheus text format.
    pub(crate) fn render(&self, out: &mut String) {
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            // Writing to a String cannot fail.
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        };
        metric(
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, in seconds.",
            self.cpu_seconds.to_string(),
        );
        metric(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            self.resident_bytes.to_string(),
        );
        metric(
            "process_open_fds",
            "gauge",
            "Open file descriptors.",
            self.open_fds.to_string(),
        );
        metric(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch, in seconds.",
            self.start_time_seconds.to_string(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_texts() {
        let stat = "1234 (tokencache (x)) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 8 0 500 12345 678 ...";
        let status = "Name:\ttokencache\nVmRSS:\t   2048 kB\nThreads:\t8\n";
        let boot = "cpu  1 2 3\nbtime 1700000000\nprocesses 10\n";
        let sample = ProcessSample::parse(stat, status, boot, 12).unwrap();
        assert_eq!(
            sample,
            ProcessSample {
                cpu_seconds: 3.0,
                resident_bytes: 2048 * 1024,
                open_fds: 12,
                start_time_seconds: 1_700_000_005.0,
            }
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let sample = ProcessSample::read().unwrap();
        assert!(sample.resident_bytes > 0 && sample.open_fds > 0);
        let mut text = String::new();
        sample.render(&mut text);
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"));
    }
}
