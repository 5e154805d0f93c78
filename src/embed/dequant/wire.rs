//! The protobuf wire format, as far as reading and rewriting an ONNX graph needs it: records
//! with their bytes as they stand, varints, and length-delimited fields.

pub(super) const WIRE_VARINT: u8 = 0;
pub(super) const WIRE_I64: u8 = 1;
pub(super) const WIRE_LEN: u8 = 2;
pub(super) const WIRE_I32: u8 = 5;

/// One protobuf record: its field number, wire type, its bytes as they stand (key included),
/// and its value.
pub(super) struct Record<'a> {
    pub(super) field: u64,
    pub(super) wire: u8,
    pub(super) raw: &'a [u8],
    /// Payload of a length-delimited or fixed-size record.
    pub(super) payload: &'a [u8],
    /// Value of a varint record.
    pub(super) varint: u64,
}

pub(super) fn records(buf: &[u8]) -> Result<Vec<Record<'_>>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let start = at;
        let key = varint(buf, &mut at)?;
        let wire = (key & 7) as u8;
        let (payload, value) = match wire {
            WIRE_VARINT => (&buf[at..at], varint(buf, &mut at)?),
            WIRE_I64 | WIRE_I32 => {
                let n = if wire == WIRE_I64 { 8 } else { 4 };
                let p = buf.get(at..at + n).ok_or("truncated fixed field")?;
                at += n;
                (p, 0)
            }
            WIRE_LEN => {
                let n = varint(buf, &mut at)? as usize;
                let p = buf.get(at..at.saturating_add(n)).ok_or("truncated field")?;
                at += n;
                (p, 0)
            }
            w => return Err(format!("unsupported protobuf wire type {w}")),
        };
        out.push(Record {
            field: key >> 3,
            wire,
            raw: &buf[start..at],
            payload,
            varint: value,
        });
    }
    Ok(out)
}

pub(super) fn varint(buf: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at).ok_or("truncated varint")?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

pub(super) fn varints(buf: &[u8]) -> Result<Vec<u64>, String> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < buf.len() {
        out.push(varint(buf, &mut at)?);
    }
    Ok(out)
}

pub(super) fn text(b: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(b).map_err(|_| "a name in the ONNX graph is not UTF-8".to_owned())
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(super) fn put_len(out: &mut Vec<u8>, field: u64, payload: &[u8]) {
    put_varint(out, (field << 3) | u64::from(WIRE_LEN));
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}
