//! When the heartbeat runs: the interval schedule and the active-hours window, as pure
//! functions of timestamps, so they are tested without waiting for a clock.
//!
//! Intervals are absolute durations (30 minutes are 30 real minutes, also across a DST
//! change); active hours are wall-clock times in the user's zone, so "08:00" is always
//! 08:00 on the kitchen clock, whatever the offset that day.

use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::config::{ActiveHours, parse_hhmm};

/// After a restart, a run that fell due while the daemon was down waits this long after
/// start. Soon enough that a missed check is not lost, late enough that a crash-looping
/// daemon does not call the model on every start, and the rest of the daemon (memory scan,
/// listener) comes up first.
pub const OVERDUE_DELAY: Duration = Duration::from_secs(5);

/// The timer thread never sleeps longer than this at once. Its sleep is measured on the
/// monotonic clock, which stands still while the machine is suspended and ignores wall
/// clock changes; waking now and then to re-read the wall clock keeps a due run from
/// waiting a whole extra interval after a resume. One wake-up every few minutes costs
/// nothing measurable.
pub const MAX_SLEEP: Duration = Duration::from_secs(5 * 60);

/// Local times of day during which timer runs may happen: `[start, end)` in minutes after
/// midnight. `start > end` spans midnight (`22:00`–`06:00`); `start == end` is the whole day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveWindow {
    pub start: u32,
    pub end: u32,
}

impl ActiveWindow {
    /// The window of `heartbeat.active_hours`; `None` when a time is not `HH:MM` (config
    /// validation refuses that before the daemon starts).
    pub fn from_config(hours: &ActiveHours) -> Option<ActiveWindow> {
        Some(ActiveWindow {
            start: parse_hhmm(&hours.start)?,
            end: parse_hhmm(&hours.end)?,
        })
    }

    /// Whether `minute` (after local midnight) is inside the window.
    pub fn contains_minute(&self, minute: u32) -> bool {
        if self.start < self.end {
            self.start <= minute && minute < self.end
        } else {
            // Spans midnight (or, with start == end, covers every minute).
            minute >= self.start || minute < self.end
        }
    }

    /// Whether the instant `ts` falls inside the window on the clocks of `zone`.
    pub fn contains(&self, ts: Timestamp, zone: &TimeZone) -> bool {
        let local = crate::clock::local(ts, zone);
        let minute = u32::try_from(local.hour()).unwrap_or(0) * 60
            + u32::try_from(local.minute()).unwrap_or(0);
        self.contains_minute(minute)
    }
}

impl fmt::Display for ActiveWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// When the next timer run is due.
///
/// `anchor` is when the latest run began (or was skipped), `started` when this daemon
/// started. `None` when the interval is zero (the timer is off). With no run yet, the first
/// is one interval after start; a run that fell due before start (the daemon was down) is
/// moved to [`OVERDUE_DELAY`] after start instead of happening at once.
pub fn next_run(
    anchor: Option<Timestamp>,
    started: Timestamp,
    interval: Duration,
) -> Option<Timestamp> {
    if interval.is_zero() {
        return None;
    }
    Some(match anchor {
        None => add(started, interval),
        Some(last) if last < started => add(last, interval).max(add(started, OVERDUE_DELAY)),
        Some(last) => add(last, interval),
    })
}

/// The schedule anchor a daemon starts with: the last persisted run, but never later than
/// the start itself. A run dated in the future means the wall clock went back since; taken
/// as is, it would hold the timer off until the clock caught up.
pub fn initial_anchor(last_run: Option<Timestamp>, started: Timestamp) -> Option<Timestamp> {
    last_run.map(|t| t.min(started))
}

/// How many whole intervals fit between `from` and `to` (ticks a run lasting that long
/// made the timer miss), and when the last of them fell due.
pub fn missed_ticks(
    from: Timestamp,
    to: Timestamp,
    interval: Duration,
) -> Option<(u32, Timestamp)> {
    if interval.is_zero() {
        return None;
    }
    let elapsed = until(from, to);
    let missed = u32::try_from(elapsed.as_nanos() / interval.as_nanos()).unwrap_or(u32::MAX);
    (missed > 0).then(|| (missed, add(from, interval.saturating_mul(missed))))
}

/// `ts + d`, saturating at the end of representable time.
pub fn add(ts: Timestamp, d: Duration) -> Timestamp {
    ts.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// The time from `from` until `to`; zero when `to` is not after `from`.
pub fn until(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn window(start: &str, end: &str) -> ActiveWindow {
        ActiveWindow::from_config(&ActiveHours {
            start: start.into(),
            end: end.into(),
        })
        .unwrap()
    }

    #[test]
    fn window_start_inclusive_end_exclusive() {
        let w = window("08:00", "22:00");
        assert!(!w.contains_minute(7 * 60 + 59));
        assert!(w.contains_minute(8 * 60));
        assert!(w.contains_minute(21 * 60 + 59));
        assert!(!w.contains_minute(22 * 60));
        assert_eq!(w.to_string(), "08:00-22:00");
    }

    #[test]
    fn window_over_midnight() {
        let w = window("22:30", "06:15");
        assert!(w.contains_minute(22 * 60 + 30));
        assert!(w.contains_minute(23 * 60 + 59));
        assert!(w.contains_minute(0));
        assert!(w.contains_minute(6 * 60 + 14));
        assert!(!w.contains_minute(6 * 60 + 15));
        assert!(!w.contains_minute(12 * 60));
        assert!(!w.contains_minute(22 * 60 + 29));
    }

    #[test]
    fn equal_start_and_end_is_all_day() {
        let w = window("09:00", "09:00");
        assert!((0..24 * 60).all(|m| w.contains_minute(m)));
    }

    #[test]
    fn window_uses_the_zone_clock() {
        let w = window("08:00", "22:00");
        let paris = TimeZone::get("Europe/Paris").unwrap();
        let tokyo = TimeZone::get("Asia/Tokyo").unwrap();
        // 06:30 UTC in January: 07:30 in Paris (outside), 15:30 in Tokyo (inside).
        let t = ts("2026-01-15T06:30:00Z");
        assert!(!w.contains(t, &paris));
        assert!(w.contains(t, &tokyo));
        assert!(!w.contains(t, &TimeZone::UTC));
        // The same UTC time in July is 08:30 in Paris (summer time): inside.
        assert!(w.contains(ts("2026-07-15T06:30:00Z"), &paris));
    }

    #[test]
    fn window_on_dst_days_in_a_named_zone() {
        let paris = TimeZone::get("Europe/Paris").unwrap();
        // 2026-03-29: clocks jump from 02:00 to 03:00 in Paris.
        let w = window("01:30", "03:00");
        assert!(w.contains(ts("2026-03-29T00:45:00Z"), &paris), "01:45 CET");
        assert!(
            !w.contains(ts("2026-03-29T01:00:00Z"), &paris),
            "03:00 CEST"
        );
        // A window opening inside the skipped hour opens when the clock shows 03:00.
        let w = window("02:30", "04:00");
        assert!(!w.contains(ts("2026-03-29T00:59:00Z"), &paris), "01:59 CET");
        assert!(w.contains(ts("2026-03-29T01:00:00Z"), &paris), "03:00 CEST");
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:15 happens twice, both inside.
        let w = window("02:00", "02:30");
        assert!(w.contains(ts("2026-10-25T00:15:00Z"), &paris), "02:15 CEST");
        assert!(w.contains(ts("2026-10-25T01:15:00Z"), &paris), "02:15 CET");
        assert!(!w.contains(ts("2026-10-25T01:45:00Z"), &paris), "02:45 CET");
        // New York too (2026-03-08, 02:00 -> 03:00 EDT).
        let ny = TimeZone::get("America/New_York").unwrap();
        let w = window("08:00", "22:00");
        assert!(!w.contains(ts("2026-03-08T11:59:00Z"), &ny), "06:59 EST");
        assert!(w.contains(ts("2026-03-08T12:00:00Z"), &ny), "08:00 EDT");
    }

    #[test]
    fn intervals_are_absolute_across_dst() {
        let paris = TimeZone::get("Europe/Paris").unwrap();
        let last = ts("2026-03-29T00:45:00Z"); // 01:45 CET
        let next = next_run(Some(last), last, Duration::from_secs(30 * 60)).unwrap();
        assert_eq!(next, ts("2026-03-29T01:15:00Z"));
        let local = crate::clock::local(next, &paris);
        assert_eq!(
            (local.hour(), local.minute()),
            (3, 15),
            "30 real minutes later"
        );
    }

    #[test]
    fn zero_interval_is_off() {
        let now = ts("2026-02-14T10:00:00Z");
        assert_eq!(next_run(None, now, Duration::ZERO), None);
        assert_eq!(next_run(Some(now), now, Duration::ZERO), None);
        assert_eq!(missed_ticks(now, now, Duration::ZERO), None);
    }

    #[test]
    fn first_run_is_one_interval_after_start() {
        let start = ts("2026-02-14T10:00:00Z");
        assert_eq!(
            next_run(None, start, Duration::from_secs(1800)),
            Some(ts("2026-02-14T10:30:00Z"))
        );
    }

    #[test]
    fn runs_follow_the_last_one() {
        let start = ts("2026-02-14T10:00:00Z");
        let last = ts("2026-02-14T10:42:10Z");
        assert_eq!(
            next_run(Some(last), start, Duration::from_secs(1800)),
            Some(ts("2026-02-14T11:12:10Z"))
        );
    }

    #[test]
    fn after_a_restart_the_schedule_continues_from_the_last_run() {
        let last = ts("2026-02-14T10:00:00Z");
        let start = ts("2026-02-14T10:05:00Z");
        assert_eq!(
            next_run(Some(last), start, Duration::from_secs(1800)),
            Some(ts("2026-02-14T10:30:00Z"))
        );
    }

    #[test]
    fn an_overdue_run_waits_a_short_fixed_delay_after_start() {
        let last = ts("2026-02-14T08:00:00Z");
        let start = ts("2026-02-14T10:05:00Z");
        let next = next_run(Some(last), start, Duration::from_secs(1800)).unwrap();
        assert_eq!(next, add(start, OVERDUE_DELAY));
        // Just barely due before the delay ends: still not before it.
        let last = ts("2026-02-14T09:35:01Z");
        let next = next_run(Some(last), start, Duration::from_secs(1800)).unwrap();
        assert_eq!(next, add(start, OVERDUE_DELAY));
    }

    #[test]
    fn a_future_last_run_does_not_hold_the_timer_off() {
        let start = ts("2026-02-14T10:00:00Z");
        let future = ts("2026-02-15T10:00:00Z");
        let anchor = initial_anchor(Some(future), start);
        assert_eq!(anchor, Some(start));
        assert_eq!(
            next_run(anchor, start, Duration::from_secs(60)),
            Some(ts("2026-02-14T10:01:00Z"))
        );
        let past = ts("2026-02-14T09:00:00Z");
        assert_eq!(initial_anchor(Some(past), start), Some(past));
    }

    #[test]
    fn missed_ticks_of_a_long_run() {
        let from = ts("2026-02-14T10:00:00Z");
        let i = Duration::from_secs(600);
        assert_eq!(missed_ticks(from, ts("2026-02-14T10:09:59Z"), i), None);
        assert_eq!(
            missed_ticks(from, ts("2026-02-14T10:10:00Z"), i),
            Some((1, ts("2026-02-14T10:10:00Z")))
        );
        assert_eq!(
            missed_ticks(from, ts("2026-02-14T10:35:00Z"), i),
            Some((3, ts("2026-02-14T10:30:00Z")))
        );
        assert_eq!(missed_ticks(from, ts("2026-02-14T09:00:00Z"), i), None);
    }
}
