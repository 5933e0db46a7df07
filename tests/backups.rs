//! Backups are private and whole, and a restore reads only this client's own, unaltered
//! dump: a real Postgres, the real `pg_dump`/`pg_restore`, and the `steward` binary.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::fleet::World;
use common::{assert_exit, stderr, stdout};

fn backups(world: &World) -> PathBuf {
    world.path().join("backups/shop")
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

async fn count(world: &World, sql: &str) -> i64 {
    let mut conn = world.db.connect().await;
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Copy one client's backups folder into another's.
fn copy_backups(from: &World, to: &World) {
    let target = backups(to);
    fs::create_dir_all(&target).expect("mkdir");
    for name in names(&backups(from)) {
        fs::copy(backups(from).join(&name), target.join(&name)).expect("copy");
    }
}

/// The newest dump (ids are timestamps, so names sort by age).
fn the_dump(world: &World) -> PathBuf {
    let dump = names(&backups(world))
        .into_iter()
        .rfind(|n| n.ends_with(".dump"))
        .expect("a dump");
    backups(world).join(dump)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_is_0600_in_a_0700_folder_with_no_temporary_file_left_and_is_recorded() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    // A folder made by someone else with a loose mode is tightened, not trusted.
    fs::create_dir_all(backups(&world)).expect("mkdir");
    fs::set_permissions(backups(&world), fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = world.setup(&["backup", "shop"]);
    world.assert_no_secret(&out);
    // Sizes and durations in human units, never a raw byte count.
    assert!(
        stdout(&out).contains(" KiB in ") && !stdout(&out).contains(" bytes"),
        "{}",
        stdout(&out)
    );

    assert_eq!(mode(&backups(&world)), 0o700, "the client's folder");
    let files = names(&backups(&world));
    assert_eq!(files.len(), 2, "one dump and its sidecar: {files:?}");
    assert!(files.iter().any(|f| f.ends_with(".dump")), "{files:?}");
    assert!(files.iter().any(|f| f.ends_with(".json")), "{files:?}");
    for file in &files {
        assert_eq!(mode(&backups(&world).join(file)), 0o600, "{file}");
    }
    assert_eq!(
        count(
            &world,
            "select count(*) from steward_events where step = 'backup' and outcome in ('intent', 'succeeded', 'completed')"
        )
        .await,
        3,
        "a manual backup runs through the executor: intent, outcome and the run's record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_that_fails_halfway_leaves_no_file_behind_and_earlier_backups_stay() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    world.setup(&["backup", "shop"]);
    let before = names(&backups(&world));

    // A pg_dump that writes part of an archive into its --file and then dies.
    let bin = tempfile::tempdir().expect("tempdir");
    let fake = bin.path().join("pg_dump");
    fs::write(
        &fake,
        "#!/bin/sh\nout=\nprev=\nfor a in \"$@\"; do [ \"$prev\" = --file ] && out=\"$a\"; prev=\"$a\"; done\nprintf 'PGDMP half an archive' > \"$out\"\necho 'pg_dump: error: connection to server lost' >&2\nexit 1\n",
    )
    .expect("write");
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).expect("chmod");
    let failed = world
        .command(&["backup", "shop"])
        .env("STEWARD_PG_BINDIR", bin.path())
        .output()
        .expect("run");
    assert_exit(&failed, 1);
    assert!(
        stderr(&failed).contains("connection to server lost"),
        "the error says why: {}",
        stderr(&failed)
    );
    assert_eq!(
        names(&backups(&world)),
        before,
        "nothing of the failed dump survives, and the earlier backup is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_another_databases_dump_before_writing_and_leaves_the_data_untouched() {
    let other = World::new().await;
    other.setup(&["adopt", "shop"]);
    other.setup(&["backup", "shop"]);

    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    world.setup(&["apply", "shop", "--yes"]);
    world.setup(&["backup", "shop"]);
    let members = "select count(*) from pg_tables where tablename = 'members'";
    assert_eq!(count(&world, members).await, 1);
    // The other database's dump is newer, so `latest` picks it.
    copy_backups(&other, &world);
    let other_id = names(&backups(&other))
        .into_iter()
        .find_map(|n| n.strip_suffix(".json").map(str::to_owned))
        .expect("the other backup's id");

    let refused = world.steward(&["restore", "shop", "--backup", &other_id, "--yes"]);
    assert_exit(&refused, 3);
    assert!(
        stderr(&refused).contains("another database")
            && stderr(&refused).contains("nothing was written"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        count(&world, members).await,
        1,
        "the database was not touched: the members table is still there"
    );
    // The client's own backup is still accepted afterwards.
    let own = names(&backups(&world))
        .into_iter()
        .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
        .find(|id| *id != other_id)
        .expect("own backup");
    let restored = world.steward(&["restore", "shop", "--backup", &own, "--yes"]);
    assert_exit(&restored, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_changed_after_it_was_taken_or_filed_under_another_client_is_refused() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    world.setup(&["apply", "shop", "--yes"]);
    world.setup(&["backup", "shop"]);
    let dump = the_dump(&world);
    let sidecar = dump.with_extension("json");

    let mut bytes = fs::read(&dump).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&dump, &bytes).expect("write");
    let altered = world.steward(&["restore", "shop", "--backup", "latest", "--yes"]);
    assert_exit(&altered, 3);
    assert!(stderr(&altered).contains("SHA-256"), "{}", stderr(&altered));
    bytes[last] ^= 0xff;
    fs::write(&dump, &bytes).expect("write");

    let json = fs::read_to_string(&sidecar).expect("sidecar");
    fs::write(
        &sidecar,
        json.replace("\"client\": \"shop\"", "\"client\": \"corner\""),
    )
    .expect("write");
    let misfiled = world.steward(&["restore", "shop", "--backup", "latest", "--yes"]);
    assert_exit(&misfiled, 3);
    assert!(
        stderr(&misfiled).contains("client `corner`"),
        "{}",
        stderr(&misfiled)
    );
    assert_eq!(
        count(
            &world,
            "select count(*) from steward_events where step = 'restore'"
        )
        .await,
        0,
        "no refused restore ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_keeps_the_update_records_written_after_the_backup_and_records_itself() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    world.setup(&["backup", "shop"]);
    world.setup(&["apply", "shop", "--yes"]);
    let completed =
        "select count(*) from steward_events where step = 'apply' and outcome = 'completed'";
    assert_eq!(count(&world, completed).await, 1);

    let restored = world.steward(&["restore", "shop", "--backup", "latest", "--yes"]);
    assert_exit(&restored, 0);
    assert!(
        stdout(&restored).contains("marked rolled_back"),
        "{}",
        stdout(&restored)
    );
    assert_eq!(
        count(
            &world,
            "select count(*) from pg_tables where tablename = 'members'"
        )
        .await,
        0,
        "the data is the backup's"
    );
    assert_eq!(
        count(&world, completed).await,
        1,
        "the apply written after the backup is still on record"
    );
    assert_eq!(
        count(
            &world,
            "select count(*) from steward_events where step = 'restore' and outcome = 'completed' and detail like 'restored backup %'"
        )
        .await,
        1,
        "the restore recorded itself"
    );
    // New records still get fresh ids after the carried-over ones.
    world.setup(&["backup", "shop"]);
    assert_eq!(
        count(
            &world,
            "select count(*) - count(distinct id) from steward_events"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_default_to_the_users_state_directory_and_a_folder_inside_git_is_warned_about() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    let fleet = world.path().join("fleet.yaml");
    let text = fs::read_to_string(&fleet).expect("fleet.yaml");
    fs::write(&fleet, text.replace("  backups: {dir: backups}\n", "")).expect("write");

    let state = tempfile::tempdir().expect("tempdir");
    let out = world
        .command(&["backup", "shop"])
        .env("XDG_STATE_HOME", state.path())
        .output()
        .expect("run");
    assert_exit(&out, 0);
    let folder = state.path().join("steward/backups/default/shop");
    assert_eq!(names(&folder).len(), 2, "{}", stdout(&out));
    assert!(
        !world.path().join("backups").exists(),
        "nothing inside the fleet folder"
    );

    // Put the folder back inside the fleet, and the fleet inside a Git work tree.
    fs::write(&fleet, text).expect("write");
    let git = std::process::Command::new("git")
        .args(["init", "-q"])
        .arg(world.path())
        .status()
        .expect("git");
    assert!(git.success());
    let validate = world.steward(&["validate"]);
    let said = format!("{}{}", stdout(&validate), stderr(&validate));
    assert!(
        said.contains("spec.backups.dir") && said.contains("Git work tree"),
        "{said}"
    );
}
