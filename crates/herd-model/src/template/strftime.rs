//! `strftime_now(format)`: templates put today's date into the system prompt (Llama 3.x, Granite,
//! Mistral). Python's `strftime` with glibc in the C locale is the reference; only the clock
//! itself differs: herd reads UTC (no time-zone database), Python's `datetime.now()` local time.

use std::time::{SystemTime, UNIX_EPOCH};

/// A wall-clock time for `strftime_now`; tests pass a fixed one so renderings are stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TemplateTime {
    pub year: i32,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

impl TemplateTime {
    /// The current time, UTC.
    pub fn now_utc() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Self::from_unix(secs)
    }

    /// Seconds since 1970-01-01T00:00:00 UTC.
    pub fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        TemplateTime {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS` (or just the date), as Python's `datetime.fromisoformat`.
    pub fn parse(s: &str) -> Option<Self> {
        let (date, time) = s.split_once(['T', ' ']).unwrap_or((s, "00:00:00"));
        let mut d = date.splitn(3, '-').map(|x| x.parse::<u32>().ok());
        let mut t = time.splitn(3, ':').map(|x| x.parse::<u32>().ok());
        let tt = TemplateTime {
            year: d.next()?? as i32,
            month: d.next()??,
            day: d.next()??,
            hour: t.next()??,
            minute: t.next().unwrap_or(Some(0))?,
            second: t.next().unwrap_or(Some(0))?,
        };
        let valid = (1..=12).contains(&tt.month)
            && tt.day >= 1
            && tt.day <= days_in_month(tt.year, tt.month)
            && tt.hour < 24
            && tt.minute < 60
            && tt.second < 60;
        valid.then_some(tt)
    }

    fn days(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day)
    }

    /// 0 = Monday.
    fn weekday(&self) -> usize {
        (self.days() + 3).rem_euclid(7) as usize // 1970-01-01 was a Thursday
    }

    fn day_of_year(&self) -> u32 {
        (self.days() - days_from_civil(self.year, 1, 1)) as u32 + 1
    }

    /// Python's `datetime.strftime(fmt)` (glibc, C locale), including glibc's `%-d` style flags
    /// (`-` no padding, `_` space padding, `0` zero padding) that templates use.
    pub fn strftime(&self, fmt: &str) -> String {
        let mut out = String::new();
        let mut chars = fmt.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let flag = match chars.peek() {
                Some(&f @ ('-' | '_' | '0')) => {
                    chars.next();
                    Some(f)
                }
                _ => None,
            };
            let Some(spec) = chars.next() else {
                out.push('%');
                break;
            };
            let num = |out: &mut String, n: i64, width: usize, pad: char| {
                let s = n.to_string();
                let (width, pad) = match flag {
                    Some('-') => (0, pad),
                    Some('_') => (width, ' '),
                    Some('0') => (width, '0'),
                    _ => (width, pad),
                };
                for _ in s.len()..width {
                    out.push(pad);
                }
                out.push_str(&s);
            };
            let hour12 = match self.hour % 12 {
                0 => 12,
                h => h,
            };
            let wd = self.weekday();
            match spec {
                'Y' => num(&mut out, self.year as i64, 0, '0'),
                'y' => num(&mut out, self.year.rem_euclid(100) as i64, 2, '0'),
                'C' => num(&mut out, self.year.div_euclid(100) as i64, 2, '0'),
                'm' => num(&mut out, self.month as i64, 2, '0'),
                'd' => num(&mut out, self.day as i64, 2, '0'),
                'e' => num(&mut out, self.day as i64, 2, ' '),
                'j' => num(&mut out, self.day_of_year() as i64, 3, '0'),
                'H' => num(&mut out, self.hour as i64, 2, '0'),
                'k' => num(&mut out, self.hour as i64, 2, ' '),
                'I' => num(&mut out, hour12 as i64, 2, '0'),
                'l' => num(&mut out, hour12 as i64, 2, ' '),
                'M' => num(&mut out, self.minute as i64, 2, '0'),
                'S' => num(&mut out, self.second as i64, 2, '0'),
                'u' => num(&mut out, wd as i64 + 1, 0, '0'),
                'w' => num(&mut out, ((wd + 1) % 7) as i64, 0, '0'),
                'B' => out.push_str(MONTHS[self.month as usize - 1]),
                'b' | 'h' => out.push_str(&MONTHS[self.month as usize - 1][..3]),
                'A' => out.push_str(WEEKDAYS[wd]),
                'a' => out.push_str(&WEEKDAYS[wd][..3]),
                'p' => out.push_str(if self.hour < 12 { "AM" } else { "PM" }),
                'P' => out.push_str(if self.hour < 12 { "am" } else { "pm" }),
                'F' => out.push_str(&self.strftime("%Y-%m-%d")),
                'D' | 'x' => out.push_str(&self.strftime("%m/%d/%y")),
                'T' | 'X' => out.push_str(&self.strftime("%H:%M:%S")),
                'R' => out.push_str(&self.strftime("%H:%M")),
                'c' => out.push_str(&self.strftime("%a %b %e %H:%M:%S %Y")),
                's' => num(
                    &mut out,
                    self.days() * 86_400
                        + (self.hour * 3600 + self.minute * 60 + self.second) as i64,
                    0,
                    '0',
                ),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                '%' => out.push('%'),
                // A naive datetime has no zone: Python prints nothing for these.
                'z' | 'Z' => {}
                other => {
                    // glibc prints an unknown conversion as written.
                    out.push('%');
                    if let Some(f) = flag {
                        out.push(f);
                    }
                    out.push(other);
                }
            }
        }
        out
    }
}

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's civil-calendar algorithms: exact for the proleptic Gregorian calendar.
fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y as i64 - 1 } else { y as i64 };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    ((if m <= 2 { y + 1 } else { y }) as i32, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python() {
        let t = TemplateTime::parse("2024-07-26T09:05:03").unwrap();
        assert_eq!(t.strftime("%d %b %Y"), "26 Jul 2024");
        assert_eq!(t.strftime("%B %-d, %Y"), "July 26, 2024");
        assert_eq!(t.strftime("%A %j %I:%M %p"), "Friday 208 09:05 AM");
        assert_eq!(t.strftime("%Y-%m-%d %H:%M:%S%z"), "2024-07-26 09:05:03");
        assert_eq!(t.strftime("%c"), "Fri Jul 26 09:05:03 2024");
        assert_eq!(TemplateTime::from_unix(1_721_984_703), t);
        assert_eq!(TemplateTime::parse("2024-02-30"), None);
    }
}
