//! Aggregates: state rebuilt from events, decisions as pure functions, and
//! the one way a decision reaches the log: appended with the exact stream
//! version it was decided on, so a concurrent change is never lost. A
//! conflict is decided once more on fresh state; a second conflict is
//! answered with [`DomainError::Concurrent`].

use std::future::Future;

use sqlx::SqlitePool;

use crate::events::Event;
use crate::store::{Append, Effect, EventStore, ExpectedVersion, Metadata, StoreError, StreamId};

use super::DomainError;
use crate::ids::{InstanceId, UserId};

/// A snapshot of an aggregate with the version of its stream it reflects
/// (`state` is `None` when the aggregate does not exist, or no longer does).
#[derive(Debug, Clone)]
pub struct Versioned<A> {
    pub state: Option<A>,
    pub version: i64,
}

impl<A> Versioned<A> {
    /// A snapshot row (state and version) as read, or a missing one.
    pub fn from_row(row: Option<(A, i64)>) -> Self {
        match row {
            Some((state, version)) => Self {
                state: Some(state),
                version,
            },
            None => Self {
                state: None,
                version: 0,
            },
        }
    }

    /// The version an append decided on this snapshot expects.
    pub fn expected(&self) -> ExpectedVersion {
        if self.version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(self.version)
        }
    }
}

/// An aggregate: its identity, its pure decisions and state transitions,
/// and where its snapshot lives.
pub trait Aggregate: Clone + Send + Sync + Sized + 'static {
    type Id: Send + Sync;
    type Command: Send + Sync;

    /// The aggregate's stream.
    fn stream(id: &Self::Id) -> StreamId;

    /// Which events `command` causes on `state`; pure.
    fn decide(state: Option<&Self>, command: &Self::Command) -> Result<Vec<Event>, DomainError>;

    /// The state after `event`, recorded at `at` (Unix milliseconds); pure.
    fn apply(state: Option<Self>, event: &Event, at: i64) -> Option<Self>;

    /// When the command is decided (its events' state time).
    fn time(command: &Self::Command) -> i64;

    /// The owning user and instance of the appended events (subjects, filters).
    fn scope(id: &Self::Id, state: Option<&Self>) -> (Option<UserId>, Option<InstanceId>);

    /// The snapshot and its version.
    fn load(
        pool: &SqlitePool,
        id: &Self::Id,
    ) -> impl Future<Output = Result<Versioned<Self>, sqlx::Error>> + Send;

    /// The table changes that go with a decision: the snapshot moved to
    /// `after` at `version`, plus whatever the command carries that never
    /// enters the log (secrets).
    fn changes(
        id: &Self::Id,
        command: &Self::Command,
        before: Option<&Self>,
        after: Option<&Self>,
        version: i64,
    ) -> Vec<Effect>;
}

/// The state a sequence of recorded events leads to (a rebuild from the log).
pub fn replay<'a, A: Aggregate>(events: impl IntoIterator<Item = (&'a Event, i64)>) -> Option<A> {
    events
        .into_iter()
        .fold(None, |state, (event, at)| A::apply(state, event, at))
}

/// What a command did.
#[derive(Debug)]
pub struct Executed<A> {
    /// The state after the command.
    pub state: Option<A>,
    /// The events it appended (none when there was nothing to do).
    pub events: Vec<Event>,
}

/// Loads, decides, appends with the version decided on; retries once on a
/// concurrent change.
pub async fn execute<A: Aggregate>(
    store: &EventStore,
    id: &A::Id,
    command: &A::Command,
    meta: Metadata,
) -> Result<Executed<A>, DomainError> {
    let mut attempt = 0;
    loop {
        let current = A::load(store.pool(), id).await?;
        let events = A::decide(current.state.as_ref(), command)?;
        if events.is_empty() {
            return Ok(Executed {
                state: current.state,
                events,
            });
        }
        let at = A::time(command);
        let after = events
            .iter()
            .fold(current.state.clone(), |s, e| A::apply(s, e, at));
        let version = current.version + events.len() as i64;
        let (user, instance) = A::scope(id, after.as_ref().or(current.state.as_ref()));
        let mut append = Append::to(A::stream(id), current.expected())
            .scope(
                user.as_ref().map(UserId::as_str),
                instance.as_ref().map(InstanceId::as_str),
            )
            .metadata(meta.clone());
        append.events = events.clone();
        append.effects = A::changes(id, command, current.state.as_ref(), after.as_ref(), version);
        match store.append(append).await {
            Ok(_) => {
                return Ok(Executed {
                    state: after,
                    events,
                });
            }
            Err(StoreError::Conflict { stream, .. }) if attempt == 0 => {
                tracing::debug!(%stream, "concurrent change; deciding again on fresh state");
                attempt += 1;
            }
            Err(StoreError::Conflict { stream, .. }) => {
                return Err(DomainError::Concurrent(stream));
            }
            Err(e) => return Err(e.into()),
        }
    }
}
