//! The migration catalog on disk: versions, names, checksums, up/down/verify scripts and
//! directives. Pure file reading; nothing here talks to a database.

mod catalog;
mod impact;
pub mod lint;
pub mod split;
mod version;

pub use catalog::{Catalog, CatalogError, Migration, Script, has_no_transaction_directive};
pub use impact::Impact;
pub use version::{Version, VersionError, summarize};
