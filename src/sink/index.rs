//! Payload indexes as code: `--index year:integer,genres:keyword,tenant:keyword:tenant` (or
//! `index = [...]` in a config entry) names the fields a user filters by. Qdrant's own advice
//! is to create them before loading; each run compares what is asked with what the collection
//! has, creates what is missing and replaces an index of another type, one log line per change
//! (a dry run says what it would change). Indexes the run does not name are left alone.

use std::collections::BTreeMap;

use super::{Sink, SinkError};

/// The type of a payload index, as Qdrant names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    Keyword,
    Integer,
    Float,
    Bool,
    Datetime,
    Text,
    Uuid,
}

impl IndexKind {
    const ALL: [IndexKind; 7] = [
        IndexKind::Keyword,
        IndexKind::Integer,
        IndexKind::Float,
        IndexKind::Bool,
        IndexKind::Datetime,
        IndexKind::Text,
        IndexKind::Uuid,
    ];

    pub fn name(self) -> &'static str {
        match self {
            IndexKind::Keyword => "keyword",
            IndexKind::Integer => "integer",
            IndexKind::Float => "float",
            IndexKind::Bool => "bool",
            IndexKind::Datetime => "datetime",
            IndexKind::Text => "text",
            IndexKind::Uuid => "uuid",
        }
    }
}

/// One payload index: a field, its type, and whether it is the tenant field (`is_tenant`:
/// Qdrant keeps each tenant's points together).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    pub field: String,
    pub kind: IndexKind,
    pub tenant: bool,
}

impl IndexSpec {
    /// `FIELD:TYPE` or `FIELD:TYPE:tenant`.
    pub fn describe(&self) -> String {
        let tenant = if self.tenant { ":tenant" } else { "" };
        format!("{}:{}{tenant}", self.field, self.kind.name())
    }
}

/// An index as a collection holds it: its type's name and whether it is the tenant field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIndex {
    pub kind: String,
    pub tenant: bool,
}

/// Parse `FIELD:TYPE[:tenant]` items; the error names the item and the types.
pub fn parse(items: &[String]) -> Result<Vec<IndexSpec>, String> {
    let types: Vec<&str> = IndexKind::ALL.iter().map(|k| k.name()).collect();
    let mut out: Vec<IndexSpec> = Vec::new();
    for item in items.iter().map(|i| i.trim()).filter(|i| !i.is_empty()) {
        let bad = |why: &str| {
            format!(
                "--index `{item}`: {why}; write FIELD:TYPE or FIELD:TYPE:tenant with TYPE one of {}, e.g. year:integer,tenant:keyword:tenant",
                types.join(", ")
            )
        };
        let parts: Vec<&str> = item.split(':').collect();
        let (field, kind, tenant) = match parts.as_slice() {
            [f, k] => (f, k, false),
            [f, k, "tenant"] => (f, k, true),
            _ => return Err(bad("not FIELD:TYPE")),
        };
        let kind = IndexKind::ALL
            .into_iter()
            .find(|t| t.name() == *kind)
            .ok_or_else(|| bad("unknown type"))?;
        if field.is_empty() {
            return Err(bad("no field"));
        }
        let path: Result<qdrant_edge::JsonPath, _> = (*field).try_into();
        if path.is_err() {
            return Err(bad(
                "not a payload path Qdrant reads (quote a key that holds a dot: \"a.b\")",
            ));
        }
        if tenant && !matches!(kind, IndexKind::Keyword | IndexKind::Uuid) {
            return Err(bad("only a keyword or uuid field can be the tenant field"));
        }
        let spec = IndexSpec {
            field: field.to_string(),
            kind,
            tenant,
        };
        match out.iter().find(|s| s.field == spec.field) {
            Some(s) if *s != spec => {
                return Err(bad(&format!(
                    "`{}` is also indexed as {}",
                    s.field,
                    s.describe()
                )));
            }
            Some(_) => {}
            None => out.push(spec),
        }
    }
    Ok(out)
}

/// What a run changes to have `wanted`: each index missing or of another type (or tenant flag),
/// with what is there now.
pub fn changes<'a>(
    existing: &BTreeMap<String, StoredIndex>,
    wanted: &'a [IndexSpec],
) -> Vec<(&'a IndexSpec, Option<StoredIndex>)> {
    wanted
        .iter()
        .filter_map(|w| match existing.get(&w.field) {
            Some(s) if s.kind == w.kind.name() && s.tenant == w.tenant => None,
            other => Some((w, other.cloned())),
        })
        .collect()
}

/// Give `collection` the indexes `wanted` ([`changes`]), logging each change; a dry run only
/// logs what it would do.
pub async fn ensure_indexes<S: Sink + ?Sized>(
    sink: &S,
    collection: &str,
    wanted: &[IndexSpec],
    dry_run: bool,
) -> Result<(), SinkError> {
    if wanted.is_empty() {
        return Ok(());
    }
    let existing = if sink.exists(collection).await? {
        sink.payload_indexes(collection).await?
    } else {
        BTreeMap::new()
    };
    for (spec, was) in changes(&existing, wanted) {
        let what = match &was {
            None => format!("creating the payload index {}", spec.describe()),
            Some(w) => format!(
                "replacing the payload index on `{}` ({}{}) with {}",
                spec.field,
                w.kind,
                if w.tenant { ", tenant" } else { "" },
                spec.describe()
            ),
        };
        if dry_run {
            tracing::info!("{collection}: would be {what}");
            continue;
        }
        tracing::info!("{collection}: {what}");
        if was.is_some() {
            sink.drop_index(collection, &spec.field).await?;
        }
        sink.create_index(collection, spec).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(s: &str) -> Vec<String> {
        s.split(',').map(str::to_owned).collect()
    }

    #[test]
    fn parsed_with_types_and_the_tenant_flag() {
        let specs = parse(&items("year:integer, genres:keyword,org:keyword:tenant")).unwrap();
        let d: Vec<String> = specs.iter().map(IndexSpec::describe).collect();
        assert_eq!(d, ["year:integer", "genres:keyword", "org:keyword:tenant"]);
        for (bad, says) in [
            ("year", "not FIELD:TYPE"),
            ("year:number", "unknown type"),
            ("year:integer:tenant", "tenant field"),
            ("year:integer,year:float", "also indexed"),
            (":keyword", "no field"),
            ("a b:keyword", "payload path"),
        ] {
            let e = parse(&items(bad)).unwrap_err();
            assert!(e.contains(says) && e.contains("keyword, integer"), "{e}");
        }
    }

    #[test]
    fn only_what_differs_changes() {
        let wanted = parse(&items("a:keyword,b:integer,c:keyword:tenant")).unwrap();
        let stored = |kind: &str, tenant| StoredIndex {
            kind: kind.into(),
            tenant,
        };
        let existing = BTreeMap::from([
            ("a".to_owned(), stored("keyword", false)),
            ("b".to_owned(), stored("float", false)),
            ("c".to_owned(), stored("keyword", false)),
            ("d".to_owned(), stored("text", false)),
        ]);
        let c: Vec<(&str, Option<String>)> = changes(&existing, &wanted)
            .into_iter()
            .map(|(s, was)| (s.field.as_str(), was.map(|w| w.kind)))
            .collect();
        assert_eq!(
            c,
            [("b", Some("float".into())), ("c", Some("keyword".into()))]
        );
        assert_eq!(changes(&BTreeMap::new(), &wanted).len(), 3);
    }
}
