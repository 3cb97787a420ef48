//! The system clock as a UTC calendar time, without a time-zone database: what the herd's
//! records, the server's error log and the lab's reports print.

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC calendar time, to the second.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct UtcTime {
    /// The year (proleptic Gregorian).
    pub year: i64,
    /// 1 to 12.
    pub month: u32,
    /// 1 to 31.
    pub day: u32,
    /// 0 to 23.
    pub hour: u32,
    /// 0 to 59.
    pub minute: u32,
    /// 0 to 59 (no leap seconds: Unix time has none).
    pub second: u32,
}

impl UtcTime {
    /// The clock now.
    pub fn now() -> UtcTime {
        UtcTime::at(SystemTime::now())
    }

    /// `t` as a calendar time (a time before 1970 is taken as 1970-01-01 00:00:00).
    pub fn at(t: SystemTime) -> UtcTime {
        UtcTime::from_unix(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64)
    }

    /// Seconds since 1970-01-01 00:00:00 UTC as a calendar time.
    pub fn from_unix(secs: i64) -> UtcTime {
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        // Days to a civil date (Howard Hinnant's `civil_from_days`): count in 400-year eras of
        // 146,097 days from 0000-03-01, so that the leap day ends each year of the count.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        UtcTime {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::UtcTime;

    fn ymdhms(t: UtcTime) -> (i64, u32, u32, u32, u32, u32) {
        (t.year, t.month, t.day, t.hour, t.minute, t.second)
    }

    #[test]
    fn known_instants() {
        assert_eq!(ymdhms(UtcTime::from_unix(0)), (1970, 1, 1, 0, 0, 0));
        assert_eq!(ymdhms(UtcTime::from_unix(951_782_400)), (2000, 2, 29, 0, 0, 0));
        assert_eq!(ymdhms(UtcTime::from_unix(1_796_247_228)), (2026, 12, 2, 21, 33, 48));
        assert_eq!(ymdhms(UtcTime::from_unix(4_102_444_799)), (2099, 12, 31, 23, 59, 59));
    }
}
