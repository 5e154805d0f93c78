//! Text extraction: a template over document fields (`{title}\n{extract}`) renders the text to
//! embed; payload fields are copied as relaxed Extended JSON. A document with none of the
//! template's fields renders to `None` (skipped and counted, never an error).

use mongodb::bson::{Bson, Document};
use serde_json::{Map, Value};

/// Error in a template string, reported before any document is read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("template has an unclosed `{{` at byte {0}; write `{{{{` for a literal brace")]
    Unclosed(usize),
    #[error("template has an empty field `{{}}` at byte {0}; name a field such as `{{title}}`")]
    EmptyField(usize),
    #[error("template has a stray `}}` at byte {0}; write `}}}}` for a literal brace")]
    StrayClose(usize),
    #[error("template names no field; use e.g. --text '{{title}}\\n{{body}}'")]
    NoFields,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Field(Vec<String>),
}

/// A parsed text template. `\n` and `\t` in the source are turned into newline and tab, so
/// that a shell-quoted `'{title}\n{body}'` does what it looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

impl Template {
    /// Parse `source`; fails on unbalanced braces or a template without fields.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let bytes: Vec<char> = source.chars().collect();
        let mut i = 0;
        let mut byte_pos = 0;
        while i < bytes.len() {
            let c = bytes[i];
            let next = bytes.get(i + 1).copied();
            match (c, next) {
                ('{', Some('{')) => {
                    lit.push('{');
                    i += 2;
                    byte_pos += 2;
                }
                ('}', Some('}')) => {
                    lit.push('}');
                    i += 2;
                    byte_pos += 2;
                }
                ('\\', Some('n')) => {
                    lit.push('\n');
                    i += 2;
                    byte_pos += 2;
                }
                ('\\', Some('t')) => {
                    lit.push('\t');
                    i += 2;
                    byte_pos += 2;
                }
                ('{', _) => {
                    let start = byte_pos;
                    let close = bytes[i + 1..]
                        .iter()
                        .position(|&ch| ch == '}')
                        .ok_or(TemplateError::Unclosed(start))?;
                    let name: String = bytes[i + 1..i + 1 + close].iter().collect();
                    let name = name.trim();
                    if name.is_empty() {
                        return Err(TemplateError::EmptyField(start));
                    }
                    if !lit.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Field(name.split('.').map(str::to_owned).collect()));
                    byte_pos += bytes[i..i + close + 2]
                        .iter()
                        .map(|c| c.len_utf8())
                        .sum::<usize>();
                    i += close + 2;
                }
                ('}', _) => return Err(TemplateError::StrayClose(byte_pos)),
                _ => {
                    lit.push(c);
                    i += 1;
                    byte_pos += c.len_utf8();
                }
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Literal(lit));
        }
        if !pieces.iter().any(|p| matches!(p, Piece::Field(_))) {
            return Err(TemplateError::NoFields);
        }
        Ok(Self {
            source: source.to_owned(),
            pieces,
        })
    }

    /// The template as the user wrote it (part of the content hash).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Top-level field names the template reads (for a projection).
    pub fn fields(&self) -> impl Iterator<Item = String> + '_ {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Field(path) => Some(path.join(".")),
            Piece::Literal(_) => None,
        })
    }

    /// Render `doc`; `None` when none of the template's fields has a value or the text is blank.
    pub fn render(&self, doc: &Document) -> Option<String> {
        let mut out = String::new();
        let mut found = false;
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => out.push_str(s),
                Piece::Field(path) => {
                    let mut values = Vec::new();
                    lookup_doc(doc, path, &mut values);
                    let rendered: Vec<String> = values.iter().filter_map(bson_text).collect();
                    if !rendered.is_empty() {
                        found = true;
                        out.push_str(&rendered.join(", "));
                    }
                }
            }
        }
        (found && !out.trim().is_empty()).then_some(out)
    }
}

/// Collect the values at `path` under the document `doc`, descending through arrays.
fn lookup_doc<'a>(doc: &'a Document, path: &[String], out: &mut Vec<&'a Bson>) {
    if let Some((head, rest)) = path.split_first()
        && let Some(v) = doc.get(head)
    {
        lookup(v, rest, out);
    }
}

/// Collect the values at `path` under `value`, descending through arrays.
fn lookup<'a>(value: &'a Bson, path: &[String], out: &mut Vec<&'a Bson>) {
    match (value, path.split_first()) {
        (v, None) => out.push(v),
        (Bson::Document(d), Some((head, rest))) => {
            if let Some(v) = d.get(head) {
                lookup(v, rest, out);
            }
        }
        (Bson::Array(items), Some(_)) => {
            for item in items {
                lookup(item, path, out);
            }
        }
        _ => {}
    }
}

/// Text of one value; `None` for null/undefined/empty or whitespace only (a field of blanks
/// renders like a missing one).
fn bson_text(v: &&Bson) -> Option<String> {
    let s = match v {
        Bson::Null | Bson::Undefined => return None,
        Bson::String(s) => s.clone(),
        Bson::Symbol(s) => s.clone(),
        Bson::Boolean(b) => b.to_string(),
        Bson::Int32(i) => i.to_string(),
        Bson::Int64(i) => i.to_string(),
        Bson::Double(d) => d.to_string(),
        Bson::Decimal128(d) => d.to_string(),
        Bson::ObjectId(o) => o.to_hex(),
        Bson::DateTime(d) => d
            .try_to_rfc3339_string()
            .unwrap_or_else(|_| d.timestamp_millis().to_string()),
        Bson::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(|i| bson_text(&i)).collect();
            if parts.is_empty() {
                return None;
            }
            parts.join(", ")
        }
        other => (*other).clone().into_relaxed_extjson().to_string(),
    };
    (!s.trim().is_empty()).then_some(s)
}

/// Copy the fields at `paths` (dotted) out of `doc` as relaxed Extended JSON. Missing fields are
/// left out.
pub fn payload_fields(doc: &Document, paths: &[String]) -> Map<String, Value> {
    let mut out = Map::new();
    for p in paths {
        let parts: Vec<String> = p.split('.').map(str::to_owned).collect();
        let mut found = Vec::new();
        lookup_doc(doc, &parts, &mut found);
        let value = match found.len() {
            0 => continue,
            1 => found[0].clone().into_relaxed_extjson(),
            _ => Value::Array(
                found
                    .into_iter()
                    .map(|b| b.clone().into_relaxed_extjson())
                    .collect(),
            ),
        };
        out.insert(p.clone(), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;

    use super::*;

    /// A whitespace-only field rendered "Title:   " while an empty one was skipped.
    #[test]
    fn a_whitespace_only_field_renders_like_an_empty_one() {
        let t = Template::parse("Title: {title}").unwrap();
        for blank in ["", "   ", "\t\n"] {
            assert_eq!(t.render(&doc! {"title": blank}), None, "{blank:?}");
        }
        let t = Template::parse("{title} / {tags}").unwrap();
        assert_eq!(
            t.render(&doc! {"title": " ", "tags": ["a", "  ", "b"]})
                .as_deref(),
            Some(" / a, b")
        );
    }

    #[test]
    fn renders_fields_and_escapes() {
        let t = Template::parse(r"{title}\n{extract} {{x}}").unwrap();
        let d = doc! {"title": "Alien", "extract": "A film."};
        assert_eq!(t.render(&d).unwrap(), "Alien\nA film. {x}");
    }

    #[test]
    fn nested_paths_and_arrays() {
        let t = Template::parse("{meta.genre}: {cast} / {crew.name} / {year}").unwrap();
        let d = doc! {
            "meta": {"genre": "Drama"},
            "cast": ["A", "B"],
            "crew": [{"name": "C"}, {"name": "D"}, {"role": "x"}],
            "year": 1999,
        };
        assert_eq!(t.render(&d).unwrap(), "Drama: A, B / C, D / 1999");
    }

    #[test]
    fn none_of_the_fields_means_skip() {
        let t = Template::parse("{title}\n{extract}").unwrap();
        assert_eq!(t.render(&doc! {"other": 1}), None);
        assert_eq!(t.render(&doc! {"title": Bson::Null}), None);
        assert_eq!(t.render(&doc! {"title": "  "}), None);
        // one field present is enough
        assert_eq!(t.render(&doc! {"extract": "x"}).unwrap(), "\nx");
    }

    #[test]
    fn template_errors_name_the_fix() {
        assert_eq!(Template::parse("{a"), Err(TemplateError::Unclosed(0)));
        assert_eq!(Template::parse("x {}"), Err(TemplateError::EmptyField(2)));
        assert_eq!(Template::parse("a}"), Err(TemplateError::StrayClose(1)));
        assert_eq!(Template::parse("plain"), Err(TemplateError::NoFields));
        assert!(
            TemplateError::NoFields
                .to_string()
                .contains("--text '{title}")
        );
    }

    #[test]
    fn payload_copies_chosen_fields() {
        let d = doc! {"title": "T", "year": 2001, "a": {"b": [1, 2]}};
        let p = payload_fields(
            &d,
            &["title".into(), "year".into(), "a.b".into(), "zz".into()],
        );
        assert_eq!(p["title"], "T");
        assert_eq!(p["year"], 2001);
        assert_eq!(p["a.b"], serde_json::json!([1, 2]));
        assert!(!p.contains_key("zz"));
    }
}
