//! What a collection's vectors are: their names, dimensions and distance.

/// Shape of a target collection's vectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorSpec {
    /// `None`: the collection's single unnamed vector.
    pub name: Option<String>,
    pub dimension: usize,
    pub distance: Distance,
}

/// How a collection compares vectors: the model's similarity function, unless `--distance`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Deserialize,
    serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Distance {
    #[default]
    Cosine,
    Dot,
    Euclid,
    Manhattan,
}

impl Distance {
    /// As Qdrant names it.
    pub fn qdrant_name(self) -> &'static str {
        match self {
            Distance::Cosine => "Cosine",
            Distance::Dot => "Dot",
            Distance::Euclid => "Euclid",
            Distance::Manhattan => "Manhattan",
        }
    }
}

/// What an existing collection holds: one unnamed vector, or named ones.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    Unnamed(VectorParams),
    Named(std::collections::BTreeMap<String, VectorParams>),
}

/// Size and distance of one stored vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorParams {
    pub dimension: usize,
    /// As Qdrant names it (`Cosine`, `Dot`, ...).
    pub distance: String,
}
