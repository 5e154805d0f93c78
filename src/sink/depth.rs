//! How deep a payload value nests, and how deep a target can return one.

use serde_json::Value;

/// How deep a payload value may nest for a target that can return it: JSON objects and arrays
/// count one level each. Qdrant's gRPC API encodes each level as nested protobuf messages and
/// the client's decoder stops at 100 of them: measured against Qdrant 1.19, a value 32 levels
/// deep comes back and one 33 deep cannot be read. We keep a margin of two.
pub const MAX_GRPC_PAYLOAD_DEPTH: usize = 30;

/// Nesting depth of `v`: 0 for a scalar, 1 + the deepest child for an object or array.
pub fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}
