//! What a user needs to fix a refused configuration: the nearest valid key for a misspelt one
//! ("did you mean"), and the values a key accepts, described from its type. Pure string work.

use config::{Value, ValueKind};

/// Edit distance between two strings (Levenshtein, on characters).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0usize; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        if let Some(first) = cur.first_mut() {
            *first = i + 1;
        }
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let delete = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let insert = cur.get(j).copied().unwrap_or(0) + 1;
            if let Some(slot) = cur.get_mut(j + 1) {
                *slot = substitute.min(delete).min(insert);
            }
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev.last().copied().unwrap_or(0)
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo: at most a
/// third of the word's length in edits (and at least 2 allowed). Ties go to the first.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(2);
    let mut best: Option<(usize, &'a str)> = None;
    for c in candidates {
        let d = edit_distance(&word.to_lowercase(), &c.to_lowercase());
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// The nearest known `section.key` to an unknown one: the leaf name is compared within the
/// same section first (the usual typo), then the whole dotted key against every known key.
pub fn nearest_key<'a>(unknown: &str, known: impl IntoIterator<Item = &'a str> + Clone) -> Option<&'a str> {
    if let Some((section, leaf)) = unknown.split_once('.') {
        let same_section = known.clone().into_iter().filter(|k| k.split_once('.').is_some_and(|(s, _)| s == section));
        let by_leaf: Vec<&str> = same_section.collect();
        let leaves = by_leaf.iter().filter_map(|k| k.split_once('.').map(|(_, l)| l));
        if let Some(found) = nearest(leaf, leaves) {
            return by_leaf.into_iter().find(|k| k.split_once('.').is_some_and(|(_, l)| l == found));
        }
    }
    nearest(unknown, known)
}

/// Values of the configuration's enumerations, as written in a config file.
const ENUMS: &[(&str, &[&str])] = &[
    ("exchange.margin_type", &["ISOLATED", "CROSSED"]),
    ("risk.emergency_reset", &["manual", "next_utc_day"]),
    ("storage.sync", &["normal", "full"]),
];

/// The accepted values of an enumeration key, if `key` is one.
pub fn enum_values(key: &str) -> Option<&'static [&'static str]> {
    ENUMS.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// `"a", "b" or "c"`.
fn one_of(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("\"{v}\"")).collect();
    match quoted.split_last() {
        Some((last, rest)) if rest.len() == 1 => format!("{} or {last}", rest.join(", ")),
        Some((last, rest)) if !rest.is_empty() => format!("one of {} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

/// What `key` accepts, described from its enumeration or from the type of its default value.
pub fn allowed_for(key: &str, default: Option<&Value>) -> String {
    if let Some(values) = enum_values(key) {
        return one_of(values);
    }
    let leaf = key.rsplit(['.', ']']).next().unwrap_or(key);
    if key.contains("_tiers[") {
        return if leaf.ends_with("_pct") { "a number (percent)".into() } else { "a whole number >= 0".into() };
    }
    match default.map(|v| &v.kind) {
        Some(ValueKind::Boolean(_)) => "true or false".into(),
        Some(ValueKind::I64(_) | ValueKind::I128(_) | ValueKind::U64(_) | ValueKind::U128(_)) => {
            "a whole number >= 0".into()
        }
        Some(ValueKind::Float(_)) => "a number".into(),
        Some(ValueKind::String(_)) => "a quoted string".into(),
        Some(ValueKind::Array(_)) if key == "scanner.exclude" => {
            "a list of symbols, e.g. [\"USDCUSDT\"] (KINETIC__SCANNER__EXCLUDE=A,B in the environment)".into()
        }
        Some(ValueKind::Array(_)) => "a list of tables as in config/default.toml".into(),
        _ => "a value of the type shown in config/default.toml".into(),
    }
}

/// The key named in a deserialization message (`... for key `risk.leverage_tiers[0]leverage``),
/// normalised to `risk.leverage_tiers[0].leverage`.
pub fn key_in_message(text: &str) -> Option<String> {
    let start = text.find("for key `")? + "for key `".len();
    let rest = text.get(start..)?;
    let key = rest.get(..rest.find('`')?)?;
    let mut out = String::with_capacity(key.len() + 2);
    let mut chars = key.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == ']' && chars.peek().is_some_and(|n| n.is_alphanumeric() || *n == '_') {
            out.push('.');
        }
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn distance_and_nearest() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(nearest("debg", ["trace", "debug", "info"]), Some("debug"));
        assert_eq!(nearest("verbose", ["trace", "debug", "info", "warn", "error", "off"]), None);
        let known = ["risk.max_open_positions", "risk.symbol_cooldown_mins", "scanner.max_candidates"];
        assert_eq!(nearest_key("risk.max_open_positon", known), Some("risk.max_open_positions"));
        assert_eq!(nearest_key("rsik.max_open_positions", known), Some("risk.max_open_positions"));
        assert_eq!(nearest_key("risky.level", known), None);
    }

    #[test]
    fn every_enum_value_is_accepted_by_its_type() {
        use super::super::{EmergencyReset, JournalSync, MarginType};
        for v in enum_values("exchange.margin_type").unwrap() {
            serde_json::from_value::<MarginType>(serde_json::json!(v)).unwrap();
        }
        for v in enum_values("risk.emergency_reset").unwrap() {
            serde_json::from_value::<EmergencyReset>(serde_json::json!(v)).unwrap();
        }
        for v in enum_values("storage.sync").unwrap() {
            serde_json::from_value::<JournalSync>(serde_json::json!(v)).unwrap();
        }
        assert_eq!(allowed_for("storage.sync", None), "\"normal\" or \"full\"");
        assert_eq!(one_of(&["a", "b", "c"]), "one of \"a\", \"b\" or \"c\"");
    }

    #[test]
    fn keys_are_read_from_messages() {
        let m = "invalid type: 64-bit integer `-2`, expected u64 for key `risk.leverage_tiers[0]leverage`";
        assert_eq!(key_in_message(m).as_deref(), Some("risk.leverage_tiers[0].leverage"));
        assert_eq!(
            key_in_message("x for key `risk.max_open_positions` in the environment").unwrap(),
            "risk.max_open_positions"
        );
        assert_eq!(key_in_message("nothing here"), None);
    }
}
