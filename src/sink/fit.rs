//! Does a target collection fit the model? One decision for every backend: [`fit`] is a pure
//! function over (what exists, what is wanted, what may be done); [`ensure_collection`] carries
//! it out with the backend's primitives.

use super::{Shape, Sink, SinkError, VectorParams, VectorSpec};

/// What [`ensure_collection`] may do to make a collection fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensure {
    /// Create the collection, or add the named vector; refuse an incompatible collection.
    Create,
    /// Write nothing; only refuse an incompatible collection (dry runs).
    Check,
}

/// What to do about a collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// It fits (or, in a check, would be made to fit): nothing to do.
    Ready,
    /// It does not exist: create it.
    Create,
    /// A collection of named vectors lacks this name: add it.
    AddVector,
}

fn describe(dimension: usize, distance: &str) -> String {
    format!("dimension {dimension} and {distance} distance")
}

/// The decision for `collection` as it exists (`None`: it does not), given the wanted vector
/// and the mode. An incompatible collection is refused with a message naming the fix.
pub fn fit(
    collection: &str,
    existing: Option<&Shape>,
    wanted: &VectorSpec,
    mode: Ensure,
) -> Result<Fit, SinkError> {
    let Some(shape) = existing else {
        return Ok(if mode == Ensure::Check {
            Fit::Ready
        } else {
            Fit::Create
        });
    };
    let found: Option<&VectorParams> = match (shape, &wanted.name) {
        (Shape::Unnamed(p), None) => Some(p),
        (Shape::Named(m), Some(name)) => m.get(name),
        _ => None,
    };
    if found.is_some_and(|p| {
        p.dimension == wanted.dimension && p.distance == wanted.distance.qdrant_name()
    }) {
        return Ok(Fit::Ready);
    }
    // A collection of named vectors takes another name; the unnamed vector stays alone.
    if found.is_none() && matches!(shape, Shape::Named(_)) && wanted.name.is_some() {
        return Ok(if mode == Ensure::Check {
            Fit::Ready
        } else {
            Fit::AddVector
        });
    }
    Err(SinkError::Incompatible {
        collection: collection.to_owned(),
        found: match found {
            Some(p) => describe(p.dimension, &p.distance),
            None if wanted.name.is_none() => "named vectors (pass --vector-name)".into(),
            None => "one unnamed vector (drop --vector-name)".into(),
        },
        wanted: describe(wanted.dimension, wanted.distance.qdrant_name()),
    })
}

/// Create `collection` for `vectors` (with `settings`), or check that the existing one fits; a
/// named vector that
/// an existing collection of named vectors lacks is added to it. An incompatible collection is
/// refused and left untouched (`--recreate` is decided per target, over all of its jobs'
/// vectors, by the pipeline).
pub async fn ensure_collection<S: Sink + ?Sized>(
    sink: &S,
    collection: &str,
    vectors: &VectorSpec,
    settings: &super::Settings,
    mode: Ensure,
) -> Result<(), SinkError> {
    let shape = sink.shape(collection).await?;
    let made = match fit(collection, shape.as_ref(), vectors, mode)? {
        Fit::Ready => return Ok(()),
        Fit::Create => sink.create_collection(collection, vectors, settings).await,
        Fit::AddVector => {
            let name = vectors.name.as_deref().unwrap_or_default();
            sink.add_vector(collection, name, vectors.dimension, vectors.distance)
                .await
        }
    };
    match made {
        Ok(()) => Ok(()),
        // Another writer (a shard beside this one) may have made it in between: what is there
        // now decides.
        Err(e) => {
            let now = sink.shape(collection).await?;
            match fit(collection, now.as_ref(), vectors, mode) {
                Ok(Fit::Ready) => Ok(()),
                _ => Err(e),
            }
        }
    }
}

/// The decision for the sparse vector `name` of `collection`, given its dense vectors
/// (`shape`, `None`: no collection) and its sparse ones. A sparse vector is wanted with the `idf`
/// modifier (BM25's inverse document frequency, applied at search time); one without it, or a
/// dense vector of that name, is refused naming the fix.
pub fn fit_sparse(
    collection: &str,
    shape: Option<&Shape>,
    sparse: Option<&std::collections::BTreeMap<String, bool>>,
    name: &str,
    mode: Ensure,
) -> Result<Fit, SinkError> {
    let ready_or = |fit| {
        if mode == Ensure::Check {
            Fit::Ready
        } else {
            fit
        }
    };
    let Some(shape) = shape else {
        return Ok(ready_or(Fit::Create));
    };
    let wanted = format!("a sparse vector `{name}` with the idf modifier");
    if matches!(shape, Shape::Named(m) if m.contains_key(name)) {
        return Err(SinkError::Incompatible {
            collection: collection.to_owned(),
            found: format!(
                "a dense vector named `{name}` (give the sparse one another --sparse-name)"
            ),
            wanted,
        });
    }
    match sparse.and_then(|m| m.get(name)) {
        Some(true) => Ok(Fit::Ready),
        Some(false) => Err(SinkError::Incompatible {
            collection: collection.to_owned(),
            found: format!("a sparse vector `{name}` without the idf modifier"),
            wanted,
        }),
        None => Ok(ready_or(Fit::AddVector)),
    }
}

/// Give `collection` the sparse vector `name` ([`fit_sparse`]): create the collection with it
/// alone (a sparse-only target), or add it.
pub async fn ensure_sparse<S: Sink + ?Sized>(
    sink: &S,
    collection: &str,
    name: &str,
    settings: &super::Settings,
) -> Result<(), SinkError> {
    let decide = async || {
        let shape = sink.shape(collection).await?;
        let sparse = sink.sparse_vectors(collection).await?;
        fit_sparse(
            collection,
            shape.as_ref(),
            sparse.as_ref(),
            name,
            Ensure::Create,
        )
    };
    let made = match decide().await? {
        Fit::Ready => return Ok(()),
        Fit::Create => {
            sink.create_sparse_collection(collection, name, settings)
                .await
        }
        Fit::AddVector => sink.add_sparse(collection, name).await,
    };
    match made {
        Ok(()) => Ok(()),
        // Another writer may have made it in between: what is there now decides.
        Err(e) => match decide().await {
            Ok(Fit::Ready) => Ok(()),
            _ => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn params(dimension: usize, distance: &str) -> VectorParams {
        VectorParams {
            dimension,
            distance: distance.into(),
        }
    }

    fn spec(name: Option<&str>, dimension: usize) -> VectorSpec {
        VectorSpec {
            name: name.map(str::to_owned),
            dimension,
            distance: crate::sink::Distance::Cosine,
        }
    }

    fn named(names: &[&str]) -> Shape {
        Shape::Named(
            names
                .iter()
                .map(|n| (n.to_string(), params(384, "Cosine")))
                .collect::<BTreeMap<_, _>>(),
        )
    }

    #[test]
    fn a_missing_collection_is_created_except_in_a_check() {
        let s = spec(None, 384);
        assert_eq!(fit("c", None, &s, Ensure::Create).unwrap(), Fit::Create);
        assert_eq!(fit("c", None, &s, Ensure::Check).unwrap(), Fit::Ready);
    }

    #[test]
    fn a_matching_collection_is_ready() {
        let shape = Shape::Unnamed(params(384, "Cosine"));
        let s = spec(None, 384);
        for mode in [Ensure::Create, Ensure::Check] {
            assert_eq!(fit("c", Some(&shape), &s, mode).unwrap(), Fit::Ready);
        }
        let s = spec(Some("title"), 384);
        assert_eq!(
            fit("c", Some(&named(&["title"])), &s, Ensure::Create).unwrap(),
            Fit::Ready
        );
    }

    #[test]
    fn another_dimension_is_refused_naming_both_and_the_fix() {
        let shape = Shape::Unnamed(params(768, "Cosine"));
        let e = fit("c", Some(&shape), &spec(None, 384), Ensure::Create).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("dimension 768") && msg.contains("dimension 384"),
            "{msg}"
        );
        assert!(msg.contains("--recreate"), "{msg}");
        let dot = Shape::Unnamed(params(384, "Dot"));
        assert!(fit("c", Some(&dot), &spec(None, 384), Ensure::Check).is_err());
        // A model trained for dot product fits that collection, and not a cosine one.
        let mut dot_model = spec(None, 384);
        dot_model.distance = crate::sink::Distance::Dot;
        assert_eq!(
            fit("c", Some(&dot), &dot_model, Ensure::Create).unwrap(),
            Fit::Ready
        );
        let cosine = Shape::Unnamed(params(384, "Cosine"));
        let msg = fit("c", Some(&cosine), &dot_model, Ensure::Create)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("Dot distance") && msg.contains("Cosine distance"),
            "{msg}"
        );
    }

    #[test]
    fn a_sparse_vector_needs_the_idf_modifier_and_its_own_name() {
        let unnamed = Shape::Unnamed(params(384, "Cosine"));
        let with = |idf| BTreeMap::from([("bm25".to_string(), idf)]);
        let f = |shape, sparse, mode| fit_sparse("c", shape, sparse, "bm25", mode);
        assert_eq!(f(None, None, Ensure::Create).unwrap(), Fit::Create);
        assert_eq!(f(None, None, Ensure::Check).unwrap(), Fit::Ready);
        let none = BTreeMap::new();
        assert_eq!(
            f(Some(&unnamed), Some(&none), Ensure::Create).unwrap(),
            Fit::AddVector
        );
        let (idf, plain) = (with(true), with(false));
        assert_eq!(
            f(Some(&unnamed), Some(&idf), Ensure::Create).unwrap(),
            Fit::Ready
        );
        let msg = f(Some(&unnamed), Some(&plain), Ensure::Check)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("without the idf modifier") && msg.contains("--recreate"),
            "{msg}"
        );
        let msg = f(Some(&named(&["bm25"])), Some(&none), Ensure::Create)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("--sparse-name"), "{msg}");
    }

    #[test]
    fn a_new_name_is_added_to_named_vectors_only() {
        let s = spec(Some("plot"), 384);
        assert_eq!(
            fit("c", Some(&named(&["title"])), &s, Ensure::Create).unwrap(),
            Fit::AddVector
        );
        assert_eq!(
            fit("c", Some(&named(&["title"])), &s, Ensure::Check).unwrap(),
            Fit::Ready
        );
        let unnamed = Shape::Unnamed(params(384, "Cosine"));
        let msg = fit("c", Some(&unnamed), &s, Ensure::Create)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("drop --vector-name"), "{msg}");
        let msg = fit(
            "c",
            Some(&named(&["title"])),
            &spec(None, 384),
            Ensure::Create,
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("pass --vector-name"), "{msg}");
    }
}
