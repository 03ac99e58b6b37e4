//! Opt-in webhook event types: events beyond the seed's six that an instance
//! receives as webhooks only when its `webhookEvents` list names them, so an
//! existing receiver never sees a body it does not know. The list below is
//! the one place that says which names exist; add a new event type's name
//! here (and its body in [`super::payload::render`]).

/// Every opt-in webhook event type, in the order the API documents them.
pub const OPT_IN_EVENTS: &[&str] = &[
    "message_reaction",
    "message_edited",
    "message_revoked",
    "poll_vote",
    "chat_presence",
    "message_stuck",
    "group_updated",
    "group_participants_changed",
];

/// Longest `webhookEvents` list accepted (each name at most once).
pub const MAX_LISTED: usize = 64;

/// Whether `event_type` is an opt-in webhook event type.
pub fn is_opt_in(event_type: &str) -> bool {
    OPT_IN_EVENTS.contains(&event_type)
}

/// Whether an event of `event_type` may become a webhook for an instance
/// whose `webhookEvents` list is `listed`: always for the seed's events
/// (their notify flags decide), and for an opt-in type only when listed.
pub fn wanted(event_type: &str, listed: &[String]) -> bool {
    !is_opt_in(event_type) || listed.iter().any(|l| l == event_type)
}

/// Checks a `webhookEvents` list and gives it in its stored form (each name
/// once, in [`OPT_IN_EVENTS`] order); the error names the offending entry
/// and the accepted names.
pub fn parse_list<S: AsRef<str>>(raw: &[S]) -> Result<Vec<String>, String> {
    if raw.len() > MAX_LISTED {
        return Err(format!(
            "webhookEvents may name at most {MAX_LISTED} event types"
        ));
    }
    for name in raw {
        let name = name.as_ref();
        if !is_opt_in(name) {
            let shown: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
            let why = if super::payload::is_seed_event(name) {
                "is always sent (its notify flag decides)"
            } else {
                "is not an opt-in webhook event type"
            };
            return Err(format!(
                "webhookEvents: `{shown}` {why}; the opt-in event types are: {}",
                OPT_IN_EVENTS.join(", ")
            ));
        }
    }
    Ok(OPT_IN_EVENTS
        .iter()
        .filter(|known| raw.iter().any(|r| r.as_ref() == **known))
        .map(|s| s.to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_stored_once_per_name_in_the_documented_order() {
        let got = parse_list(&["poll_vote", "message_reaction", "poll_vote"]).unwrap();
        assert_eq!(got, vec!["message_reaction", "poll_vote"]);
        assert_eq!(parse_list::<&str>(&[]).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn unknown_and_seed_event_names_are_refused_with_the_accepted_names() {
        let e = parse_list(&["message_reaction", "nope"]).unwrap_err();
        assert!(e.contains("`nope`") && e.contains("message_edited"), "{e}");
        let e = parse_list(&["message_received"]).unwrap_err();
        assert!(e.contains("always sent"), "{e}");
    }

    #[test]
    fn seed_events_are_always_wanted_and_opt_in_events_only_when_listed() {
        let listed = vec!["poll_vote".to_string()];
        assert!(wanted("message_received", &[]));
        assert!(wanted("poll_vote", &listed));
        assert!(!wanted("poll_vote", &[]));
        assert!(!wanted("message_reaction", &listed));
    }
}
