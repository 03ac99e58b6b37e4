//! The rules of group and number-check input, as pure parsers: a group id,
//! a list of participants, a subject, a description, a list of numbers to
//! check. Each refusal is a [`DomainError::Invalid`] (400) that names the
//! field; nothing is sent to WhatsApp before they pass.

use std::collections::HashSet;

use super::DomainError;
use super::types::reject_control_chars;
use crate::ids::Jid;
use crate::whatsapp::groups::{
    MAX_CHECK_NUMBERS, MAX_DESCRIPTION_CHARS, MAX_PARTICIPANTS, MAX_SUBJECT_CHARS,
};

fn invalid(message: impl Into<String>) -> DomainError {
    DomainError::Invalid(message.into())
}

/// A group id from a path: `…@g.us` or the part before it (digits, and a
/// dash in old-style ids).
pub fn group_id(raw: &str) -> Result<Jid, DomainError> {
    let s = raw.trim();
    let user = s.strip_suffix("@g.us").unwrap_or(s);
    let ok = !user.is_empty()
        && user.len() <= 40
        && user.chars().all(|c| c.is_ascii_digit() || c == '-')
        && !user.starts_with('-')
        && !user.ends_with('-');
    if !ok {
        return Err(invalid(format!(
            "groupId must be a group JID like 120363012345678901@g.us (or the part before @), got {raw:?}"
        )));
    }
    Ok(Jid::from_raw(format!("{user}@g.us")))
}

/// People to add, remove, promote or demote: 1 to [`MAX_PARTICIPANTS`]
/// phone numbers or person JIDs (no groups); repeats count once, order kept.
pub fn participants(raw: &[String], allow_empty: bool) -> Result<Vec<Jid>, DomainError> {
    if raw.is_empty() && !allow_empty {
        return Err(invalid("participants must hold at least one phone number"));
    }
    if raw.len() > MAX_PARTICIPANTS {
        return Err(invalid(format!(
            "participants may hold at most {MAX_PARTICIPANTS} numbers, got {}",
            raw.len()
        )));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, p) in raw.iter().enumerate() {
        let jid =
            Jid::parse_recipient(p).map_err(|e| invalid(format!("participants[{i}]: {}", e.0)))?;
        if jid.is_group() {
            return Err(invalid(format!(
                "participants[{i}]: a group cannot be a participant, got {p:?}"
            )));
        }
        if seen.insert(jid.clone()) {
            out.push(jid);
        }
    }
    Ok(out)
}

/// A subject: 1 to [`MAX_SUBJECT_CHARS`] characters once trimmed, on one line.
pub fn subject(raw: &str) -> Result<String, DomainError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(invalid("subject must not be empty"));
    }
    let n = s.chars().count();
    if n > MAX_SUBJECT_CHARS {
        return Err(invalid(format!(
            "subject may have at most {MAX_SUBJECT_CHARS} characters, got {n}"
        )));
    }
    reject_control_chars(s, "subject", false).map_err(invalid)?;
    Ok(s.to_string())
}

/// A description: up to [`MAX_DESCRIPTION_CHARS`] characters, newlines
/// allowed; empty (or absent) removes it.
pub fn description(raw: Option<&str>) -> Result<Option<String>, DomainError> {
    let Some(s) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let n = s.chars().count();
    if n > MAX_DESCRIPTION_CHARS {
        return Err(invalid(format!(
            "description may have at most {MAX_DESCRIPTION_CHARS} characters, got {n}"
        )));
    }
    reject_control_chars(s, "description", true).map_err(invalid)?;
    Ok(Some(s.to_string()))
}

/// Numbers to check: 1 to [`MAX_CHECK_NUMBERS`] phone numbers (digits, an
/// optional `+`, spaces, dashes) or person JIDs; answered as digits.
pub fn numbers(raw: &[String]) -> Result<Vec<String>, DomainError> {
    if raw.is_empty() {
        return Err(invalid("numbers must hold at least one phone number"));
    }
    if raw.len() > MAX_CHECK_NUMBERS {
        return Err(invalid(format!(
            "numbers may hold at most {MAX_CHECK_NUMBERS} phone numbers per call, got {}",
            raw.len()
        )));
    }
    raw.iter()
        .enumerate()
        .map(|(i, n)| {
            let jid =
                Jid::parse_recipient(n).map_err(|e| invalid(format!("numbers[{i}]: {}", e.0)))?;
            if !jid.as_str().ends_with("@s.whatsapp.net") {
                return Err(invalid(format!(
                    "numbers[{i}]: must be a phone number, got {n:?}"
                )));
            }
            Ok(jid.user().to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_parse_with_or_without_the_server_part() {
        assert_eq!(
            group_id("120363012345678901").unwrap().as_str(),
            "120363012345678901@g.us"
        );
        assert_eq!(
            group_id("79001234567-1600000000@g.us").unwrap().as_str(),
            "79001234567-1600000000@g.us"
        );
        for bad in ["", "abc", "79001234567@s.whatsapp.net", "-1@g.us", "1 2"] {
            assert!(group_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn participants_are_people_counted_once_and_bounded() {
        let got = participants(
            &[
                "+7 900 111-22-33".into(),
                "79001112233@s.whatsapp.net".into(),
            ],
            false,
        )
        .unwrap();
        assert_eq!(got, vec![Jid::from_phone("79001112233")]);
        assert!(participants(&[], false).is_err());
        assert!(participants(&[], true).unwrap().is_empty());
        assert!(participants(&["123-456@g.us".into()], false).is_err());
        let e = participants(&["79001112233".into(), "12".into()], false).unwrap_err();
        assert!(e.to_string().contains("participants[1]"), "{e}");
        let many: Vec<String> = (0..=MAX_PARTICIPANTS)
            .map(|i| format!("7900{i:07}"))
            .collect();
        assert!(participants(&many, false).is_err());
    }

    #[test]
    fn subjects_and_descriptions_follow_whatsapps_limits() {
        assert_eq!(subject("  Team  ").unwrap(), "Team");
        assert!(subject(" ").is_err());
        assert!(subject(&"x".repeat(MAX_SUBJECT_CHARS + 1)).is_err());
        assert!(subject("a\nb").is_err());
        assert_eq!(description(Some("")).unwrap(), None);
        assert_eq!(description(None).unwrap(), None);
        assert_eq!(description(Some("a\nb")).unwrap().as_deref(), Some("a\nb"));
        assert!(description(Some(&"x".repeat(MAX_DESCRIPTION_CHARS + 1))).is_err());
        assert!(description(Some("a\u{7}b")).is_err());
    }

    #[test]
    fn numbers_to_check_are_phone_numbers_within_the_batch_size() {
        assert_eq!(
            numbers(&["+7 900 111-22-33".into(), "79004445566@c.us".into()]).unwrap(),
            vec!["79001112233", "79004445566"]
        );
        assert!(numbers(&[]).is_err());
        assert!(numbers(&["123-456@g.us".into()]).is_err());
        assert!(numbers(&["1".into()]).is_err());
        let many: Vec<String> = (0..=MAX_CHECK_NUMBERS)
            .map(|i| format!("7900{i:07}"))
            .collect();
        assert!(numbers(&many).is_err());
    }
}
