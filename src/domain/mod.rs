//! The command side: validates requests into domain values, decides which
//! events happen, and appends them together with the state-table changes
//! they announce.

pub mod instances;
pub mod types;
pub mod users;

use chrono::{DateTime, SecondsFormat, Utc};

/// The time format of every API timestamp: `2023-01-01T00:00:00.000Z`.
pub fn api_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Unix milliseconds as an API timestamp.
pub fn api_time_ms(ms: i64) -> String {
    api_time(crate::store::ms_to_time(ms))
}
