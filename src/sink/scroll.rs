//! Reading a whole collection page by page, through numeric and UUID offsets alike.

use super::{Fields, MatchFilter, Sink, SinkError, StoredPoint};

/// Every point of `collection` matching `filter` with its `fields`, page by page, through
/// numeric and UUID offsets alike. Points with numeric ids are not ours: they are counted and
/// reported (a warning), never returned.
pub async fn scroll_all<S: Sink + ?Sized>(
    sink: &S,
    collection: &str,
    filter: Option<&MatchFilter>,
    fields: Fields<'_>,
) -> Result<Vec<StoredPoint>, SinkError> {
    let (points, foreign) = scroll_counted(sink, collection, filter, fields).await?;
    if foreign > 0 {
        tracing::warn!(
            "{collection}: {foreign} points with numeric ids match{}; mongo2qdrant never writes numeric ids, so they are left alone (neither compared nor pruned)",
            filter.map_or_else(String::new, |f| format!(" {}={}", f.key, f.value))
        );
    }
    Ok(points)
}

/// [`scroll_all`], and how many points with numeric ids matched.
pub async fn scroll_counted<S: Sink + ?Sized>(
    sink: &S,
    collection: &str,
    filter: Option<&MatchFilter>,
    fields: Fields<'_>,
) -> Result<(Vec<StoredPoint>, u64), SinkError> {
    let (mut out, mut foreign) = (Vec::new(), 0);
    let mut offset = None;
    loop {
        let page = sink
            .scroll(collection, filter, fields, offset, 1000)
            .await?;
        out.extend(page.points);
        foreign += page.foreign;
        match page.next {
            Some(n) => offset = Some(n),
            None => return Ok((out, foreign)),
        }
    }
}
