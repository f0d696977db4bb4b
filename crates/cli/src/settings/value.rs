//! The kinds of value a setting holds: how one is read from text (a flag,
//! a variable and a config file all give text) and how a default is shown
//! in `--help` and the README.

use std::net::SocketAddr;
use std::num::NonZero;
use std::path::PathBuf;
use std::time::Duration;

use tokencache_core::MinRemaining;

use crate::store::StoreSpec;

/// A value a setting can hold.
pub trait SettingValue: Sized {
    /// How `--help` names a value of this kind: `--listen <ADDR>`.
    const VALUE_NAME: &'static str;

    /// Reads a value. The message says what is wrong; it may quote the
    /// text, so a kind that can carry a secret must not.
    ///
    /// # Errors
    /// Text that is not such a value.
    fn parse(text: &str) -> Result<Self, String>;

    /// The value as a user writes it (`64MiB`, `5s`, `10%`).
    fn show(&self) -> String;
}

impl SettingValue for bool {
    const VALUE_NAME: &'static str = "true|false";

    fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err("must be true or false".to_owned()),
        }
    }

    fn show(&self) -> String {
        self.to_string()
    }
}

impl SettingValue for String {
    const VALUE_NAME: &'static str = "TEXT";

    fn parse(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }

    fn show(&self) -> String {
        self.clone()
    }
}

impl SettingValue for PathBuf {
    const VALUE_NAME: &'static str = "FILE";

    fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("is empty".to_owned());
        }
        Ok(PathBuf::from(text))
    }

    fn show(&self) -> String {
        self.display().to_string()
    }
}

impl SettingValue for SocketAddr {
    const VALUE_NAME: &'static str = "ADDR";

    fn parse(text: &str) -> Result<Self, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("`{text}` is not an address such as 127.0.0.1:8080"))
    }

    fn show(&self) -> String {
        self.to_string()
    }
}

impl SettingValue for f64 {
    const VALUE_NAME: &'static str = "NUMBER";

    fn parse(text: &str) -> Result<Self, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("`{text}` is not a number"))
    }

    fn show(&self) -> String {
        self.to_string()
    }
}

/// Whole numbers: `u32`, `usize`.
macro_rules! whole_number {
    ($($number:ty),*) => {$(
        impl SettingValue for $number {
    const VALUE_NAME: &'static str = "N";

            fn parse(text: &str) -> Result<Self, String> {
                text.trim()
                    .parse()
                    .map_err(|_| format!("`{text}` is not a whole number"))
            }

            fn show(&self) -> String {
                self.to_string()
            }
        }

        impl SettingValue for NonZero<$number> {
    const VALUE_NAME: &'static str = "N";

            fn parse(text: &str) -> Result<Self, String> {
                NonZero::new(<$number>::parse(text)?).ok_or_else(|| "must be at least 1".to_owned())
            }

            fn show(&self) -> String {
                self.get().to_string()
            }
        }
    )*};
}

whole_number!(u32, usize);

impl SettingValue for Duration {
    const VALUE_NAME: &'static str = "DURATION";

    fn parse(text: &str) -> Result<Self, String> {
        humantime::parse_duration(text.trim()).map_err(|error| format!("`{text}`: {error}"))
    }

    fn show(&self) -> String {
        show_duration(*self)
    }
}

/// A duration that must be more than zero (a timer of zero would close
/// every connection at once, a cache life of zero would cache nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonZeroDuration(pub Duration);

impl SettingValue for NonZeroDuration {
    const VALUE_NAME: &'static str = "DURATION";

    fn parse(text: &str) -> Result<Self, String> {
        let duration = Duration::parse(text)?;
        if duration.is_zero() {
            return Err("must be more than zero".to_owned());
        }
        Ok(Self(duration))
    }

    fn show(&self) -> String {
        show_duration(self.0)
    }
}

/// A rate per second: a finite number, zero or more.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate(pub f64);

impl SettingValue for Rate {
    const VALUE_NAME: &'static str = "PER_SECOND";

    fn parse(text: &str) -> Result<Self, String> {
        match f64::parse(text) {
            Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(Self(rate)),
            _ => Err("must be a non-negative number (0: unlimited)".to_owned()),
        }
    }

    fn show(&self) -> String {
        self.0.show()
    }
}

/// How many threads serve the token listener: `auto` (one per core, the
/// default), `0` (one shared multi-threaded runtime) or a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerThreads {
    /// One per core this process may run on.
    Auto,
    /// This many (0: the shared runtime).
    Count(usize),
}

impl WorkerThreads {
    /// The count: `Auto` is the cores this process may run on.
    #[must_use]
    pub fn resolve(self) -> usize {
        match self {
            Self::Auto => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            Self::Count(count) => count,
        }
    }
}

impl SettingValue for WorkerThreads {
    const VALUE_NAME: &'static str = "THREADS";

    fn parse(text: &str) -> Result<Self, String> {
        if text == "auto" {
            return Ok(Self::Auto);
        }
        text.parse()
            .map(Self::Count)
            .map_err(|_| "must be `auto` or a whole number of threads".to_owned())
    }

    fn show(&self) -> String {
        match self {
            Self::Auto => "auto".to_owned(),
            Self::Count(count) => count.to_string(),
        }
    }
}

/// A price: a finite number, zero or more, in whatever currency the
/// operator reads it in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price(pub f64);

impl SettingValue for Price {
    const VALUE_NAME: &'static str = "PRICE";

    fn parse(text: &str) -> Result<Self, String> {
        match f64::parse(text) {
            Ok(price) if price.is_finite() && price >= 0.0 => Ok(Self(price)),
            _ => Err("must be a non-negative number".to_owned()),
        }
    }

    fn show(&self) -> String {
        self.0.show()
    }
}

/// A number of bytes, written bare or with a unit (`512KiB`, `64MiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl SettingValue for ByteSize {
    const VALUE_NAME: &'static str = "SIZE";

    fn parse(text: &str) -> Result<Self, String> {
        let bytes =
            parse_byte_size(text).ok_or_else(|| format!("`{text}` is not a size such as 64MiB"))?;
        usize::try_from(bytes)
            .map(Self)
            .map_err(|_| "too large".to_owned())
    }

    fn show(&self) -> String {
        let bytes = self.0;
        for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
            if bytes != 0 && bytes.trailing_zeros() >= shift {
                return format!("{}{unit}", bytes >> shift);
            }
        }
        bytes.to_string()
    }
}

impl SettingValue for MinRemaining {
    const VALUE_NAME: &'static str = "SHARE|DURATION";

    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(percent) = text.strip_suffix('%') {
            let value: f64 = percent
                .trim()
                .parse()
                .map_err(|_| format!("`{text}` is not a percentage"))?;
            return Ok(Self::Fraction(value / 100.0));
        }
        humantime::parse_duration(text)
            .map(Self::Duration)
            .map_err(|_| format!("`{text}` is neither a percentage (10%) nor a duration (30s)"))
    }

    fn show(&self) -> String {
        match *self {
            // Rounded so that 0.1 shows as 10%, not 10.000000000000002%.
            Self::Fraction(fraction) => format!("{}%", (fraction * 1e11).round() / 1e9),
            Self::Duration(duration) => show_duration(duration),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line, for log pipelines.
    Json,
}

impl SettingValue for LogFormat {
    const VALUE_NAME: &'static str = "human|json";

    fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "human" => Ok(Self::Human),
            "json" => Ok(Self::Json),
            _ => Err(format!("`{text}` is neither `human` nor `json`")),
        }
    }

    fn show(&self) -> String {
        match self {
            Self::Human => "human",
            Self::Json => "json",
        }
        .to_owned()
    }
}

/// A URL, kept as text: it is parsed where it is used, by a parser whose
/// messages do not quote it (it may carry credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlText(pub String);

impl SettingValue for UrlText {
    const VALUE_NAME: &'static str = "URL";

    fn parse(text: &str) -> Result<Self, String> {
        Ok(Self(text.trim().to_owned()))
    }

    fn show(&self) -> String {
        self.0.clone()
    }
}

impl SettingValue for StoreSpec {
    const VALUE_NAME: &'static str = "URL";

    /// The message never quotes the URL: it may hold a password.
    fn parse(text: &str) -> Result<Self, String> {
        StoreSpec::parse(text)
    }

    fn show(&self) -> String {
        format!("{self:?}")
    }
}

/// `1048576`, `512KiB`, `64MiB`, `1GiB` (also `K`, `M`, `G`, `KB`, `MB`,
/// `GB` as powers of 1024, which is what a memory budget means).
fn parse_byte_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return None,
    };
    number.checked_mul(1 << shift)
}

/// The largest unit that divides the duration exactly: `1d`, `30s`,
/// `500ms`; what `humantime` reads back.
fn show_duration(duration: Duration) -> String {
    if !duration.subsec_nanos().is_multiple_of(1_000_000) {
        return humantime::format_duration(duration).to_string();
    }
    let millis = duration.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if millis >= size && millis.is_multiple_of(size) {
            return format!("{}{unit}", millis / size);
        }
    }
    "0s".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_threads() {
        assert_eq!(WorkerThreads::parse("auto"), Ok(WorkerThreads::Auto));
        assert_eq!(WorkerThreads::parse("0"), Ok(WorkerThreads::Count(0)));
        assert_eq!(WorkerThreads::parse("4").map(WorkerThreads::resolve), Ok(4));
        assert!(WorkerThreads::parse("many").is_err());
        assert!(WorkerThreads::parse("-1").is_err());
        assert_eq!(WorkerThreads::Auto.show(), "auto");
        assert!(WorkerThreads::Auto.resolve() >= 1);
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("1024"), Some(1024));
        assert_eq!(parse_byte_size("16KiB"), Some(16 << 10));
        assert_eq!(parse_byte_size("64 MiB"), Some(64 << 20));
        assert_eq!(parse_byte_size("1g"), Some(1 << 30));
        assert_eq!(parse_byte_size("MiB"), None);
        assert_eq!(parse_byte_size("-1"), None);
        for (bytes, shown) in [(64 << 20, "64MiB"), (16 << 10, "16KiB"), (1000, "1000")] {
            assert_eq!(ByteSize(bytes).show(), shown);
            assert_eq!(ByteSize::parse(shown), Ok(ByteSize(bytes)));
        }
    }

    #[test]
    fn min_remaining_forms() {
        assert_eq!(
            MinRemaining::parse("10%").unwrap(),
            MinRemaining::Fraction(0.1)
        );
        assert_eq!(
            MinRemaining::parse("90s").unwrap(),
            MinRemaining::Duration(Duration::from_secs(90))
        );
        assert_eq!(MinRemaining::Fraction(0.1).show(), "10%");
        assert!(MinRemaining::parse("lots").is_err());
    }

    #[test]
    fn durations_show_as_they_are_written() {
        for (duration, shown) in [
            (Duration::from_secs(86_400), "1d"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(120), "2m"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(duration.show(), shown);
            assert_eq!(Duration::parse(shown), Ok(duration), "{shown}");
        }
    }

    #[test]
    fn checked_kinds() {
        assert!(NonZero::<u32>::parse("0").is_err());
        assert_eq!(NonZero::<u32>::parse(" 3 ").map(NonZero::get), Ok(3));
        assert!(NonZeroDuration::parse("0s").is_err());
        assert!(Rate::parse("-1").is_err());
        assert!(Rate::parse("inf").is_err());
        assert_eq!(Rate::parse("0"), Ok(Rate(0.0)));
        assert_eq!(LogFormat::parse("JSON"), Ok(LogFormat::Json));
        assert!(SocketAddr::parse("5").is_err());
    }
}
