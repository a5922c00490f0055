//! Service hours (docs/api.md, "Support cases"; server config `[support]`): the vendor's
//! time zone, opening hours and working days, and the one piece of arithmetic that needs
//! them: how much service time lies between two instants. Pure: time comes in as values,
//! and the zone from the tz database (`/usr/share/zoneinfo`) when the config is read.

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::fmt;

/// The default time zone of the vendor.
pub const DEFAULT_TIME_ZONE: &str = "Asia/Taipei";
/// The default opening hours.
pub const DEFAULT_HOURS: &str = "09:00-20:00";
/// The default working days.
pub const DEFAULT_DAYS: &str = "mon-fri";

/// The longest span counted day by day (longer spans are cut at it): ten years.
const MAX_DAYS: i64 = 3660;

/// When the vendor answers: a time zone, daily opening hours, and working days.
#[derive(Debug, Clone)]
pub struct ServiceHours {
    zone_name: String,
    zone: TimeZone,
    open: Time,
    /// The closing time; `None`: midnight at the day's end (`24:00`).
    close: Option<Time>,
    /// Monday first.
    days: [bool; 7],
}

/// Why a `[support]` setting is refused (said in the config's words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceHoursError {
    /// An unknown time zone.
    #[error("[support] time_zone {0:?} is not a time zone this machine knows; use an IANA name such as \"Asia/Taipei\" or \"America/New_York\"")]
    TimeZone(String),
    /// Hours that do not parse or close before they open.
    #[error("[support] hours {0:?} is not an opening time and a closing time: write \"09:00-20:00\" (24-hour clock, opening before closing)")]
    Hours(String),
    /// Days that do not parse.
    #[error("[support] days {0:?} is not a list of weekdays: write \"mon-fri\", or days and ranges such as \"mon-fri,sat\" or \"sun,tue-thu\"")]
    Days(String),
}

fn weekday_index(name: &str) -> Option<usize> {
    let n = name.trim().to_ascii_lowercase();
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .position(|d| n == *d)
}

/// A clock time; `Ok(None)` is `24:00`, the end of the day.
fn parse_time(s: &str) -> Option<Option<Time>> {
    let (h, m) = s.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let h: i8 = h.parse().ok()?;
    let m: i8 = m.parse().ok()?;
    if h == 24 && m == 0 {
        return Some(None);
    }
    Time::new(h, m, 0, 0).ok().map(Some)
}

impl ServiceHours {
    /// Parses the three settings (`time_zone`, `hours`, `days`).
    pub fn parse(
        time_zone: &str,
        hours: &str,
        days: &str,
    ) -> Result<ServiceHours, ServiceHoursError> {
        let zone = TimeZone::get(time_zone.trim())
            .map_err(|_| ServiceHoursError::TimeZone(time_zone.to_owned()))?;
        let bad_hours = || ServiceHoursError::Hours(hours.to_owned());
        let (o, c) = hours.split_once('-').ok_or_else(bad_hours)?;
        let open = parse_time(o).flatten().ok_or_else(bad_hours)?;
        let close = parse_time(c).ok_or_else(bad_hours)?;
        if close.is_some_and(|c| open >= c) {
            return Err(bad_hours());
        }
        let bad_days = || ServiceHoursError::Days(days.to_owned());
        let mut set = [false; 7];
        for part in days.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (
                        weekday_index(a).ok_or_else(bad_days)?,
                        weekday_index(b).ok_or_else(bad_days)?,
                    );
                    // A range may wrap over the week's end (`fri-mon`).
                    let mut i = a;
                    loop {
                        set[i] = true;
                        if i == b {
                            break;
                        }
                        i = (i + 1) % 7;
                    }
                }
                None => set[weekday_index(part).ok_or_else(bad_days)?] = true,
            }
        }
        Ok(ServiceHours {
            zone_name: time_zone.trim().to_owned(),
            zone,
            open,
            close,
            days: set,
        })
    }

    /// The time zone's name.
    pub fn time_zone(&self) -> &str {
        &self.zone_name
    }

    fn is_service_day(&self, d: Date) -> bool {
        let i = match d.weekday() {
            Weekday::Monday => 0,
            Weekday::Tuesday => 1,
            Weekday::Wednesday => 2,
            Weekday::Thursday => 3,
            Weekday::Friday => 4,
            Weekday::Saturday => 5,
            Weekday::Sunday => 6,
        };
        self.days[i]
    }

    fn instant(&self, d: Date, t: Time) -> Option<Timestamp> {
        d.to_datetime(t)
            .to_zoned(self.zone.clone())
            .ok()
            .map(|z| z.timestamp())
    }

    fn closing(&self, d: Date) -> Option<Timestamp> {
        match self.close {
            Some(c) => self.instant(d, c),
            None => self.instant(d.tomorrow().ok()?, Time::midnight()),
        }
    }

    /// Seconds of service time in `[from, to)`: the parts of the span inside opening
    /// hours on working days, in the vendor's time zone (0 when `to` is not after
    /// `from`). Local days that a DST change makes shorter or longer count as they are.
    pub fn service_seconds(&self, from: Timestamp, to: Timestamp) -> i64 {
        if to <= from {
            return 0;
        }
        let first = from.to_zoned(self.zone.clone()).date();
        let last = to.to_zoned(self.zone.clone()).date();
        let mut total = 0i64;
        let mut day = first;
        let mut n = 0;
        while day <= last && n < MAX_DAYS {
            if self.is_service_day(day) {
                if let (Some(o), Some(c)) = (self.instant(day, self.open), self.closing(day)) {
                    let start = o.max(from);
                    let end = c.min(to);
                    if end > start {
                        total += end.duration_since(start).as_secs();
                    }
                }
            }
            match day.tomorrow() {
                Ok(d) => day = d,
                Err(_) => break,
            }
            n += 1;
        }
        total
    }
}

impl Default for ServiceHours {
    /// Asia/Taipei, 09:00-20:00, Monday to Friday (UTC+8 fixed if the tz database lacks it).
    fn default() -> Self {
        ServiceHours::parse(DEFAULT_TIME_ZONE, DEFAULT_HOURS, DEFAULT_DAYS).unwrap_or_else(|_| {
            ServiceHours {
                zone_name: DEFAULT_TIME_ZONE.to_owned(),
                zone: TimeZone::fixed(jiff::tz::offset(8)),
                open: Time::constant(9, 0, 0, 0),
                close: Some(Time::constant(20, 0, 0, 0)),
                days: [true, true, true, true, true, false, false],
            }
        })
    }
}

impl fmt::Display for ServiceHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let close = self
            .close
            .map_or_else(|| "24:00".to_owned(), |c| c.strftime("%H:%M").to_string());
        write!(
            f,
            "{}-{close} {}",
            self.open.strftime("%H:%M"),
            self.zone_name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn taipei() -> ServiceHours {
        ServiceHours::default()
    }

    const H: i64 = 3600;

    #[test]
    fn the_default_is_taipei_nine_to_eight_on_weekdays() {
        let h = taipei();
        assert_eq!(h.time_zone(), "Asia/Taipei");
        // 2026-12-07 is a Monday. 09:00 Taipei = 01:00Z; 20:00 Taipei = 12:00Z.
        assert_eq!(
            h.service_seconds(t("2026-12-07T01:00:00Z"), t("2026-12-07T12:00:00Z")),
            11 * H
        );
        // The whole Monday, midnight to midnight local: the same 11 hours.
        assert_eq!(
            h.service_seconds(t("2026-12-06T16:00:00Z"), t("2026-12-07T16:00:00Z")),
            11 * H
        );
    }

    #[test]
    fn evenings_and_before_opening_count_nothing() {
        let h = taipei();
        // Monday 21:00 to Tuesday 08:30 Taipei.
        assert_eq!(
            h.service_seconds(t("2026-12-07T13:00:00Z"), t("2026-12-08T00:30:00Z")),
            0
        );
        // Monday 19:30 to Tuesday 09:45 Taipei: 30 + 45 minutes.
        assert_eq!(
            h.service_seconds(t("2026-12-07T11:30:00Z"), t("2026-12-08T01:45:00Z")),
            75 * 60
        );
        // Opened before opening on Monday (07:00), answered at 09:10: ten minutes.
        assert_eq!(
            h.service_seconds(t("2026-12-06T23:00:00Z"), t("2026-12-07T01:10:00Z")),
            10 * 60
        );
    }

    #[test]
    fn weekends_count_nothing() {
        let h = taipei();
        // Friday 19:00 Taipei to Monday 10:00 Taipei: 1 h on Friday, 1 h on Monday.
        assert_eq!(
            h.service_seconds(t("2026-12-11T11:00:00Z"), t("2026-12-14T02:00:00Z")),
            2 * H
        );
        // All of Saturday and Sunday.
        assert_eq!(
            h.service_seconds(t("2026-12-11T16:00:00Z"), t("2026-12-13T16:00:00Z")),
            0
        );
        // A whole week: five days of eleven hours.
        assert_eq!(
            h.service_seconds(t("2026-12-06T16:00:00Z"), t("2026-12-13T16:00:00Z")),
            55 * H
        );
        assert_eq!(
            h.service_seconds(t("2026-12-08T00:00:00Z"), t("2026-12-07T00:00:00Z")),
            0
        );
    }

    #[test]
    fn the_zone_decides_which_day_it_is() {
        // Saturday 2026-12-12 00:30 UTC is Saturday 08:30 in Taipei: nothing until Monday,
        // but it is still Friday 19:30 in New York (EST, UTC-5).
        let ny = ServiceHours::parse("America/New_York", "09:00-20:00", "mon-fri").unwrap();
        let from = t("2026-12-12T00:30:00Z");
        let to = t("2026-12-12T01:30:00Z");
        assert_eq!(taipei().service_seconds(from, to), 0);
        assert_eq!(ny.service_seconds(from, to), 30 * 60);
    }

    #[test]
    fn a_dst_change_moves_opening_hours_in_utc() {
        let ny = ServiceHours::parse("America/New_York", "09:00-20:00", "mon-fri").unwrap();
        // Friday 2026-03-06 (EST, UTC-5): 09:00 local = 14:00Z.
        assert_eq!(
            ny.service_seconds(t("2026-03-06T14:00:00Z"), t("2026-03-06T15:00:00Z")),
            H
        );
        // Monday 2026-03-09 (EDT since Sunday, UTC-4): 09:00 local = 13:00Z.
        assert_eq!(
            ny.service_seconds(t("2026-03-09T13:00:00Z"), t("2026-03-09T14:00:00Z")),
            H
        );
        // Friday 13:00Z is before opening under EST: the same UTC hour counts nothing.
        assert_eq!(
            ny.service_seconds(t("2026-03-06T13:00:00Z"), t("2026-03-06T14:00:00Z")),
            0
        );
        // Friday 20:00 local to Monday 09:00 local over the DST weekend: nothing.
        assert_eq!(
            ny.service_seconds(t("2026-03-07T01:00:00Z"), t("2026-03-09T13:00:00Z")),
            0
        );
        // A service window across the night the clocks change (hours 00:00-24:00 every
        // day): Sunday 2026-03-08 has 23 hours in New York.
        let all = ServiceHours::parse("America/New_York", "00:00-24:00", "mon-sun").unwrap();
        assert_eq!(
            all.service_seconds(t("2026-03-08T05:00:00Z"), t("2026-03-09T04:00:00Z")),
            23 * H
        );
    }

    #[test]
    fn settings_are_checked_with_errors_in_the_configs_words() {
        assert_eq!(
            ServiceHours::parse("Mars/Olympus", "09:00-20:00", "mon-fri").unwrap_err(),
            ServiceHoursError::TimeZone("Mars/Olympus".into())
        );
        for bad in ["9-20", "20:00-09:00", "09:00", "09:00-25:00", "09:0-20:00"] {
            let e = ServiceHours::parse("Asia/Taipei", bad, "mon-fri").unwrap_err();
            assert_eq!(e, ServiceHoursError::Hours(bad.into()), "{bad}");
            assert!(e.to_string().contains("[support] hours"), "{e}");
        }
        for bad in ["", "monday", "mon-xyz", "mon,,fri"] {
            let e = ServiceHours::parse("Asia/Taipei", "09:00-20:00", bad).unwrap_err();
            assert_eq!(e, ServiceHoursError::Days(bad.into()), "{bad}");
        }
        let h = ServiceHours::parse("UTC", "10:00-12:00", "sat,fri-sun").unwrap();
        // Saturday 2026-12-12 10:00-12:00 UTC counts; Thursday does not.
        assert_eq!(
            h.service_seconds(t("2026-12-12T00:00:00Z"), t("2026-12-13T00:00:00Z")),
            2 * H
        );
        assert_eq!(
            h.service_seconds(t("2026-12-10T00:00:00Z"), t("2026-12-11T00:00:00Z")),
            0
        );
        assert_eq!(h.to_string(), "10:00-12:00 UTC");
    }
}
