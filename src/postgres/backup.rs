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
use super::remote::{Remote, RemoteConfig};
use crate::manifest::KeepSpec;
use crate::migrations::Version;
use crate::secret::Secret;

/// Where a fleet's backups live (one folder per client) and how many are kept. It reads
/// as the folder's path wherever a path is wanted.
#[derive(Debug, Clone)]
pub struct Store {
    pub dir: PathBuf,
    pub keep: KeepSpec,
    /// The off-machine copy (`spec.backups.store`), when configured.
    pub remote: Option<RemoteConfig>,
}

impl Store {
    /// A store that keeps everything (benchmarks, tools).
    pub fn keep_all(dir: PathBuf) -> Store {
        Store {
            dir,
            keep: KeepSpec {
                last: u32::MAX,
                days: u32::MAX,
            },
            remote: None,
        }
    }

    fn open_remote(&self, client: &str) -> Result<Option<Remote>, PgError> {
        self.remote
            .as_ref()
            .map(|config| Remote::open(client, config))
            .transpose()
    }
}

impl std::ops::Deref for Store {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.dir
    }
}

impl AsRef<Path> for Store {
    fn as_ref(&self) -> &Path {
        &self.dir
    }
}

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
    /// Where the off-machine copy is (`s3://...`), when the fleet keeps one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
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

/// Dump the database into a private temporary file, check it is readable and hash it,
/// and only then give it its name and write the sidecar. A failure at any point removes
/// what was written: no partial dump is ever listed or left behind.
pub async fn take(
    client: &str,
    url: &Secret,
    store: &Store,
    version: Option<&Version>,
) -> Result<BackupInfo, PgError> {
    let folder = private_folder(client, store)?;
    sweep_partials(&folder);
    let created_at = Utc::now();
    let id = created_at.format("%Y%m%dT%H%M%S%.3fZ").to_string();
    let file = folder.join(format!("{id}.dump"));
    // 0600 from the first byte: pg_dump truncates and fills this existing file, so its
    // mode is ours, not the process umask's. Dropped (removed) on every early return.
    let partial = tempfile::Builder::new()
        .prefix(&format!(".{id}."))
        .suffix(".partial")
        .tempfile_in(&folder)
        .map_err(|e| {
            err(
                client,
                format!("cannot create a file in {}: {e}", folder.display()),
            )
        })?;
    let mut dump = tool("pg_dump");
    dump.args(["--format=custom", "--no-owner", "--file"])
        .arg(partial.path())
        .envs(libpq_env(client, url)?);
    run(client, dump, "pg_dump").await?;
    let mut list = tool("pg_restore");
    list.arg("--list").arg(partial.path()).stdout(Stdio::null());
    run(
        client,
        list,
        "pg_restore --list (checking the dump is readable)",
    )
    .await?;
    let (sha256, size) = digest(client, partial.path()).await?;
    let mut info = BackupInfo {
        id,
        client: client.to_owned(),
        schema_version: version.map(ToString::to_string),
        sha256,
        size,
        created_at,
        pg_dump_version: pg_dump_version().await,
        file: file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        remote: None,
    };
    partial.persist(&file).map_err(|e| {
        err(
            client,
            format!("cannot finish {}: {}", file.display(), e.error),
        )
    })?;
    // Off the machine before it counts: a backup the store lacks is no backup there.
    let kept = async {
        if let Some(remote) = store.open_remote(client)? {
            remote.upload(client, &file, &info.file).await?;
            info.remote = Some(remote.url_of(client, &info.file));
            let json = serde_json::to_vec_pretty(&info).map_err(|e| err(client, e.to_string()))?;
            remote
                .put(client, &format!("{}.json", info.id), json)
                .await?;
        }
        write_sidecar(client, &folder, &info)
    }
    .await;
    if let Err(e) = kept {
        let _ = std::fs::remove_file(&file);
        return Err(e);
    }
    for old in prune(client, store, Utc::now()).await? {
        tracing::info!(client, backup = %old.id, "backup removed by spec.backups.keep");
    }
    Ok(info)
}

/// Apply `spec.backups.keep` to one client's folder: remove each backup that is neither
/// among the newest `last` nor younger than `days`. The newest always stays: it is the one
/// a run in progress, or its undo, would restore. Returns what was removed.
pub async fn prune(
    client: &str,
    store: &Store,
    now: DateTime<Utc>,
) -> Result<Vec<BackupInfo>, PgError> {
    let remote = store.open_remote(client)?;
    let last = usize::try_from(store.keep.last.max(1)).unwrap_or(usize::MAX);
    let young = chrono::Duration::days(i64::from(store.keep.days));
    let folder = store.join(client);
    let mut removed = Vec::new();
    for (i, info) in list(client, store)?.into_iter().enumerate() {
        if i < last || now.signed_duration_since(info.created_at) < young {
            continue;
        }
        let sidecar = format!("{}.json", info.id);
        if let Some(remote) = &remote {
            remote.delete(client, &sidecar).await?;
            remote.delete(client, &info.file).await?;
        }
        for file in [folder.join(&info.file), folder.join(&sidecar)] {
            match std::fs::remove_file(&file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(err(
                        client,
                        format!("cannot remove {}: {e}", file.display()),
                    ));
                }
                _ => {}
            }
        }
        removed.push(info);
    }
    Ok(removed)
}

/// The client's backups folder, created 0700 and tightened to 0700 if it already exists.
fn private_folder(client: &str, dir: &Path) -> Result<PathBuf, PgError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let folder = dir.join(client);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&folder)
        .and_then(|()| std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| err(client, format!("cannot create {}: {e}", folder.display())))?;
    Ok(folder)
}

/// Remove what a killed process left: temporary files older than an hour (a dump being
/// written now by another process is younger than that, its file touched as it grows).
fn sweep_partials(folder: &Path) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(3600));
        if stale && name.to_string_lossy().ends_with(".partial") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The sidecar, written to a private temporary file and renamed: a reader sees the whole
/// JSON or none.
fn write_sidecar(client: &str, folder: &Path, info: &BackupInfo) -> Result<(), PgError> {
    use std::io::Write as _;
    let sidecar = folder.join(format!("{}.json", info.id));
    let json = serde_json::to_vec_pretty(info).map_err(|e| err(client, e.to_string()))?;
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{}.", info.id))
        .suffix(".json.partial")
        .tempfile_in(folder)
        .map_err(|e| err(client, format!("cannot write {}: {e}", sidecar.display())))?;
    temp.write_all(&json)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| err(client, format!("cannot write {}: {e}", sidecar.display())))?;
    temp.persist(&sidecar).map_err(|e| {
        err(
            client,
            format!("cannot write {}: {}", sidecar.display(), e.error),
        )
    })?;
    Ok(())
}

/// SHA-256 and size of a file, read in chunks: a dump is never held in memory whole.
async fn digest(client: &str, path: &Path) -> Result<(String, u64), PgError> {
    use tokio::io::AsyncReadExt as _;
    let cannot = |e: std::io::Error| err(client, format!("cannot read {}: {e}", path.display()));
    let mut file = tokio::fs::File::open(path).await.map_err(cannot)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer).await.map_err(cannot)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// A backup about to be read (restore, rehearsal): its sidecar names this client and the
/// file still has the checksum it was written with. A swapped, truncated or altered dump
/// is refused before a byte of it reaches a database. A dump this machine no longer has
/// is streamed down from the store first, and checked the same way.
pub async fn check(
    client: &str,
    store: &Store,
    info: &BackupInfo,
    path: &Path,
) -> Result<(), PgError> {
    if info.client != client {
        return Err(PgError::refused(
            client,
            format!(
                "backup {} was taken from client `{}`, not this one; refusing to read it",
                info.id, info.client
            ),
        ));
    }
    if !path.is_file() {
        let remote = store.open_remote(client)?.ok_or_else(|| {
            err(
                client,
                format!("backup {} has no dump at {}", info.id, path.display()),
            )
        })?;
        private_folder(client, store)?;
        remote.download(client, &info.file, path).await?;
    }
    let (sha256, _) = digest(client, path).await?;
    if sha256 != info.sha256 {
        return Err(PgError::refused(
            client,
            format!(
                "backup {} does not match its recorded SHA-256 (the file changed after it was taken); refusing to read it",
                info.id
            ),
        ));
    }
    Ok(())
}

/// Bring the store's sidecars down, so `list` and `find` know every backup kept off the
/// machine (a new container, a lost disk). The dumps stay there until one is read.
pub async fn sync(client: &str, store: &Store) -> Result<(), PgError> {
    let Some(remote) = store.open_remote(client)? else {
        return Ok(());
    };
    let folder = private_folder(client, store)?;
    for (name, bytes) in remote.sidecars(client).await? {
        if folder.join(&name).exists() {
            continue;
        }
        match serde_json::from_slice::<BackupInfo>(&bytes) {
            Ok(info) if info.client == client => write_sidecar(client, &folder, &info)?,
            // Another client's or an unreadable sidecar is never taken as this client's.
            _ => {
                tracing::warn!(client, object = %name, "ignoring a sidecar that is not this client's")
            }
        }
    }
    Ok(())
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
        .filter(|info| info.remote.is_some() || folder.join(&info.file).is_file())
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
///
/// The update records are not the backup's to roll back: `steward_events` rows written
/// since the dump are carried across inside the same transaction, so a restore never
/// erases the history of what happened to the client, and a failed one keeps it too.
pub async fn restore(client: &str, url: &Secret, file: &Path) -> Result<(), PgError> {
    let script = restore_script(client, &["--no-owner", "--clean", "--if-exists"], file).await?;
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
            stdin.write_all(KEEP_EVENTS.as_bytes()).await?;
            stdin
                .write_all(b"DROP SCHEMA IF EXISTS public CASCADE;\nCREATE SCHEMA public;\n")
                .await?;
            stdin.write_all(&script).await?;
            stdin.write_all(put_events_back().as_bytes()).await?;
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

/// Before the restore: the records as JSON in a temporary table that outlives the schema.
const KEEP_EVENTS: &str = "CREATE TEMP TABLE steward_kept_events ON COMMIT DROP AS SELECT '[]'::json AS rows;
DO $steward$ BEGIN
  IF to_regclass('public.steward_events') IS NOT NULL THEN
    UPDATE pg_temp.steward_kept_events SET rows = (SELECT coalesce(json_agg(e), '[]') FROM public.steward_events e);
  END IF;
END $steward$;
";

/// After the restore: the table as the dump left it (or created, for a dump older than
/// steward), with every kept row the dump does not already hold, and its sequence past them.
fn put_events_back() -> String {
    format!(
        "SET search_path = public;
{table}
INSERT INTO steward_events SELECT * FROM json_populate_recordset(NULL::steward_events, (SELECT rows FROM pg_temp.steward_kept_events)) ON CONFLICT (id) DO NOTHING;
SELECT setval(pg_get_serial_sequence('steward_events', 'id'), coalesce((SELECT max(id) FROM steward_events), 1), (SELECT count(*) > 0 FROM steward_events));
",
        table = super::EVENTS_TABLE
    )
}

/// The identity written in a dump's `steward_identity` data, read from the archive
/// without touching any database. `None` when the dump holds no identity.
pub async fn identity_in(client: &str, file: &Path) -> Result<Option<super::Identity>, PgError> {
    let script = restore_script(client, &["--data-only", "--table=steward_identity"], file).await?;
    Ok(parse_identity(&String::from_utf8_lossy(&script)))
}

/// The SQL script `pg_restore ARGS --file=- FILE` renders from an archive.
async fn restore_script(client: &str, args: &[&str], file: &Path) -> Result<Vec<u8>, PgError> {
    let output = tool("pg_restore")
        .args(args)
        .arg("--file=-")
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
    if !output.status.success() {
        return Err(err(
            client,
            format!(
                "pg_restore cannot read the dump: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        ));
    }
    Ok(output.stdout)
}

/// The first row of `COPY ... steward_identity (cols) FROM stdin;` in a pg_restore script.
fn parse_identity(script: &str) -> Option<super::Identity> {
    let mut lines = script.lines();
    let header = lines.find(|l| l.starts_with("COPY ") && l.contains("steward_identity ("))?;
    let columns: Vec<&str> = header
        .split_once('(')?
        .1
        .split_once(')')?
        .0
        .split(',')
        .map(|c| c.trim().trim_matches('"'))
        .collect();
    let row = lines.next().filter(|l| *l != "\\.")?;
    let fields: Vec<&str> = row.split('\t').collect();
    let field = |name: &str| {
        columns
            .iter()
            .position(|c| *c == name)
            .and_then(|i| fields.get(i))
    };
    Some(super::Identity {
        client: field("client")?.replace("\\\\", "\\"),
        id: field("id")?.parse().ok()?,
    })
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

    #[test]
    fn the_identity_is_read_from_the_copy_block_of_a_restore_script() {
        let script = "SET x = 1;\n\nCOPY public.steward_identity (client, id, adopted_at, adopted_by, singleton) FROM stdin;\nshop\t6f1c2a4e-9d1b-4c3a-8f00-0123456789ab\t2026-01-01 00:00:00+00\tci\tt\n\\.\n";
        let identity = parse_identity(script).expect("identity");
        assert_eq!(identity.client, "shop");
        assert_eq!(
            identity.id.to_string(),
            "6f1c2a4e-9d1b-4c3a-8f00-0123456789ab"
        );
        assert_eq!(
            parse_identity("COPY public.steward_identity (client, id) FROM stdin;\n\\.\n"),
            None
        );
        assert_eq!(parse_identity("SET x = 1;\n"), None);
    }

    /// Sidecar and dump files for backups taken `ages` days before `now`.
    fn folder_with(ages: &[i64], now: DateTime<Utc>) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = dir.path().join("shop");
        std::fs::create_dir_all(&folder).expect("mkdir");
        for (i, age) in ages.iter().enumerate() {
            let info = BackupInfo {
                id: format!("b{i}"),
                client: "shop".into(),
                schema_version: None,
                sha256: String::new(),
                size: 0,
                created_at: now - chrono::Duration::days(*age),
                pg_dump_version: String::new(),
                file: format!("b{i}.dump"),
                remote: None,
            };
            std::fs::write(folder.join(&info.file), b"dump").expect("dump");
            write_sidecar("shop", &folder, &info).expect("sidecar");
        }
        let store = Store {
            dir: dir.path().to_path_buf(),
            keep: KeepSpec { last: 2, days: 7 },
            remote: None,
        };
        (dir, store)
    }

    #[tokio::test]
    async fn retention_keeps_the_newest_few_and_the_recent_and_removes_the_rest() {
        let now = Utc::now();
        // b0 is 1 day old, b1 3 days, b2 10 days, b3 40 days, b4 90 days.
        let (_dir, store) = folder_with(&[1, 3, 10, 40, 90], now);
        let removed: Vec<String> = prune("shop", &store, now)
            .await
            .expect("prune")
            .into_iter()
            .map(|b| b.id)
            .collect();
        assert_eq!(removed, ["b2", "b3", "b4"]);
        let kept: Vec<String> = list("shop", &store)
            .expect("list")
            .into_iter()
            .map(|b| b.id)
            .collect();
        assert_eq!(kept, ["b0", "b1"]);
        assert!(!store.join("shop/b3.dump").exists() && !store.join("shop/b3.json").exists());
    }

    #[tokio::test]
    async fn the_newest_backup_stays_however_old_it_is() {
        let now = Utc::now();
        let (_dir, mut store) = folder_with(&[400, 500], now);
        store.keep = KeepSpec { last: 0, days: 0 };
        let removed = prune("shop", &store, now).await.expect("prune");
        assert_eq!(removed.len(), 1);
        assert_eq!(list("shop", &store).expect("list")[0].id, "b0");
    }
}
