//! Payload indexes in the embedded store.

use std::collections::BTreeMap;

use qdrant_edge::{
    CreateIndex, FieldIndexOperations, JsonPath, KeywordIndexParams, PayloadFieldSchema,
    PayloadSchemaParams, PayloadSchemaType, UpdateOperation, UuidIndexParams,
};

use super::EdgeSink;
use crate::sink::SinkError;
use crate::sink::index::{IndexKind, IndexSpec, StoredIndex};

fn path(collection: &str, field: &str) -> Result<JsonPath, String> {
    field
        .try_into()
        .map_err(|e| format!("{collection}: payload index field `{field}`: {e:?}"))
}

impl EdgeSink {
    pub(super) async fn indexes_of(
        &self,
        collection: &str,
    ) -> Result<BTreeMap<String, StoredIndex>, SinkError> {
        self.blocking(collection, |shard| {
            let info = shard.info().map_err(|e| e.to_string())?;
            Ok(info
                .payload_schema
                .into_iter()
                .map(|(field, i)| {
                    let tenant = match &i.params {
                        Some(PayloadSchemaParams::Keyword(k)) => k.is_tenant == Some(true),
                        Some(PayloadSchemaParams::Uuid(u)) => u.is_tenant == Some(true),
                        _ => false,
                    };
                    let kind = i.data_type.name().to_owned();
                    (field.to_string(), StoredIndex { kind, tenant })
                })
                .collect())
        })
        .await
    }

    pub(super) async fn create_index_of(
        &self,
        collection: &str,
        index: &IndexSpec,
    ) -> Result<(), SinkError> {
        let kind = match index.kind {
            IndexKind::Keyword => PayloadSchemaType::Keyword,
            IndexKind::Integer => PayloadSchemaType::Integer,
            IndexKind::Float => PayloadSchemaType::Float,
            IndexKind::Bool => PayloadSchemaType::Bool,
            IndexKind::Datetime => PayloadSchemaType::Datetime,
            IndexKind::Text => PayloadSchemaType::Text,
            IndexKind::Uuid => PayloadSchemaType::Uuid,
        };
        let schema = match (index.tenant, index.kind) {
            (false, _) => PayloadFieldSchema::FieldType(kind),
            (true, IndexKind::Uuid) => {
                PayloadFieldSchema::FieldParams(PayloadSchemaParams::Uuid(UuidIndexParams {
                    is_tenant: Some(true),
                    ..UuidIndexParams::default()
                }))
            }
            (true, _) => {
                PayloadFieldSchema::FieldParams(PayloadSchemaParams::Keyword(KeywordIndexParams {
                    is_tenant: Some(true),
                    ..KeywordIndexParams::default()
                }))
            }
        };
        let op = CreateIndex {
            field_name: path(collection, &index.field)
                .map_err(|e| self.store_err(collection, e))?,
            field_schema: Some(schema),
        };
        self.apply(
            collection,
            UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(op)),
        )
        .await
    }

    pub(super) async fn drop_index_of(
        &self,
        collection: &str,
        field: &str,
    ) -> Result<(), SinkError> {
        let field = path(collection, field).map_err(|e| self.store_err(collection, e))?;
        self.apply(
            collection,
            UpdateOperation::FieldIndexOperation(FieldIndexOperations::DeleteIndex(field)),
        )
        .await
    }
}
