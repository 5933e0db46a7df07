//! Opening a connection to a client database: one connection per operation (never a pool
//! per client — a daemon with a thousand clients must fit under `max_connections`),
//! tagged `application_name=steward`, and refused for writes through a transaction-mode
//! pooler, where session advisory locks and prepared statements silently break.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

use super::PgError;
use crate::secret::Secret;

/// Read-only sessions are for planning: `default_transaction_read_only` makes any write
/// fail inside Postgres itself, whatever the code above does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// Connect to a client's database.
pub async fn connect(client: &str, url: &Secret, access: Access) -> Result<PgConnection, PgError> {
    let options = PgConnectOptions::from_str(url.expose())
        .map_err(|_| PgError::BadUrl {
            client: client.to_owned(),
        })?
        .application_name("steward")
        .statement_cache_capacity(0)
        .log_statements(tracing::log::LevelFilter::Debug)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(5))
        // "already exists, skipping" notices from idempotent DDL are not news.
        .options([("client_min_messages", "warning")]);
    let options = match access {
        Access::ReadOnly => options.options([("default_transaction_read_only", "on")]),
        Access::ReadWrite => options,
    };
    if access == Access::ReadWrite && looks_like_transaction_pooler(&options) {
        return Err(PgError::TransactionPooler {
            client: client.to_owned(),
            port: options.get_port(),
        });
    }
    let conn = tokio::time::timeout(
        Duration::from_secs(15),
        PgConnection::connect_with(&options),
    )
    .await
    .map_err(|_| PgError::Unreachable {
        client: client.to_owned(),
        reason: "timed out after 15 s".to_owned(),
    })?
    .map_err(|err| PgError::Unreachable {
        client: client.to_owned(),
        reason: redact(&super::explain::explain(&err), url),
    })?;
    Ok(conn)
}

/// Supabase's transaction-mode pooler (Supavisor/PgBouncer) listens on 6543, and its
/// pooled hosts are `*.pooler.supabase.com`; session mode is 5432 on the same host.
fn looks_like_transaction_pooler(options: &PgConnectOptions) -> bool {
    options.get_port() == 6543
}

/// Make sure a driver error never echoes the URL (and its password) back.
fn redact(message: &str, url: &Secret) -> String {
    let mut out = message.replace(url.expose(), "<database url>");
    if let Some(password) = password_of(url.expose()) {
        out = out.replace(&password, "<redacted>");
    }
    out
}

fn password_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    let password = userinfo.split_once(':')?.1;
    (!password.is_empty()).then(|| password.to_owned())
}

/// Close politely; a failure to close is not worth reporting.
pub async fn close(conn: PgConnection) {
    let _ = conn.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transaction_pooler_port_is_recognised() {
        let pooled =
            PgConnectOptions::from_str("postgres://u:p@aws-0-eu.pooler.supabase.com:6543/postgres")
                .expect("url");
        let direct = PgConnectOptions::from_str("postgres://u:p@db.abc.supabase.co:5432/postgres")
            .expect("url");
        assert!(looks_like_transaction_pooler(&pooled));
        assert!(!looks_like_transaction_pooler(&direct));
    }

    #[test]
    fn errors_never_echo_the_password() {
        let url = Secret::new("postgres://app:s3cr3t-pw@db:5432/x");
        let text = redact(
            "failed to connect to postgres://app:s3cr3t-pw@db:5432/x: password s3cr3t-pw rejected",
            &url,
        );
        assert!(!text.contains("s3cr3t-pw"), "{text}");
    }
}
