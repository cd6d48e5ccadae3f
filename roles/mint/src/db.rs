//! The mint's CDK database, as the modules that read or write it beside CDK share it.

use std::sync::Arc;

use cdk_common::database::{mint::Database, Error as DbError};

pub type MintDb = Arc<dyn Database<DbError> + Send + Sync>;
