//! Whether an answer has exactly the shape of a documented example: the
//! same keys at every level (none renamed, missing or extra) and the same
//! JSON types. Values are free.

use serde_json::Value;

/// The JSON type of a value, as the documents name them.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks `got` against the documented `doc`. Arrays of the same length
/// are compared element by element (the document's `results` differ one
/// from another); otherwise every element of `got` is compared with the
/// document's first. `null` stands for a string that has no value.
pub(crate) fn check(got: &Value, doc: &Value, path: &str) -> Result<(), String> {
    match (got, doc) {
        (Value::Object(g), Value::Object(d)) => {
            let gk: Vec<&String> = g.keys().collect();
            let dk: Vec<&String> = d.keys().collect();
            let mut gs = gk.clone();
            let mut ds = dk.clone();
            gs.sort();
            ds.sort();
            if gs != ds {
                return Err(format!("{path}: keys {gs:?}, documented {ds:?}"));
            }
            for k in dk {
                check(&g[k], &d[k], &format!("{path}.{k}"))?;
            }
            Ok(())
        }
        (Value::Array(g), Value::Array(d)) => {
            if d.is_empty() {
                return Ok(());
            }
            if g.len() == d.len() {
                for (i, (a, b)) in g.iter().zip(d).enumerate() {
                    check(a, b, &format!("{path}[{i}]"))?;
                }
            } else {
                for (i, a) in g.iter().enumerate() {
                    check(a, &d[0], &format!("{path}[{i}]"))?;
                }
            }
            Ok(())
        }
        (Value::Null, Value::String(_)) => Ok(()),
        (g, d) if kind(g) == kind(d) => Ok(()),
        (g, d) => Err(format!(
            "{path}: a {}, documented as a {}",
            kind(g),
            kind(d)
        )),
    }
}
