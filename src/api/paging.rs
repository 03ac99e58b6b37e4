//! Query parameters shared by the read endpoints: pagination, ISO 8601 date
//! ranges and statistics periods. Every bad value is a 400 with a message.

use chrono::{DateTime, Days, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use poem_openapi::{Enum, Object};

use crate::error::ApiError;

/// The largest page any list endpoint returns.
pub const MAX_LIMIT: i64 = 1_000;

/// Where a page sits in the whole list.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase")]
pub struct Pagination {
    /// Entries matching the filters.
    pub total: i64,
    pub limit: i64,
    pub skip: i64,
    /// Whether entries follow this page.
    pub has_more: bool,
}

impl Pagination {
    /// The pagination of a page at `skip` of `limit` entries out of `total`.
    pub fn new(total: i64, limit: i64, skip: i64) -> Self {
        Self {
            total,
            limit,
            skip,
            has_more: skip.saturating_add(limit) < total,
        }
    }
}

/// `limit` (1 to [`MAX_LIMIT`], `default` when absent) and `skip` (>= 0, default 0).
pub fn page_bounds(
    limit: Option<i64>,
    skip: Option<i64>,
    default: i64,
) -> Result<(i64, i64), ApiError> {
    let limit = limit.unwrap_or(default);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}, got {limit}"
        )));
    }
    let skip = skip.unwrap_or(0);
    if skip < 0 {
        return Err(ApiError::bad_request(format!(
            "skip must be 0 or more, got {skip}"
        )));
    }
    Ok((limit, skip))
}

/// Parses an ISO 8601 date or date-time into unix milliseconds. Accepted:
/// `2023-01-01T12:00:00.000Z`, `2023-01-01T12:00:00+03:00`, `2023-01-01T12:00:00`
/// (UTC) and `2023-01-01` (the start of that UTC day; with `end_of_day`, its
/// last millisecond, so a bare end date includes the whole day).
pub fn parse_instant(raw: &str, name: &str, end_of_day: bool) -> Result<i64, ApiError> {
    let s = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc).timestamp_millis());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Ok(t.and_utc().timestamp_millis());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let start = d.and_time(NaiveTime::MIN).and_utc().timestamp_millis();
        return Ok(if end_of_day {
            start + 86_400_000 - 1
        } else {
            start
        });
    }
    Err(ApiError::bad_request(format!(
        "{name} must be an ISO 8601 date or date-time (e.g. 2023-01-01 or 2023-01-01T12:00:00.000Z), got {raw:?}"
    )))
}

/// `startDate` and `endDate` as inclusive unix-millisecond bounds; the start
/// must not be after the end.
pub fn date_range(
    start: Option<&str>,
    end: Option<&str>,
) -> Result<(Option<i64>, Option<i64>), ApiError> {
    let start = start
        .filter(|s| !s.is_empty())
        .map(|s| parse_instant(s, "startDate", false))
        .transpose()?;
    let end = end
        .filter(|s| !s.is_empty())
        .map(|s| parse_instant(s, "endDate", true))
        .transpose()?;
    if let (Some(s), Some(e)) = (start, end)
        && s > e
    {
        return Err(ApiError::bad_request("startDate must not be after endDate"));
    }
    Ok((start, end))
}

/// A statistics period, in whole UTC days ending today.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum Period {
    /// Today (UTC).
    Today,
    /// The last 7 days, today included.
    Week,
    /// The last 30 days, today included.
    Month,
    /// The last 365 days, today included.
    Year,
    /// Everything recorded.
    All,
}

impl Period {
    /// The first day of the period, or `None` for all time.
    pub fn first_day(self, today: NaiveDate) -> Option<NaiveDate> {
        let back = match self {
            Period::Today => 0,
            Period::Week => 6,
            Period::Month => 29,
            Period::Year => 364,
            Period::All => return None,
        };
        today.checked_sub_days(Days::new(back))
    }
}

/// A day as the statistics store it (`YYYY-MM-DD`).
pub fn day_key(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

/// A day as the API shows it: `2023-01-01T00:00:00.000Z`.
pub fn day_time(day: NaiveDate) -> String {
    crate::domain::api_time(day.and_time(NaiveTime::MIN).and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_end_dates_include_the_whole_day() {
        let start = parse_instant("2023-01-01", "startDate", false).unwrap();
        let end = parse_instant("2023-01-01", "endDate", true).unwrap();
        assert_eq!(end - start, 86_400_000 - 1);
        assert_eq!(
            parse_instant("2023-01-01T00:00:00.000Z", "startDate", false).unwrap(),
            start
        );
        assert_eq!(
            parse_instant("2023-01-01T03:00:00+03:00", "startDate", false).unwrap(),
            start
        );
    }

    #[test]
    fn malformed_dates_and_reversed_ranges_are_refused() {
        for bad in [
            "yesterday",
            "2023-13-01",
            "2023-01-01T25:00:00Z",
            "1672531200",
        ] {
            assert!(parse_instant(bad, "startDate", false).is_err(), "{bad}");
        }
        assert!(date_range(Some("2023-01-02"), Some("2023-01-01")).is_err());
        assert!(date_range(Some("2023-01-01"), Some("2023-01-01")).is_ok());
    }

    #[test]
    fn pages_know_whether_more_follow() {
        assert!(Pagination::new(150, 100, 0).has_more);
        assert!(!Pagination::new(150, 100, 100).has_more);
        assert!(!Pagination::new(100, 100, 0).has_more);
        assert!(page_bounds(Some(0), None, 50).is_err());
        assert!(page_bounds(Some(1001), None, 50).is_err());
        assert!(page_bounds(None, Some(-1), 50).is_err());
        assert_eq!(page_bounds(None, None, 50).unwrap(), (50, 0));
    }

    #[test]
    fn periods_end_today_and_count_whole_days() {
        let today = NaiveDate::from_ymd_opt(2024, 3, 1).unwrap();
        assert_eq!(Period::Today.first_day(today), Some(today));
        assert_eq!(
            Period::Week.first_day(today),
            NaiveDate::from_ymd_opt(2024, 2, 24)
        );
        assert_eq!(
            Period::Month.first_day(today),
            NaiveDate::from_ymd_opt(2024, 2, 1)
        );
        assert_eq!(Period::All.first_day(today), None);
    }
}
