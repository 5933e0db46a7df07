//! Backups with the real `pg_dump`/`pg_restore`: custom format into
//! `<backups dir>/<client>/<id>.dump` with a JSON sidecar, checked readable with
//! `pg_restore --list` before it counts. The connection goes to the child process through
//! libpq's environment variables, so the password never shows in a process listing.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::process::Command;

use super::PgError;
use crate::migrations::Version;
use crate::secret::Secret;

/// The sidecar written next to each dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    pub id: String,
    pub client: String,
    pub schema_version: Option<String>,
    pub sha256: String,
    pub size: u64,
    pub created_at: DateTime<Utc>,
    pub pg_dump_version: String,
    pub file: String,
}

impl BackupInfo {
    pub fn version(&self) -> Option<Version> {
        self.schema_version.as_deref().and_then(|v| v.parse().ok())
    }
}

fn err(client: &str, message: impl Into<String>) -> PgError {
    PgError::Backup {
        client: client.to_owned(),
        message: message.into(),
    }
}

/// libpq environment for a URL: host, port, user, password, database, sslmode.
fn libpq_env(client: &str, url: &Secret) -> Result<Vec<(&'static str, String)>, PgError> {
    let parsed = reqwest::Url::parse(url.expose()).map_err(|_| PgError::BadUrl {
        client: client.to_owned(),
    })?;
    let decode = percent_decode;
    let mut env = vec![
        ("PGAPPNAME", "steward".to_owned()),
        ("PGCONNECT_TIMEOUT", "15".to_owned()),
    ];
    if let Some(host) = parsed.host_str() {
        env.push((
            "PGHOST",
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        ));
    }
    env.push(("PGPORT", parsed.port().unwrap_or(5432).to_string()));
    if !parsed.username().is_empty() {
        env.push(("PGUSER", decode(parsed.username())));
    }
    if let Some(password) = parsed.password() {
        env.push(("PGPASSWORD", decode(password)));
    }
    let db = parsed.path().trim_start_matches('/');
    if !db.is_empty() {
        env.push(("PGDATABASE", decode(db)));
    }
    for (key, value) in parsed.query_pairs() {
        if key == "sslmode" {
            env.push(("PGSSLMODE", value.into_owned()));
        }
    }
    Ok(env)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A PostgreSQL client tool. `STEWARD_PG_BINDIR` wins. Otherwise, when what PATH holds is
/// Debian's `pg_wrapper` (a Perl script that costs tens of milliseconds per call, three
/// calls per backup) and versioned installs exist, the newest is called directly: pg_dump
/// must be at least the server's major version, so the newest is the right pick anyway.
fn tool(name: &str) -> Command {
    static BINDIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    let bindir = BINDIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("STEWARD_PG_BINDIR") {
            return Some(PathBuf::from(dir));
        }
        let on_path = std::env::var_os("PATH").map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("pg_dump"))
                .find(|f| f.is_file())
        })?;
        let is_script = on_path
            .and_then(|f| std::fs::read(f).ok())
            .is_some_and(|bytes| bytes.starts_with(b"#!"));
        if !is_script {
            return None;
        }
        std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| {
                let e = e.ok()?;
                let major: u32 = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                bin.join("pg_dump").is_file().then_some((major, bin))
            })
            .max_by_key(|(major, _)| *major)
            .map(|(_, bin)| bin)
    });
    match bindir {
        Some(dir) => Command::new(dir.join(name)),
        None => Command::new(name),
    }
}

/// `pg_dump --version`, asked once per process.
async fn pg_dump_version() -> String {
    static VERSION: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    VERSION
        .get_or_init(|| async {
            match tool("pg_dump").arg("--version").output().await {
                Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
                Err(_) => "unknown".to_owned(),
            }
        })
        .await
        .clone()
}

async fn run(client: &str, mut command: Command, what: &str) -> Result<(), PgError> {
    let output = command.stdin(Stdio::null()).output().await.map_err(|e| {
        err(
            client,
            format!("cannot run {what}: {e} (install the PostgreSQL client tools)"),
        )
    })?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(err(client, format!("{what} failed: {}", stderr.trim())))
    }
}

/// Dump the database, check the dump is readable, then write the sidecar.
pub async fn take(
    client: &str,
    url: &Secret,
    dir: &Path,
    version: Option<&Version>,
) -> Result<BackupInfo, PgError> {
    let folder = dir.join(client);
    tokio::fs::create_dir_all(&folder)
        .await
        .map_err(|e| err(client, format!("cannot create {}: {e}", folder.display())))?;
    let created_at = Utc::now();
    let id = created_at.format("%Y%m%dT%H%M%S%.3fZ").to_string();
    let file = folder.join(format!("{id}.dump"));
    let partial = folder.join(format!("{id}.dump.partial"));
    let mut dump = tool("pg_dump");
    dump.args(["--format=custom", "--no-owner", "--file"])
        .arg(&partial)
        .envs(libpq_env(client, url)?);
    run(client, dump, "pg_dump").await?;
    let mut list = tool("pg_restore");
    list.arg("--list").arg(&partial).stdout(Stdio::null());
    run(
        client,
        list,
        "pg_restore --list (checking the dump is readable)",
    )
    .await?;
    tokio::fs::rename(&partial, &file)
        .await
        .map_err(|e| err(client, format!("cannot finish {}: {e}", file.display())))?;
    let bytes = tokio::fs::read(&file)
        .await
        .map_err(|e| err(client, format!("cannot read {}: {e}", file.display())))?;
    let info = BackupInfo {
        id,
        client: client.to_owned(),
        schema_version: version.map(ToString::to_string),
        sha256: hex::encode(Sha256::digest(&bytes)),
        size: bytes.len() as u64,
        created_at,
        pg_dump_version: pg_dump_version().await,
        file: file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let sidecar = folder.join(format!("{}.json", info.id));
    let json = serde_json::to_vec_pretty(&info).map_err(|e| err(client, e.to_string()))?;
    tokio::fs::write(&sidecar, json)
        .await
        .map_err(|e| err(client, format!("cannot write {}: {e}", sidecar.display())))?;
    Ok(info)
}

/// Every backup of a client, newest first. A dump without a sidecar does not count.
pub fn list(client: &str, dir: &Path) -> Result<Vec<BackupInfo>, PgError> {
    let folder = dir.join(client);
    let Ok(entries) = std::fs::read_dir(&folder) else {
        return Ok(Vec::new());
    };
    let mut out: Vec<BackupInfo> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| {
            std::fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<BackupInfo>(&b).ok())
        })
        .filter(|info| folder.join(&info.file).is_file())
        .collect();
    out.sort_by_key(|b| std::cmp::Reverse(b.created_at));
    Ok(out)
}

/// Find a backup by id, or `latest`.
pub fn find(client: &str, dir: &Path, id: &str) -> Result<(BackupInfo, PathBuf), PgError> {
    let all = list(client, dir)?;
    let info = if id == "latest" {
        all.into_iter().next()
    } else {
        all.into_iter().find(|b| b.id == id)
    };
    let info = info.ok_or_else(|| {
        err(
            client,
            format!("no backup `{id}` in {}", dir.join(client).display()),
        )
    })?;
    let path = dir.join(client).join(&info.file);
    Ok((info, path))
}

/// Restore a dump over the database, in ONE transaction: the `public` schema is dropped
/// and rebuilt from the dump (so objects created after the backup go too), and if any
/// statement fails nothing changes. `pg_restore` renders the script; `psql -1` runs it.
pub async fn restore(client: &str, url: &Secret, file: &Path) -> Result<(), PgError> {
    let script = tool("pg_restore")
        .args(["--no-owner", "--clean", "--if-exists", "--file=-"])
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| {
            err(
                client,
                format!("cannot run pg_restore: {e} (install the PostgreSQL client tools)"),
            )
        })?;
    if !script.status.success() {
        return Err(err(
            client,
            format!(
                "pg_restore failed: {}",
                String::from_utf8_lossy(&script.stderr).trim()
            ),
        ));
    }
    let mut psql = tool("psql")
        .args(["-X", "-q", "--single-transaction", "-v", "ON_ERROR_STOP=1"])
        .envs(libpq_env(client, url)?)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            err(
                client,
                format!("cannot run psql: {e} (install the PostgreSQL client tools)"),
            )
        })?;
    if let Some(mut stdin) = psql.stdin.take() {
        use tokio::io::AsyncWriteExt;
        let write = async {
            stdin
                .write_all(b"DROP SCHEMA IF EXISTS public CASCADE;\nCREATE SCHEMA public;\n")
                .await?;
            stdin.write_all(&script.stdout).await?;
            stdin.shutdown().await
        };
        write
            .await
            .map_err(|e| err(client, format!("cannot feed psql: {e}")))?;
    }
    let output = psql
        .wait_with_output()
        .await
        .map_err(|e| err(client, format!("psql: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(err(
            client,
            format!(
                "restore failed and was rolled back: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_libpq_environment_with_the_password_decoded() {
        let env = libpq_env(
            "c",
            &Secret::new("postgres://app:p%40ss@db.example:6000/main?sslmode=require"),
        )
        .expect("url");
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("PGHOST"), Some("db.example"));
        assert_eq!(get("PGPORT"), Some("6000"));
        assert_eq!(get("PGUSER"), Some("app"));
        assert_eq!(get("PGPASSWORD"), Some("p@ss"));
        assert_eq!(get("PGDATABASE"), Some("main"));
        assert_eq!(get("PGSSLMODE"), Some("require"));
    }
}
