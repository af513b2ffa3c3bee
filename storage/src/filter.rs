//! The metadata filter of the vector and document routes (Dakera's filter DSL, §2.6): parsed
//! once from JSON into a [`MetaFilter`] and evaluated against a record's metadata. Pure: no IO,
//! no index.
//!
//! Grammar: a JSON object whose entries must all hold. An entry is a combinator
//! (`"$and": [filter…]`, `"$or": [filter…]`) or a field: `{"field": value}` (equality) or
//! `{"field": {"$op": operand, …}}` with the operators `$eq $ne $gt $gte $lt $lte $in $nin $exists
//! $contains`. A field name may be a dotted path into nested objects (`"a.b"`).
//!
//! Semantics: `$eq`/`$ne` compare JSON values (numbers numerically, so `1` equals `1.0`); `$gt`
//! `$gte` `$lt` `$lte` compare numbers with numbers and strings with strings, anything else does
//! not match; `$in`/`$nin` take an array; `$exists` a boolean; `$contains` matches a string field
//! holding the operand as a substring, or an array field holding the operand as an element. A
//! missing field matches only `$ne`, `$nin` and `$exists: false`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Operators a filter may nest (each operator object and combinator counts one level).
pub const MAX_FILTER_DEPTH: usize = 8;
/// Conditions a filter may hold in all (fields, operators and combinator members).
pub const MAX_FILTER_CONDITIONS: usize = 256;
/// Elements of one `$in` / `$nin` list.
pub const MAX_FILTER_LIST: usize = 1024;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum MetaFilter {
    And(Vec<MetaFilter>),
    Or(Vec<MetaFilter>),
    Field { path: Vec<String>, op: FieldOp },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum FieldOp {
    Eq(Value),
    Ne(Value),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Contains(Value),
}

/// Why a filter was refused (the message names the offending part).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterError(pub String);

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(m: impl Into<String>) -> FilterError {
    FilterError(m.into())
}

impl MetaFilter {
    /// Parse the JSON DSL. An empty object is a filter that matches everything.
    pub fn parse(v: &Value) -> Result<MetaFilter, FilterError> {
        let mut budget = MAX_FILTER_CONDITIONS;
        parse_object(v, 0, &mut budget)
    }

    /// Does a record with this metadata pass?
    pub fn matches(&self, metadata: Option<&Value>) -> bool {
        match self {
            MetaFilter::And(all) => all.iter().all(|f| f.matches(metadata)),
            MetaFilter::Or(any) => any.iter().any(|f| f.matches(metadata)),
            MetaFilter::Field { path, op } => op.holds(lookup(metadata, path)),
        }
    }
}

fn spend(budget: &mut usize) -> Result<(), FilterError> {
    if *budget == 0 {
        return Err(err(format!("filter has more than {MAX_FILTER_CONDITIONS} conditions")));
    }
    *budget -= 1;
    Ok(())
}

fn parse_object(v: &Value, depth: usize, budget: &mut usize) -> Result<MetaFilter, FilterError> {
    if depth > MAX_FILTER_DEPTH {
        return Err(err(format!("filter is nested deeper than {MAX_FILTER_DEPTH} levels")));
    }
    let Value::Object(map) = v else {
        return Err(err("a filter must be a JSON object"));
    };
    let mut all = Vec::with_capacity(map.len());
    for (k, val) in map {
        spend(budget)?;
        match k.as_str() {
            "$and" | "$or" => {
                let Value::Array(items) = val else {
                    return Err(err(format!("{k} takes an array of filters")));
                };
                if items.is_empty() {
                    return Err(err(format!("{k} needs at least one filter")));
                }
                let parts = items.iter().map(|i| parse_object(i, depth + 1, budget)).collect::<Result<Vec<_>, _>>()?;
                all.push(if k == "$and" { MetaFilter::And(parts) } else { MetaFilter::Or(parts) });
            }
            op if op.starts_with('$') => {
                return Err(err(format!("unknown filter combinator '{}': use $and or $or", printable(op))));
            }
            field => {
                if field.is_empty() || field.len() > 256 || field.chars().any(|c| c.is_control()) {
                    return Err(err("filter field names must be 1-256 bytes without control characters"));
                }
                let path: Vec<String> = field.split('.').map(str::to_string).collect();
                match val {
                    Value::Object(ops) if ops.keys().any(|o| o.starts_with('$')) => {
                        if ops.is_empty() {
                            return Err(err(format!("no operator for field '{}'", printable(field))));
                        }
                        for (o, operand) in ops {
                            spend(budget)?;
                            all.push(MetaFilter::Field { path: path.clone(), op: parse_op(o, operand)? });
                        }
                    }
                    other => all.push(MetaFilter::Field { path, op: FieldOp::Eq(other.clone()) }),
                }
            }
        }
    }
    Ok(if all.len() == 1 { all.remove(0) } else { MetaFilter::And(all) })
}

fn parse_op(op: &str, operand: &Value) -> Result<FieldOp, FilterError> {
    let list = |v: &Value| -> Result<Vec<Value>, FilterError> {
        match v {
            Value::Array(a) if a.len() <= MAX_FILTER_LIST => Ok(a.clone()),
            Value::Array(_) => Err(err(format!("{op} takes at most {MAX_FILTER_LIST} values"))),
            _ => Err(err(format!("{op} takes an array"))),
        }
    };
    let ordered = |v: &Value| -> Result<Value, FilterError> {
        if v.is_number() || v.is_string() {
            Ok(v.clone())
        } else {
            Err(err(format!("{op} takes a number or a string")))
        }
    };
    Ok(match op {
        "$eq" => FieldOp::Eq(operand.clone()),
        "$ne" => FieldOp::Ne(operand.clone()),
        "$gt" => FieldOp::Gt(ordered(operand)?),
        "$gte" => FieldOp::Gte(ordered(operand)?),
        "$lt" => FieldOp::Lt(ordered(operand)?),
        "$lte" => FieldOp::Lte(ordered(operand)?),
        "$in" => FieldOp::In(list(operand)?),
        "$nin" => FieldOp::Nin(list(operand)?),
        "$exists" => match operand {
            Value::Bool(b) => FieldOp::Exists(*b),
            _ => return Err(err("$exists takes true or false")),
        },
        "$contains" => FieldOp::Contains(operand.clone()),
        other => {
            return Err(err(format!(
                "unknown filter operator '{}': use $eq $ne $gt $gte $lt $lte $in $nin $exists $contains",
                printable(other)
            )));
        }
    })
}

fn printable(s: &str) -> String {
    s.chars().take(64).map(|c| if c.is_control() { '?' } else { c }).collect()
}

fn lookup<'a>(metadata: Option<&'a Value>, path: &[String]) -> Option<&'a Value> {
    let mut cur = metadata?;
    for p in path {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

/// JSON equality with numbers compared by value (`1 == 1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b)),
        _ => a == b,
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

impl FieldOp {
    fn holds(&self, v: Option<&Value>) -> bool {
        use std::cmp::Ordering::*;
        match (self, v) {
            (FieldOp::Exists(want), v) => v.is_some() == *want,
            (FieldOp::Ne(x), Some(v)) => !json_eq(v, x),
            (FieldOp::Nin(xs), Some(v)) => !xs.iter().any(|x| json_eq(v, x)),
            (FieldOp::Ne(_) | FieldOp::Nin(_), None) => true,
            (_, None) => false,
            (FieldOp::Eq(x), Some(v)) => json_eq(v, x),
            (FieldOp::In(xs), Some(v)) => xs.iter().any(|x| json_eq(v, x)),
            (FieldOp::Gt(x), Some(v)) => compare(v, x) == Some(Greater),
            (FieldOp::Gte(x), Some(v)) => matches!(compare(v, x), Some(Greater | Equal)),
            (FieldOp::Lt(x), Some(v)) => compare(v, x) == Some(Less),
            (FieldOp::Lte(x), Some(v)) => matches!(compare(v, x), Some(Less | Equal)),
            (FieldOp::Contains(x), Some(Value::String(s))) => x.as_str().is_some_and(|x| s.contains(x)),
            (FieldOp::Contains(x), Some(Value::Array(a))) => a.iter().any(|e| json_eq(e, x)),
            (FieldOp::Contains(_), Some(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(filter: Value, meta: Value) -> bool {
        MetaFilter::parse(&filter).unwrap().matches(Some(&meta))
    }

    #[test]
    fn plain_fields_are_equality_and_all_must_hold() {
        let meta = json!({"color": "red", "n": 3, "tags": ["a", "b"], "nested": {"k": 1}});
        assert!(m(json!({"color": "red"}), meta.clone()));
        assert!(!m(json!({"color": "blue"}), meta.clone()));
        assert!(m(json!({"color": "red", "n": 3.0}), meta.clone()));
        assert!(!m(json!({"color": "red", "n": 4}), meta.clone()));
        assert!(m(json!({"nested.k": 1}), meta.clone()));
        assert!(!m(json!({"nested.x": 1}), meta.clone()));
        assert!(m(json!({}), meta.clone()));
        assert!(!MetaFilter::parse(&json!({"color": "red"})).unwrap().matches(None));
    }

    #[test]
    fn every_operator() {
        let meta = json!({"n": 5, "s": "hello world", "tags": ["x", "y"], "b": true});
        assert!(m(json!({"n": {"$eq": 5}}), meta.clone()));
        assert!(m(json!({"n": {"$ne": 4}}), meta.clone()));
        assert!(!m(json!({"n": {"$ne": 5}}), meta.clone()));
        assert!(m(json!({"n": {"$gt": 4}}), meta.clone()));
        assert!(!m(json!({"n": {"$gt": 5}}), meta.clone()));
        assert!(m(json!({"n": {"$gte": 5}}), meta.clone()));
        assert!(m(json!({"n": {"$lt": 6}}), meta.clone()));
        assert!(!m(json!({"n": {"$lt": 5}}), meta.clone()));
        assert!(m(json!({"n": {"$lte": 5}}), meta.clone()));
        assert!(m(json!({"n": {"$gt": 1, "$lt": 9}}), meta.clone()));
        assert!(!m(json!({"n": {"$gt": 1, "$lt": 5}}), meta.clone()));
        assert!(m(json!({"s": {"$gt": "a"}}), meta.clone()));
        // A string is not ordered against a number.
        assert!(!m(json!({"s": {"$gt": 1}}), meta.clone()));
        assert!(m(json!({"n": {"$in": [1, 5]}}), meta.clone()));
        assert!(!m(json!({"n": {"$in": [1, 2]}}), meta.clone()));
        assert!(m(json!({"n": {"$nin": [1, 2]}}), meta.clone()));
        assert!(!m(json!({"n": {"$nin": [5]}}), meta.clone()));
        assert!(m(json!({"n": {"$exists": true}}), meta.clone()));
        assert!(m(json!({"zz": {"$exists": false}}), meta.clone()));
        assert!(!m(json!({"zz": {"$exists": true}}), meta.clone()));
        assert!(m(json!({"s": {"$contains": "lo wo"}}), meta.clone()));
        assert!(!m(json!({"s": {"$contains": "bye"}}), meta.clone()));
        assert!(m(json!({"tags": {"$contains": "y"}}), meta.clone()));
        assert!(!m(json!({"tags": {"$contains": "z"}}), meta.clone()));
        assert!(!m(json!({"n": {"$contains": 5}}), meta.clone()));
        // A missing field matches only the negative operators.
        assert!(m(json!({"zz": {"$ne": 1}}), meta.clone()));
        assert!(m(json!({"zz": {"$nin": [1]}}), meta.clone()));
        assert!(!m(json!({"zz": {"$eq": 1}}), meta.clone()));
        assert!(!m(json!({"zz": {"$lt": 1}}), meta.clone()));
        assert!(m(json!({"b": true}), meta));
    }

    #[test]
    fn combinators() {
        let meta = json!({"a": 1, "b": 2});
        assert!(m(json!({"$or": [{"a": 9}, {"b": 2}]}), meta.clone()));
        assert!(!m(json!({"$or": [{"a": 9}, {"b": 9}]}), meta.clone()));
        assert!(m(json!({"$and": [{"a": 1}, {"b": {"$gte": 2}}]}), meta.clone()));
        assert!(!m(json!({"$and": [{"a": 1}, {"b": 3}]}), meta.clone()));
        assert!(m(json!({"a": 1, "$or": [{"b": 2}, {"c": 3}]}), meta.clone()));
        assert!(!m(json!({"a": 2, "$or": [{"b": 2}, {"c": 3}]}), meta));
    }

    #[test]
    fn malformed_filters_are_refused_with_a_reason() {
        for (bad, says) in [
            (json!([1]), "JSON object"),
            (json!({"$not": [{}]}), "unknown filter combinator"),
            (json!({"a": {"$regex": "x"}}), "unknown filter operator"),
            (json!({"$and": {}}), "array of filters"),
            (json!({"$or": []}), "at least one"),
            (json!({"a": {"$in": 3}}), "takes an array"),
            (json!({"a": {"$exists": 1}}), "true or false"),
            (json!({"a": {"$gt": [1]}}), "number or a string"),
            (json!({"": 1}), "field names"),
        ] {
            let e = MetaFilter::parse(&bad).unwrap_err();
            assert!(e.0.contains(says), "{bad}: {e}");
        }
        let mut deep = json!({"a": 1});
        for _ in 0..12 {
            deep = json!({"$and": [deep]});
        }
        assert!(MetaFilter::parse(&deep).unwrap_err().0.contains("deeper"));
        let wide: serde_json::Map<String, Value> = (0..300).map(|i| (format!("f{i}"), json!(i))).collect();
        assert!(MetaFilter::parse(&Value::Object(wide)).unwrap_err().0.contains("conditions"));
        let long: Vec<Value> = (0..2000).map(Value::from).collect();
        assert!(MetaFilter::parse(&json!({"a": {"$in": long}})).is_err());
    }

    #[test]
    fn a_parsed_filter_survives_the_wire() {
        let f = MetaFilter::parse(&json!({"a": {"$in": [1, "x"]}, "$or": [{"b": {"$exists": true}}]})).unwrap();
        let bytes = serde_json::to_vec(&f).unwrap();
        let back: MetaFilter = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(f, back);
    }
}
