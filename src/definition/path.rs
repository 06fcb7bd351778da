//! JSON paths into `attributes`, as the Metric Store's `static` metrics
//! write them (`$.quality_score`,
//! `$.summary.scores[0]`, `$['key with spaces']`).
//!
//! Written here rather than taken from a JSONPath crate: a path must become
//! the key/index arguments of `json_get_*` calls inside the DataFusion plan
//! (so extraction runs in the engine, per batch), and a metric value is one
//! scalar, so only member and index steps make sense; wildcards, slices and
//! filters are refused with a message saying so.

use std::fmt;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Step {
    Key(String),
    Index(i64),
}

/// A parsed path: the steps after `$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JsonPath(pub Vec<Step>);

impl JsonPath {
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let Some(mut rest) = t.strip_prefix('$') else {
            return Err(format!(
                "{text:?} is not a JSON path: it must start with \"$\" (e.g. \"$.quality_score\")"
            ));
        };
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                let end = r
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
                    .unwrap_or(r.len());
                if end == 0 {
                    return Err(match r.chars().next() {
                        Some('*') => format!(
                            "{text:?}: wildcards are not supported; a metric reads one value"
                        ),
                        Some('.') => format!(
                            "{text:?}: recursive descent (..) is not supported; a metric reads one value"
                        ),
                        _ => format!("{text:?}: expected a member name after \".\""),
                    });
                }
                steps.push(Step::Key(r[..end].to_string()));
                rest = &r[end..];
            } else if let Some(r) = rest.strip_prefix('[') {
                let close = r
                    .find(']')
                    .ok_or_else(|| format!("{text:?}: unclosed \"[\""))?;
                let inner = r[..close].trim();
                let step = if let Some(q) = inner
                    .strip_prefix('\'')
                    .and_then(|s| s.strip_suffix('\''))
                    .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                {
                    if q.is_empty() {
                        return Err(format!("{text:?}: empty member name"));
                    }
                    Step::Key(q.to_string())
                } else if let Ok(i) = inner.parse::<i64>() {
                    if i < 0 {
                        return Err(format!("{text:?}: negative indexes are not supported"));
                    }
                    Step::Index(i)
                } else {
                    return Err(format!(
                        "{text:?}: [{inner}] is not supported; use [n] or ['name'] (wildcards, slices and filters are not: a metric reads one value)"
                    ));
                };
                steps.push(step);
                rest = &r[close + 1..];
            } else {
                return Err(format!(
                    "{text:?}: unexpected {:?}; steps are .name, ['name'] or [n]",
                    rest.chars().next().unwrap_or(' ')
                ));
            }
        }
        if steps.is_empty() {
            return Err(format!(
                "{text:?} names the whole attributes object; name a member (e.g. \"$.quality_score\")"
            ));
        }
        Ok(Self(steps))
    }

    /// Follows the path through a parsed JSON value (used where values are
    /// already in memory, e.g. to check an extraction against its source).
    pub fn get<'a>(&self, mut v: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
        for step in &self.0 {
            v = match step {
                Step::Key(k) => v.get(k)?,
                Step::Index(i) => v.get(usize::try_from(*i).ok()?)?,
            };
        }
        Some(v)
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "$")?;
        for s in &self.0 {
            match s {
                Step::Key(k) => write!(f, "[{k:?}]")?,
                Step::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_members_and_indexes() {
        assert_eq!(
            JsonPath::parse("$.a.b_c[2]['d e'][\"f\"]").unwrap().0,
            vec![
                Step::Key("a".into()),
                Step::Key("b_c".into()),
                Step::Index(2),
                Step::Key("d e".into()),
                Step::Key("f".into())
            ]
        );
        let v = serde_json::json!({"a": {"b_c": [0, 1, {"d e": {"f": 7}}]}});
        let p = JsonPath::parse("$.a.b_c[2]['d e'][\"f\"]").unwrap();
        assert_eq!(p.get(&v), Some(&serde_json::json!(7)));
    }

    #[test]
    fn refuses_what_is_not_one_value() {
        for bad in [
            "quality",
            "$",
            "$.*",
            "$..a",
            "$.a[*]",
            "$.a[1:2]",
            "$.a[?(@.x)]",
            "$.a[",
            "$a",
            "$.a[-1]",
        ] {
            assert!(JsonPath::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
