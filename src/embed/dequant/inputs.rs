//! The names of an ONNX graph's inputs (what a session must be fed), read from the protobuf.

use super::wire::{WIRE_LEN, records, text};
use super::{GRAPH_INITIALIZER, MODEL_GRAPH, TENSOR_NAME};

const GRAPH_INPUT: u64 = 11;
const VALUE_INFO_NAME: u64 = 1;

/// The graph's inputs, in order, without initializers (older exports list weights as inputs
/// too; those have values and need no feed).
pub fn graph_inputs(model: &[u8]) -> Result<Vec<String>, String> {
    let top = records(model)?;
    let graph = top
        .iter()
        .find(|r| r.field == MODEL_GRAPH)
        .ok_or("no graph in the ONNX model")?;
    let fields = records(graph.payload)?;
    let name_of = |payload: &[u8], field: u64| -> Result<Option<String>, String> {
        for r in records(payload)? {
            if r.field == field && r.wire == WIRE_LEN {
                return Ok(Some(text(r.payload)?.to_owned()));
            }
        }
        Ok(None)
    };
    let mut initializers = std::collections::HashSet::new();
    for r in fields.iter().filter(|r| r.field == GRAPH_INITIALIZER) {
        if let Some(n) = name_of(r.payload, TENSOR_NAME)? {
            initializers.insert(n);
        }
    }
    let mut out = Vec::new();
    for r in fields.iter().filter(|r| r.field == GRAPH_INPUT) {
        if let Some(n) = name_of(r.payload, VALUE_INFO_NAME)?
            && !initializers.contains(&n)
        {
            out.push(n);
        }
    }
    Ok(out)
}
