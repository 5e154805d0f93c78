//! Payload indexes on a Qdrant server.

use std::collections::BTreeMap;

use qdrant_client::qdrant::{
    CreateFieldIndexCollectionBuilder, DeleteFieldIndexCollectionBuilder, FieldType,
    KeywordIndexParams, PayloadSchemaType, UuidIndexParams, payload_index_params::IndexParams,
};

use super::GrpcSink;
use super::convert::request_err;
use crate::sink::SinkError;
use crate::sink::index::{IndexKind, IndexSpec, StoredIndex};

impl GrpcSink {
    pub(super) async fn indexes_of(
        &self,
        collection: &str,
    ) -> Result<BTreeMap<String, StoredIndex>, SinkError> {
        let info = self.info(collection).await?;
        Ok(info
            .payload_schema
            .into_iter()
            .map(|(field, s)| {
                let kind = PayloadSchemaType::try_from(s.data_type)
                    .map_or_else(|_| "unknown".to_owned(), |t| t.as_str_name().to_lowercase());
                let tenant = match s.params.and_then(|p| p.index_params) {
                    Some(IndexParams::KeywordIndexParams(k)) => k.is_tenant == Some(true),
                    Some(IndexParams::UuidIndexParams(u)) => u.is_tenant == Some(true),
                    _ => false,
                };
                (field, StoredIndex { kind, tenant })
            })
            .collect())
    }

    pub(super) async fn create_index_of(
        &self,
        collection: &str,
        index: &IndexSpec,
    ) -> Result<(), SinkError> {
        let kind = match index.kind {
            IndexKind::Keyword => FieldType::Keyword,
            IndexKind::Integer => FieldType::Integer,
            IndexKind::Float => FieldType::Float,
            IndexKind::Bool => FieldType::Bool,
            IndexKind::Datetime => FieldType::Datetime,
            IndexKind::Text => FieldType::Text,
            IndexKind::Uuid => FieldType::Uuid,
        };
        let mut req =
            CreateFieldIndexCollectionBuilder::new(collection, &index.field, kind).wait(true);
        if index.tenant {
            let params: IndexParams = match index.kind {
                IndexKind::Uuid => IndexParams::UuidIndexParams(UuidIndexParams {
                    is_tenant: Some(true),
                    ..Default::default()
                }),
                _ => IndexParams::KeywordIndexParams(KeywordIndexParams {
                    is_tenant: Some(true),
                    ..Default::default()
                }),
            };
            req = req.field_index_params(params);
        }
        self.client
            .create_field_index(req)
            .await
            .map_err(|e| request_err("create_field_index", collection, e))?;
        Ok(())
    }

    pub(super) async fn drop_index_of(
        &self,
        collection: &str,
        field: &str,
    ) -> Result<(), SinkError> {
        self.client
            .delete_field_index(
                DeleteFieldIndexCollectionBuilder::new(collection, field).wait(true),
            )
            .await
            .map_err(|e| request_err("delete_field_index", collection, e))?;
        Ok(())
    }
}
