//! `/api/stats/…`: usage statistics of the caller, of one instance, and of
//! the whole system (admins).

use std::collections::BTreeMap;

use chrono::{Days, NaiveDate, Utc};
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::{Object, OpenApi, payload::Json};

use crate::api::AppState;
use crate::domain::{instances, users};
use crate::error::ApiResult;
use crate::projections::stats::{self, Usage};
use crate::whatsapp::ConnState;

use super::paging::{Period, day_key, day_time};
use super::security::{Auth, Tag, owned_instance};

/// A user is active when they did something in this many days, today included.
pub const ACTIVE_USER_DAYS: u64 = 30;

/// The seven usage counters of the seed, as every statistics answer shows them.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct UsageCounters {
    pub messages_sent: i64,
    pub messages_received: i64,
    pub media_sent: i64,
    pub media_received: i64,
    /// Bytes of media sent and received.
    pub total_media_size: i64,
    pub api_calls: i64,
    /// Webhooks delivered (answered 2xx).
    pub webhook_sent: i64,
}

impl From<Usage> for UsageCounters {
    fn from(u: Usage) -> Self {
        Self {
            messages_sent: u.messages_sent,
            messages_received: u.messages_received,
            media_sent: u.media_sent,
            media_received: u.media_received,
            total_media_size: u.media_bytes,
            api_calls: u.api_calls,
            webhook_sent: u.webhook_sent,
        }
    }
}

/// A user's counters over the period, all their instances together.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct UserTotals {
    #[oai(flatten)]
    pub counters: UsageCounters,
    /// The user's instances now.
    pub instance_count: i64,
}

/// One instance's counters over the period.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct InstanceUsage {
    pub instance_id: String,
    pub name: String,
    #[oai(flatten)]
    pub counters: UsageCounters,
}

/// The caller's statistics.
#[derive(Object)]
pub struct UserStats {
    pub total: UserTotals,
    pub instances: Vec<InstanceUsage>,
}

/// One UTC day of an instance.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct DailyStat {
    /// The day's start, `2023-01-01T00:00:00.000Z`.
    pub date: String,
    pub messages_sent: i64,
    pub messages_received: i64,
    pub media_sent: i64,
    pub media_received: i64,
}

/// An instance's counters over the period, and per day.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct InstanceUsageDetail {
    #[oai(flatten)]
    pub counters: UsageCounters,
    /// Every day of the period, oldest first (days without traffic count zero).
    pub daily_stats: Vec<DailyStat>,
    /// Messages over the period per kind (`text`, `image`, `video`,
    /// `audio`, `voice`, `document`, `sticker`, `location`, `contact`,
    /// `poll`, `other`); kinds without messages are absent. Reactions,
    /// edits, deletes and poll votes are not messages.
    pub messages_by_kind: MessagesByKind,
}

/// Message counts per kind, sent and received.
#[derive(Object)]
pub struct MessagesByKind {
    pub sent: std::collections::BTreeMap<String, i64>,
    pub received: std::collections::BTreeMap<String, i64>,
}

/// An instance's statistics.
#[derive(Object)]
pub struct InstanceStats {
    pub usage: InstanceUsageDetail,
}

/// A total and how many of it are active.
#[derive(Object)]
pub struct ActiveCount {
    pub total: i64,
    pub active: i64,
}

/// The system's counters.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct SystemUsage {
    #[oai(flatten)]
    pub counters: UsageCounters,
}

/// The whole system's statistics.
#[derive(Object)]
pub struct SystemStats {
    /// Instances now; active = connected to WhatsApp now.
    pub instances: ActiveCount,
    /// Users now; active = an API call, or a message sent or received by one
    /// of their instances, in the last 30 days.
    pub users: ActiveCount,
    pub usage: SystemUsage,
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

fn since(period: Period) -> Option<String> {
    period.first_day(today()).map(day_key)
}

/// Usage statistics.
pub struct StatsApi;

#[OpenApi(tag = "Tag::Stats")]
impl StatsApi {
    /// The caller's usage over a period (`week`, `month` (default), `year`,
    /// `all`; `today` also works): totals over all their instances (deleted
    /// ones and API calls outside any instance included) and per current instance.
    #[oai(path = "/api/stats/user", method = "get")]
    async fn user(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        /// UTC days ending today: `today`, `week` (7), `month` (30), `year` (365) or `all`.
        period: Query<Option<Period>>,
    ) -> ApiResult<Json<UserStats>> {
        let since = since(period.0.unwrap_or(Period::Month));
        let mine = instances::list_for_user(state.store.pool(), auth.id()).await?;
        let by_instance =
            stats::user_by_instance(&state.views, auth.id().as_str(), since.as_deref()).await?;
        let t = stats::total(by_instance.values());
        let instances = mine
            .into_iter()
            .map(|i| {
                let u = by_instance.get(i.id.as_str()).copied().unwrap_or_default();
                InstanceUsage {
                    instance_id: i.id.into_string(),
                    name: i.name,
                    counters: u.into(),
                }
            })
            .collect::<Vec<_>>();
        Ok(Json(UserStats {
            total: UserTotals {
                counters: t.into(),
                instance_count: instances.len() as i64,
            },
            instances,
        }))
    }

    /// One instance's usage over a period (`today` (default), `week`,
    /// `month`, `all`; `year` also works), with one entry per day.
    #[oai(path = "/api/stats/instances/:instanceId", method = "get")]
    async fn instance(
        &self,
        state: Data<&AppState>,
        #[oai(name = "instanceId")] owned: owned_instance::Path,
        /// UTC days ending today: `today`, `week` (7), `month` (30), `year` (365) or `all`.
        period: Query<Option<Period>>,
    ) -> ApiResult<Json<InstanceStats>> {
        let period = period.0.unwrap_or(Period::Today);
        let today = today();
        let first = period.first_day(today);
        let days = stats::instance_daily(
            &state.views,
            owned.id().as_str(),
            first.map(day_key).as_deref(),
        )
        .await?;
        let t = stats::total(days.iter().map(|(_, u)| u));
        let mut by_kind = MessagesByKind {
            sent: Default::default(),
            received: Default::default(),
        };
        let kinds = stats::instance_kinds(
            &state.views,
            owned.id().as_str(),
            first.map(day_key).as_deref(),
        )
        .await?;
        for ((direction, kind), n) in kinds {
            let side = if direction == "sent" {
                &mut by_kind.sent
            } else {
                &mut by_kind.received
            };
            side.insert(kind, n);
        }
        Ok(Json(InstanceStats {
            usage: InstanceUsageDetail {
                counters: t.into(),
                daily_stats: daily(&days, first, today),
                messages_by_kind: by_kind,
            },
        }))
    }

    /// The whole system (admins only): instances (active = connected now),
    /// users (active = activity in the last 30 days) and all-time usage
    /// (`period` narrows it).
    #[oai(path = "/api/stats/system", method = "get")]
    async fn system(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        /// UTC days ending today: `today`, `week` (7), `month` (30), `year` (365) or `all` (default).
        period: Query<Option<Period>>,
    ) -> ApiResult<Json<SystemStats>> {
        auth.require_admin()?;
        let all = instances::list_all(state.store.pool()).await?;
        let connected = all
            .iter()
            .filter(|i| state.sessions.status(&i.id).state == ConnState::Connected)
            .count();
        let user_count = users::list(state.store.pool()).await?.len();
        let active_since = today()
            .checked_sub_days(Days::new(ACTIVE_USER_DAYS - 1))
            .map(day_key)
            .unwrap_or_default();
        let active_users = stats::active_users(&state.views, &active_since).await?;
        let u = stats::system(
            &state.views,
            since(period.0.unwrap_or(Period::All)).as_deref(),
        )
        .await?;
        Ok(Json(SystemStats {
            instances: ActiveCount {
                total: all.len() as i64,
                active: connected as i64,
            },
            users: ActiveCount {
                total: user_count as i64,
                active: active_users,
            },
            usage: SystemUsage { counters: u.into() },
        }))
    }
}

/// One entry per day from the period's first day (for `all`: the first day
/// with traffic) to today or the last day with traffic, zeros included.
fn daily(days: &[(String, Usage)], first: Option<NaiveDate>, today: NaiveDate) -> Vec<DailyStat> {
    let parse = |d: &str| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok();
    let recorded: BTreeMap<NaiveDate, Usage> = days
        .iter()
        .filter_map(|(d, u)| parse(d).map(|d| (d, *u)))
        .collect();
    let start = first
        .or_else(|| recorded.keys().next().copied())
        .unwrap_or(today);
    let end = recorded.keys().last().copied().unwrap_or(today).max(today);
    let mut out = Vec::new();
    let mut day = start;
    while day <= end {
        let u = recorded.get(&day).copied().unwrap_or_default();
        out.push(DailyStat {
            date: day_time(day),
            messages_sent: u.messages_sent,
            messages_received: u.messages_received,
            media_sent: u.media_sent,
            media_received: u.media_received,
        });
        match day.succ_opt() {
            Some(next) => day = next,
            None => break,
        }
    }
    out
}
