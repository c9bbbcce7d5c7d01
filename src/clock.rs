//! Wall-clock time and the user's time zone, behind a seam so timer logic can be tested
//! without waiting.

use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime};

/// Where "now" comes from.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// `ts` in `tz`.
pub fn local(ts: Timestamp, tz: &TimeZone) -> ZonedDateTime {
    ts.to_zoned_datetime(tz.clone())
}

/// RFC 3339 UTC with second precision, e.g. `2026-02-14T10:30:00Z`.
pub fn rfc3339(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_seconds() {
        let ts: Timestamp = "2026-02-14T10:30:00.123Z".parse().unwrap();
        assert_eq!(rfc3339(ts), "2026-02-14T10:30:00Z");
    }

    #[test]
    fn named_zone_applies() {
        let ts: Timestamp = "2026-07-01T12:00:00Z".parse().unwrap();
        let paris = local(ts, &jiff::tz::TimeZone::get("Europe/Paris").unwrap());
        assert_eq!(paris.datetime().hour(), 14);
    }
}
