//! `search --filter`: a MongoDB-style filter over payload fields (`{"year": {"$gte": 1950},
//! "genres": "Drama"}`), parsed into [`Cond`] and translated by each target into Qdrant's
//! filter. Supported: equality, `$eq`, `$ne`, `$in`, `$nin`, `$gt`, `$gte`, `$lt`, `$lte`
//! (numbers), `$exists`, `$and`, `$or`; any other operator is refused by name. As in MongoDB, a
//! condition on an array field holds when one of its elements matches. `$exists` follows
//! Qdrant's `is_empty`: a null or an empty array counts as absent.

use serde_json::{Map, Value};

/// A filter, as the targets translate it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// Every condition holds.
    All(Vec<Cond>),
    /// At least one holds.
    Any(Vec<Cond>),
    /// It does not hold.
    Not(Box<Cond>),
    /// The field equals (or holds) the value.
    Eq(String, Scalar),
    /// The field equals (or holds) one of the strings.
    In(String, Vec<String>),
    /// The field's number is within bounds.
    Range(String, Bounds),
    /// The field is null.
    Null(String),
    /// The field is missing, null or an empty array.
    Empty(String),
}

/// A value to match exactly (a number is compared as a range of one value, so that it matches
/// whether stored as an integer or a double, as MongoDB compares numbers across types).
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Str(String),
    Bool(bool),
}

/// Bounds of a range condition.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Bounds {
    pub gt: Option<f64>,
    pub gte: Option<f64>,
    pub lt: Option<f64>,
    pub lte: Option<f64>,
}

const EXAMPLE: &str = r#"{"year": {"$gte": 1950}, "genres": "Drama"}"#;

/// Parse `text` (JSON) into a condition; the error names what is wrong and what is supported.
pub fn parse(text: &str) -> Result<Cond, String> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| format!("--filter is not valid JSON ({e}); for example '{EXAMPLE}'"))?;
    match v {
        Value::Object(m) => document(&m),
        _ => Err(format!(
            "--filter must be a JSON object, for example '{EXAMPLE}'"
        )),
    }
}

fn document(m: &Map<String, Value>) -> Result<Cond, String> {
    let mut all = Vec::new();
    for (k, v) in m {
        all.push(match k.as_str() {
            "$and" | "$or" => {
                let parts = v
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| format!("--filter: {k} takes a non-empty array of filters"))?;
                let parts = parts
                    .iter()
                    .map(|p| match p {
                        Value::Object(m) => document(m),
                        _ => Err(format!("--filter: {k} takes filters (JSON objects)")),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if k == "$and" {
                    Cond::All(parts)
                } else {
                    Cond::Any(parts)
                }
            }
            op if op.starts_with('$') => return Err(unsupported(op)),
            field => {
                check_key(field)?;
                condition(field, v)?
            }
        });
    }
    Ok(match all.len() {
        1 => all.remove(0),
        _ => Cond::All(all),
    })
}

/// A field must be a payload path Qdrant reads (`a`, `a.b`, `a[].b`, `"a.b"` for a key with
/// a dot in it).
fn check_key(field: &str) -> Result<(), String> {
    let path: Result<qdrant_edge::JsonPath, _> = field.try_into();
    path.map(|_| ()).map_err(|_| {
        format!(
            "--filter: `{field}` is not a payload path Qdrant reads: write `a.b` for a nested field, `a[].b` through an array, and quote a copied key that holds a dot (`\"a.b\"`)"
        )
    })
}

fn unsupported(op: &str) -> String {
    format!(
        "--filter: the operator {op} is not supported; use equality, $eq, $ne, $in, $nin, $gt, $gte, $lt, $lte, $exists, $and, $or"
    )
}

/// The condition `v` puts on `field`.
fn condition(field: &str, v: &Value) -> Result<Cond, String> {
    let ops = match v {
        Value::Object(m) if m.keys().all(|k| k.starts_with('$')) && !m.is_empty() => m,
        Value::Object(_) => {
            return Err(format!(
                "--filter: `{field}` is compared with a whole sub-document; filter on its fields with a dotted path (`{field}.x`) instead"
            ));
        }
        other => return equals(field, other),
    };
    let mut all = Vec::new();
    // One range per bound: on an array, as in MongoDB, each bound may hold for another element.
    let bound = |b: Bounds| Cond::Range(field.to_owned(), b);
    let mut ranges = Vec::new();
    for (op, arg) in ops {
        let number = || {
            arg.as_f64()
                .ok_or_else(|| format!("--filter: {op} on `{field}` takes a number"))
        };
        match op.as_str() {
            "$eq" => all.push(equals(field, arg)?),
            "$ne" => all.push(Cond::Not(Box::new(equals(field, arg)?))),
            "$in" => all.push(one_of(field, op, arg)?),
            "$nin" => all.push(Cond::Not(Box::new(one_of(field, op, arg)?))),
            "$gt" => ranges.push(bound(Bounds {
                gt: Some(number()?),
                ..Bounds::default()
            })),
            "$gte" => ranges.push(bound(Bounds {
                gte: Some(number()?),
                ..Bounds::default()
            })),
            "$lt" => ranges.push(bound(Bounds {
                lt: Some(number()?),
                ..Bounds::default()
            })),
            "$lte" => ranges.push(bound(Bounds {
                lte: Some(number()?),
                ..Bounds::default()
            })),
            "$exists" => {
                let empty = Cond::Empty(field.to_owned());
                all.push(match arg.as_bool() {
                    Some(true) => Cond::Not(Box::new(empty)),
                    Some(false) => empty,
                    None => {
                        return Err(format!(
                            "--filter: $exists on `{field}` takes true or false"
                        ));
                    }
                });
            }
            other => return Err(unsupported(other)),
        }
    }
    all.extend(ranges);
    Ok(match all.len() {
        1 => all.remove(0),
        _ => Cond::All(all),
    })
}

/// `field` equal to `v`: a string or boolean matched, a number as the range of that one value,
/// `null` also matching a missing field (as in MongoDB).
fn equals(field: &str, v: &Value) -> Result<Cond, String> {
    let f = field.to_owned();
    Ok(match v {
        Value::Null => Cond::Any(vec![Cond::Null(f.clone()), Cond::Empty(f)]),
        Value::String(s) => Cond::Eq(f, Scalar::Str(s.clone())),
        Value::Bool(b) => Cond::Eq(f, Scalar::Bool(*b)),
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            Cond::Range(
                f,
                Bounds {
                    gte: Some(x),
                    lte: Some(x),
                    ..Bounds::default()
                },
            )
        }
        _ => {
            return Err(format!(
                "--filter: `{field}` is compared with {v}; compare with a string, number or boolean"
            ));
        }
    })
}

/// `field` equal to one of `v`'s values: strings in one match, anything else one by one.
fn one_of(field: &str, op: &str, v: &Value) -> Result<Cond, String> {
    let values = v
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| format!("--filter: {op} on `{field}` takes a non-empty array"))?;
    if let Some(bad) = values.iter().find(|x| x.is_null()) {
        return Err(format!(
            "--filter: `{field}` is compared with {bad}; compare with a string, number or boolean"
        ));
    }
    let strings: Option<Vec<String>> = values
        .iter()
        .map(|x| x.as_str().map(str::to_owned))
        .collect();
    Ok(match strings {
        Some(s) => Cond::In(field.to_owned(), s),
        None => Cond::Any(
            values
                .iter()
                .map(|x| equals(field, x))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_and_its_operators() {
        let c = parse(r#"{"year": {"$gte": 1950, "$lt": 2000}, "genres": "Drama"}"#).unwrap();
        let gte = Bounds {
            gte: Some(1950.0),
            ..Bounds::default()
        };
        let lt = Bounds {
            lt: Some(2000.0),
            ..Bounds::default()
        };
        assert_eq!(
            c,
            Cond::All(vec![
                Cond::All(vec![
                    Cond::Range("year".into(), gte),
                    Cond::Range("year".into(), lt),
                ]),
                Cond::Eq("genres".into(), Scalar::Str("Drama".into())),
            ])
        );
        let c = parse(r#"{"$or": [{"a": {"$in": [1, 2]}}, {"b": {"$exists": false}}], "c": null}"#)
            .unwrap();
        let one = |x: f64| Bounds {
            gte: Some(x),
            lte: Some(x),
            ..Bounds::default()
        };
        assert_eq!(
            c,
            Cond::All(vec![
                Cond::Any(vec![
                    Cond::Any(vec![
                        Cond::Range("a".into(), one(1.0)),
                        Cond::Range("a".into(), one(2.0)),
                    ]),
                    Cond::Empty("b".into()),
                ]),
                Cond::Any(vec![Cond::Null("c".into()), Cond::Empty("c".into())]),
            ])
        );
        let c = parse(r#"{"t": {"$ne": true, "$nin": ["x"]}}"#).unwrap();
        assert_eq!(
            c,
            Cond::All(vec![
                Cond::Not(Box::new(Cond::Eq("t".into(), Scalar::Bool(true)))),
                Cond::Not(Box::new(Cond::In("t".into(), vec!["x".into()]))),
            ])
        );
    }

    #[test]
    fn an_unsupported_operator_is_named() {
        for (f, named) in [
            (r#"{"a": {"$regex": "x"}}"#, "$regex"),
            (r#"{"$nor": [{"a": 1}]}"#, "$nor"),
            (r#"{"a": {"$elemMatch": {"b": 1}}}"#, "$elemMatch"),
        ] {
            let e = parse(f).unwrap_err();
            assert!(e.contains(named) && e.contains("$gte"), "{e}");
        }
        assert!(
            parse(r#"{"a": {"b": 1}}"#)
                .unwrap_err()
                .contains("dotted path")
        );
        assert!(
            parse(r#"{"a": {"$gt": "x"}}"#)
                .unwrap_err()
                .contains("number")
        );
        assert!(parse("[1]").unwrap_err().contains("JSON object"));
        assert!(parse("{").unwrap_err().contains("not valid JSON"));
        assert!(
            parse(r#"{"a": {"$in": []}}"#)
                .unwrap_err()
                .contains("non-empty")
        );
        assert!(parse(r#"{"a b": 1}"#).unwrap_err().contains("payload path"));
    }
}
