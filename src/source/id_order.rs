//! The order of `_id`s: MongoDB sorts `_id`s of different BSON types by type bracket, and a
//! query for "after this `_id`" has to follow that order across types.

use mongodb::bson::{Bson, Document, doc};

/// An `_id` as canonical Extended JSON text: equal for equal `_id`s of the same type.
pub fn id_key(id: &Bson) -> String {
    id.clone().into_canonical_extjson().to_string()
}

/// The `_id` in Extended JSON text ([`id_key`]'s, or relaxed), if it reads as one.
pub fn id_from_text(text: &str) -> Option<Bson> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    Bson::try_from(value).ok()
}

/// MongoDB's sort order of `_id` values by BSON type bracket (the documented comparison /
/// sort order), each bracket named by its `$type` aliases.
const BRACKETS: &[&[&str]] = &[
    &["minKey"],
    &["null"],
    &["number"],
    &["symbol", "string"],
    &["object"],
    &["array"],
    &["binData"],
    &["objectId"],
    &["bool"],
    &["date"],
    &["timestamp"],
    &["regex"],
    &["maxKey"],
];

/// The bracket of `id` in [`BRACKETS`]; `None` for types outside the documented order.
fn bracket(id: &Bson) -> Option<usize> {
    Some(match id {
        Bson::MinKey => 0,
        Bson::Null | Bson::Undefined => 1,
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => 2,
        Bson::String(_) | Bson::Symbol(_) => 3,
        Bson::Document(_) => 4,
        Bson::Array(_) => 5,
        Bson::Binary(_) => 6,
        Bson::ObjectId(_) => 7,
        Bson::Boolean(_) => 8,
        Bson::DateTime(_) => 9,
        Bson::Timestamp(_) => 10,
        Bson::RegularExpression(_) => 11,
        Bson::MaxKey => 12,
        _ => return None,
    })
}

/// The filter for `_id`s strictly after `id` in `_id` sort order, across BSON types. A query
/// operator like `$gt` matches only values of its operand's type bracket (MongoDB's type
/// bracketing), so `{_id: {$gt: 5}}` skips every string, document and ObjectId `_id`: the rest
/// of `id`'s bracket is `$gt`, every later bracket is added by `$type`. Both halves can use
/// the `_id` index.
pub fn after_id(id: &Bson) -> Document {
    let Some(b) = bracket(id) else {
        // Outside the documented brackets: the aggregation comparison orders all types.
        return doc! {"$expr": {"$gt": ["$_id", {"$literal": id.clone()}]}};
    };
    let later: Vec<&str> = BRACKETS[b + 1..]
        .iter()
        .flat_map(|t| t.iter().copied())
        .collect();
    let same = doc! {"_id": {"$gt": id.clone()}};
    if later.is_empty() {
        same
    } else {
        doc! {"$or": [same, {"_id": {"$type": later}}]}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_an_id_the_later_type_brackets_follow() {
        let f = after_id(&Bson::Int32(5));
        let or = f.get_array("$or").unwrap();
        assert_eq!(or[0].as_document().unwrap(), &doc! {"_id": {"$gt": 5}});
        let types = or[1].as_document().unwrap().get_document("_id").unwrap();
        let types: Vec<&str> = types
            .get_array("$type")
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(types[0], "symbol");
        assert!(
            types.contains(&"object") && types.contains(&"objectId") && types.contains(&"date")
        );
        assert!(!types.contains(&"number") && !types.contains(&"null"));
        // The last bracket has nothing after it.
        assert_eq!(after_id(&Bson::MaxKey), doc! {"_id": {"$gt": Bson::MaxKey}});
        // A string continues with documents, not numbers.
        let f = after_id(&Bson::String("m".into()));
        let t = f.get_array("$or").unwrap()[1]
            .as_document()
            .unwrap()
            .to_string();
        assert!(t.contains("object") && !t.contains("number"), "{t}");
    }
}
