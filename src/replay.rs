//! Replay for analytics: the log as NDJSON (one envelope per line, the same
//! JSON as a NATS message payload), filtered by position range, time range,
//! user, instance and event type; read from the SQLite log or from the
//! JetStream stream (an ordered consumer started at a sequence or a time).

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use crate::backbone::nats::{
    NO_INSTANCE_TOKEN, NO_USER_TOKEN, NatsBackbone, decode_envelope, first_sequence_after,
    subject_token,
};
use crate::store::{RecordedEvent, row_to_event};

/// Which events a replay writes. Every bound is optional; ranges are
/// inclusive except `until` (exclusive).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplayFilter {
    /// First global position (inclusive).
    pub from_position: Option<i64>,
    /// Last global position (inclusive).
    pub to_position: Option<i64>,
    /// Recorded at or after.
    pub since: Option<DateTime<Utc>>,
    /// Recorded before.
    pub until: Option<DateTime<Utc>>,
    /// Owning user id.
    pub user_id: Option<String>,
    /// Instance id.
    pub instance_id: Option<String>,
    /// Event types (any of them); empty = all.
    pub event_types: Vec<String>,
}

impl ReplayFilter {
    /// Whether an event passes every bound.
    pub fn matches(&self, e: &RecordedEvent) -> bool {
        self.from_position.is_none_or(|p| e.position >= p)
            && self.to_position.is_none_or(|p| e.position <= p)
            && self
                .since
                .is_none_or(|t| e.recorded_ms() >= t.timestamp_millis())
            && self
                .until
                .is_none_or(|t| e.recorded_ms() < t.timestamp_millis())
            && self
                .user_id
                .as_ref()
                .is_none_or(|u| e.user_id.as_ref() == Some(u))
            && self
                .instance_id
                .as_ref()
                .is_none_or(|i| e.instance_id.as_ref() == Some(i))
            && (self.event_types.is_empty() || self.event_types.contains(&e.event_type))
    }

    /// The narrowest single NATS filter subject covering the filter
    /// (`<prefix>.<user|*>.<instance|*>.<type|*>`); the rest is checked per event.
    pub fn nats_subject(&self, prefix: &str) -> String {
        let token = |v: &Option<String>, missing: &str| match v {
            Some(v) => subject_token(Some(v), missing),
            None => "*".to_string(),
        };
        let event_type = match self.event_types.as_slice() {
            [one] => subject_token(Some(one), "*"),
            _ => "*".to_string(),
        };
        format!(
            "{prefix}.{}.{}.{event_type}",
            token(&self.user_id, NO_USER_TOKEN),
            token(&self.instance_id, NO_INSTANCE_TOKEN)
        )
    }
}

/// Parses a time bound: RFC 3339 (`2025-01-31T00:00:00Z`) or unix milliseconds.
pub fn parse_time(v: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(ms) = v.trim().parse::<i64>() {
        return Ok(crate::store::ms_to_time(ms));
    }
    Ok(DateTime::parse_from_rfc3339(v.trim())
        .with_context(|| format!("{v:?} is neither RFC 3339 nor unix milliseconds"))?
        .with_timezone(&Utc))
}

const SELECT: &str = "SELECT position, event_id, stream_id, version, event_type, schema_version, \
     user_id, instance_id, data, metadata, recorded_at FROM events WHERE position > ";

/// Writes the matching events of the SQLite log as NDJSON; returns how many.
pub async fn from_log(
    pool: &SqlitePool,
    filter: &ReplayFilter,
    out: &mut dyn Write,
) -> anyhow::Result<u64> {
    let mut after = filter.from_position.map_or(0, |p| p - 1).max(0);
    let mut written = 0u64;
    loop {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(SELECT);
        qb.push_bind(after);
        if let Some(p) = filter.to_position {
            qb.push(" AND position <= ").push_bind(p);
        }
        if let Some(t) = filter.since {
            qb.push(" AND recorded_at >= ")
                .push_bind(t.timestamp_millis());
        }
        if let Some(t) = filter.until {
            qb.push(" AND recorded_at < ")
                .push_bind(t.timestamp_millis());
        }
        if let Some(u) = &filter.user_id {
            qb.push(" AND user_id = ").push_bind(u.clone());
        }
        if let Some(i) = &filter.instance_id {
            qb.push(" AND instance_id = ").push_bind(i.clone());
        }
        if !filter.event_types.is_empty() {
            qb.push(" AND event_type IN (");
            let mut list = qb.separated(", ");
            for t in &filter.event_types {
                list.push_bind(t.clone());
            }
            qb.push(")");
        }
        qb.push(" ORDER BY position LIMIT 2000");
        let rows = qb
            .build()
            .fetch_all(pool)
            .await
            .context("Failed to read the log")?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let event = row_to_event(row)?;
            after = event.position;
            write_line(out, &event)?;
            written += 1;
        }
    }
    out.flush()?;
    Ok(written)
}

/// Writes the matching events of the JetStream stream as NDJSON; returns how many.
pub async fn from_nats(
    nats: &NatsBackbone,
    filter: &ReplayFilter,
    out: &mut dyn Write,
) -> anyhow::Result<u64> {
    let mut stream = nats.stream().await?;
    let state = stream.info().await?.state.clone();
    if state.messages == 0 {
        return Ok(0);
    }
    let deliver_policy = if let Some(from) = filter.from_position {
        let start = first_sequence_after(&mut stream, from - 1).await?;
        if start > state.last_sequence {
            return Ok(0);
        }
        DeliverPolicy::ByStartSequence {
            start_sequence: start,
        }
    } else if let Some(since) = filter.since {
        // Publish time >= recorded time, so starting at `since` misses nothing.
        let nanos = i128::from(since.timestamp_millis()) * 1_000_000;
        DeliverPolicy::ByStartTime {
            start_time: async_nats::datetime::from_nanos(nanos)
                .map_err(|e| anyhow::anyhow!("bad start time: {e}"))?,
        }
    } else {
        DeliverPolicy::All
    };
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: filter.nats_subject(nats.subject_prefix()),
            deliver_policy,
            ..Default::default()
        })
        .await
        .context("Failed to create an ordered consumer")?;
    if consumer.cached_info().num_pending == 0 {
        return Ok(0);
    }
    let mut messages = consumer.messages().await?;
    let mut written = 0u64;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .context("the stream stopped delivering before the replay ended")?;
        let Some(msg) = next else {
            bail!("the ordered consumer ended early");
        };
        let msg = msg.map_err(|e| anyhow::anyhow!("reading the stream failed: {e}"))?;
        let pending = msg
            .info()
            .map_err(|e| anyhow::anyhow!("not a JetStream message: {e}"))?
            .pending;
        let event = decode_envelope(&msg.payload)?;
        if filter.to_position.is_some_and(|p| event.position > p) {
            break;
        }
        if filter.matches(&event) {
            write_line(out, &event)?;
            written += 1;
        }
        if pending == 0 {
            break;
        }
    }
    out.flush()?;
    Ok(written)
}

fn write_line(out: &mut dyn Write, event: &RecordedEvent) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, event)?;
    out.write_all(b"\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bounds_parse_from_rfc3339_or_unix_milliseconds() {
        let a = parse_time("2025-01-31T10:00:00Z").unwrap();
        let b = parse_time(&a.timestamp_millis().to_string()).unwrap();
        assert_eq!(a, b);
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn the_nats_filter_subject_narrows_to_what_one_subject_can_express() {
        let mut f = ReplayFilter {
            user_id: Some("u1".into()),
            ..Default::default()
        };
        assert_eq!(f.nats_subject("wa"), "wa.u1.*.*");
        f.instance_id = Some("i1".into());
        f.event_types = vec!["message_sent".into()];
        assert_eq!(f.nats_subject("wa"), "wa.u1.i1.message_sent");
        f.event_types.push("message_received".into());
        assert_eq!(f.nats_subject("wa"), "wa.u1.i1.*");
    }
}
