//! `steward run` as a long-lived daemon: it sees commits and git-sync symlink swaps at once,
//! and SIGTERM during a migration finishes the migration before exiting 0.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::fleet::{SHA1, SHA2, World};
use common::process::{first_pass_done, free_addr, git, loops_total, terminate};
use common::{copy_dir, repo_root, stderr};
use sqlx::Row;

/// Start the daemon with a long interval, so only the watcher can explain a quick reaction.
fn start(world: &World, fleet: &Path, addr: &str) -> Child {
    world
        .command_at(fleet, &["run", "--listen", addr, "--interval", "600s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

async fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check() {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: not within {limit:?}");
}

fn deployed(world: &World, sha: &str) -> bool {
    world
        .emulator
        .with_state(|s| s.deployments.values().any(|d| d.sha == sha))
}

async fn metrics(addr: &str) -> String {
    match reqwest::get(format!("http://{addr}/metrics")).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_to_the_checkout_is_acted_on_within_two_seconds_and_recorded_as_the_revision() {
    let world = World::new().await;
    git(world.path(), &["init", "-q"]);
    git(world.path(), &["add", "-A"]);
    git(world.path(), &["commit", "-qm", "shop on sha1"]);
    world.setup(&["adopt", "shop"]);
    let addr = free_addr();
    let child = start(&world, world.path(), &addr);
    wait_for("first convergence", Duration::from_secs(60), || {
        world.production_sha().as_deref() == Some(SHA1)
    })
    .await;
    first_pass_done(&addr).await;

    world.write_client(SHA2, "2024_11_18_001", "info", "");
    git(world.path(), &["commit", "-qam", "shop on sha2"]);
    let head = git(world.path(), &["rev-parse", "HEAD"]);
    let reacted = wait_for("a build of the new commit", Duration::from_secs(10), || {
        deployed(&world, SHA2)
    })
    .await;
    assert!(
        reacted < Duration::from_secs(2),
        "the commit was acted on after {reacted:?}"
    );
    wait_for("promotion", Duration::from_secs(30), || {
        world.production_sha().as_deref() == Some(SHA2)
    })
    .await;
    let text = metrics(&addr).await;
    assert!(
        text.contains(&format!("steward_fleet_revision{{revision=\"{head}\"}} 1")),
        "the new HEAD is the fleet revision:\n{text}"
    );
    let mut conn = world.db.connect().await;
    let recorded: Option<String> = sqlx::query(
        "select fleet_revision from steward_events where step = 'apply' and outcome = 'started' order by id desc limit 1",
    )
    .fetch_one(&mut conn)
    .await
    .expect("event")
    .get("fleet_revision");
    assert_eq!(recorded.as_deref(), Some(head.as_str()));

    // Idle, the daemon must not wake itself: its own reads and backups are not changes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = loops_total(&addr).await;
    assert!(before.is_some(), "steward_loops_total is served");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        loops_total(&addr).await,
        before,
        "an idle daemon ran passes nobody asked for"
    );
    assert_eq!(terminate(child).await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_sync_symlink_swap_to_a_new_worktree_is_seen() {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    let root = tempfile::tempdir().expect("tempdir");
    let (rev1, rev2) = (root.path().join("rev1"), root.path().join("rev2"));
    copy_dir(world.path(), &rev1);
    let current = root.path().join("current");
    std::os::unix::fs::symlink(&rev1, &current).expect("symlink");
    let addr = free_addr();
    let child = start(&world, &current, &addr);
    wait_for("first convergence", Duration::from_secs(60), || {
        world.production_sha().as_deref() == Some(SHA1)
    })
    .await;
    first_pass_done(&addr).await;

    // What git-sync does: a new worktree, a new link beside the old one, an atomic rename.
    world.write_client(SHA2, "2024_11_18_001", "info", "");
    copy_dir(world.path(), &rev2);
    let staged = root.path().join(".current-new");
    std::os::unix::fs::symlink(&rev2, &staged).expect("symlink");
    std::fs::rename(&staged, &current).expect("swap");
    let reacted = wait_for("a build after the swap", Duration::from_secs(10), || {
        deployed(&world, SHA2)
    })
    .await;
    assert!(
        reacted < Duration::from_secs(2),
        "swap seen after {reacted:?}"
    );
    wait_for("promotion", Duration::from_secs(30), || {
        world.production_sha().as_deref() == Some(SHA2)
    })
    .await;
    assert_eq!(terminate(child).await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_migration_finishes_the_migration_starts_nothing_else_and_exits_zero() {
    let world = World::new().await;
    let migrations = tempfile::tempdir().expect("tempdir");
    copy_dir(&repo_root().join("migrations"), migrations.path());
    std::fs::write(
        migrations
            .path()
            .join("2099_01_01_001_slow_backfill.up.sql"),
        "select pg_sleep(3);\ncreate table slow_marker (id int);\n",
    )
    .expect("write");
    std::fs::write(
        migrations
            .path()
            .join("2099_01_01_001_slow_backfill.down.sql"),
        "drop table slow_marker;\n",
    )
    .expect("write");
    world.write_fleet(migrations.path(), "");
    world.write_client(SHA1, "2099_01_01_001", "info", "");
    world.setup(&["adopt", "shop"]);
    let mut child = start(&world, world.path(), &free_addr());

    let mut conn = world.db.connect().await;
    let started = Instant::now();
    loop {
        let sleeping: i64 = sqlx::query(
            "select count(*) as n from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() and query like '%pg_sleep(3)%'",
        )
        .fetch_one(&mut conn)
        .await
        .expect("activity")
        .get("n");
        if sleeping > 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("the migration never started:\n{}", stderr(&out));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = terminate(child).await;
    assert_eq!(status.code(), Some(0), "a clean shutdown exits 0");

    let applied: Option<String> = sqlx::query(
        "select status from system_versions where version = '2099_01_01_001' order by applied_at desc limit 1",
    )
    .fetch_optional(&mut conn)
    .await
    .expect("versions")
    .map(|r| r.get("status"));
    assert_eq!(
        applied.as_deref(),
        Some("applied"),
        "the running migration finished"
    );
    sqlx::query("select count(*) from slow_marker")
        .fetch_one(&mut conn)
        .await
        .expect("the migration's table exists");
    assert!(!deployed(&world, SHA1), "no step started after the signal");
    let interrupted: i64 = sqlx::query(
        "select count(*) as n from steward_events where detail like 'interrupted: shutdown%'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("events")
    .get("n");
    assert_eq!(interrupted, 1, "the interruption is recorded");
}

fn observations(text: &str, source: &str) -> u64 {
    let prefix = format!("steward_database_observations_total{{source=\"{source}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in /metrics:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converged_database_is_looked_at_live_once_per_db_resync_and_drift_behind_its_back_is_repaired()
 {
    let world = World::new().await;
    world.setup(&["adopt", "shop"]);
    let addr = free_addr();
    let child = world
        .command(&[
            "run",
            "--listen",
            &addr,
            "--interval",
            "200ms",
            "--db-resync",
            "4s",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_for("first convergence", Duration::from_secs(60), || {
        world.production_sha().as_deref() == Some(SHA1)
    })
    .await;
    let first = first_pass_done(&addr).await;

    // Converged and idle: passes every 200 ms read Vercel, and reuse the database look.
    let mut passes = first;
    while passes < first + 3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        passes = loops_total(&addr).await.unwrap_or(passes);
    }
    let before = metrics(&addr).await;
    while loops_total(&addr).await.unwrap_or(0) < passes + 5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = metrics(&addr).await;
    let live = observations(&after, "live") - observations(&before, "live");
    let cached = observations(&after, "cached") - observations(&before, "cached");
    assert!(
        cached >= 4,
        "five idle passes reused the last look ({cached} cached, {live} live)"
    );
    assert!(
        live <= 1,
        "at most one live look within 4 s of idle passes, saw {live}"
    );

    // Someone undoes the members migration by hand, as the guide's manual rollback does.
    let mut conn = world.db.connect().await;
    let down =
        std::fs::read_to_string(repo_root().join("migrations/2024_11_18_001_members.down.sql"))
            .expect("down.sql");
    sqlx::raw_sql(sqlx::AssertSqlSafe(down))
        .execute(&mut conn)
        .await
        .expect("down");
    sqlx::query(
        "insert into system_versions (version, applied_at, status) values ('2024_11_18_001', now(), 'rolled_back')",
    )
    .execute(&mut conn)
    .await
    .expect("record the rollback");
    let applied = || async {
        let mut conn = world.db.connect().await;
        sqlx::query_scalar::<_, i64>(
            "select count(*) from system_versions where version = '2024_11_18_001' and status = 'applied'",
        )
        .fetch_one(&mut conn)
        .await
        .expect("count")
    };
    assert_eq!(applied().await, 1);
    let started = Instant::now();
    while applied().await < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the drift was never repaired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let table: Option<String> = sqlx::query_scalar("select to_regclass('members')::text")
        .fetch_one(&mut conn)
        .await
        .expect("members");
    assert_eq!(table.as_deref(), Some("members"), "the migration ran again");
    assert_eq!(terminate(child).await.code(), Some(0));
}
