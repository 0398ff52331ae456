//! Durability across `kill -9`: a child process (this test binary, re-run in child mode) commits
//! and reports each acknowledged commit; the parent kills it with SIGKILL and checks that every
//! acknowledged commit is there after reopening.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use weft_storage::{KeyRange, Value};

use crate::common::{create_users, open_with, user};

const CHILD_DIR: &str = "WEFT_STORAGE_CRASH_CHILD_DIR";
const COMMITS: i32 = 40;

/// Child mode only: commits `COMMITS` rows, printing `@@acked <id> <position>` after each, then
/// blocks on stdin until the parent kills it (or closes stdin, if the parent died).
#[tokio::test]
async fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    // As the server opens it: the WAL written ahead is then a recycled file, whose stale tail
    // recovery must tell from the records of this run.
    let s = open_with(std::path::Path::new(&dir), true);
    let t = create_users(&s).await;
    println!("@@table {}", t.id);
    for i in 0..COMMITS {
        let mut txn = s.begin();
        txn.insert(&t, user(i, "durable", None, i)).expect("insert");
        let info = txn.commit().await.expect("commit");
        println!("@@acked {i} {}", info.last_position);
    }
    println!("@@done");
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

#[tokio::test]
async fn acknowledged_commits_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "crash::crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("child starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut acked = Vec::new();
    let mut table_id = None;
    // Kill the child once it has acknowledged half of its commits, while it is still writing.
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("child output");
        // libtest may print "test crash::crash_child ... " in front of the first line.
        let Some(report) = line.split("@@").nth(1) else {
            continue;
        };
        let words: Vec<&str> = report.split_whitespace().collect();
        match words.as_slice() {
            ["table", id] => table_id = Some(id.parse::<u32>().expect("table id")),
            ["acked", i, pos] => {
                acked.push((
                    i.parse::<i32>().expect("id"),
                    pos.parse::<u64>().expect("position"),
                ));
                if acked.len() == (COMMITS / 2) as usize {
                    break;
                }
            }
            _ => {}
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("child reaped");
    assert_eq!(
        acked.len(),
        (COMMITS / 2) as usize,
        "child acknowledged commits"
    );

    let s = open_with(dir.path(), true);
    let table_id = table_id.expect("child created the table");
    let t = s
        .catalog()
        .table_by_id(table_id)
        .cloned()
        .expect("table survived");
    let r = s.begin();
    for (i, _) in &acked {
        assert_eq!(
            r.get(&t, &[Value::Int32(*i)]).expect("get"),
            Some(user(*i, "durable", None, *i)),
            "acknowledged row {i} survived"
        );
    }
    let last_acked = acked.last().map(|a| a.1).expect("acked");
    assert!(s.last_position() >= last_acked);
    let changes = s.read_changes(0, 1000).expect("changes");
    let positions: Vec<u64> = changes.iter().map(|c| c.position).collect();
    let want: Vec<u64> = (1..=s.last_position()).collect();
    assert_eq!(positions, want, "the change log has no holes");
    // Every row present was logged; nothing beyond what the child tried.
    let rows = r
        .reader()
        .scan(&t, &KeyRange::full(), None, None, 1000)
        .expect("scan")
        .rows;
    assert_eq!(rows.len(), changes.len());
    assert!(rows.len() <= COMMITS as usize);

    // The database keeps working.
    let mut txn = s.begin();
    txn.insert(&t, user(1000, "after", None, 0))
        .expect("insert");
    let info = txn.commit().await.expect("commit");
    assert_eq!(info.first_position, s.last_position());
}

/// The newest WAL file of the database in `dir` and its size.
fn newest_wal(dir: &std::path::Path) -> (String, u64) {
    let mut logs: Vec<(String, u64)> = std::fs::read_dir(dir.join("db"))
        .expect("db dir")
        .map(|e| e.expect("entry"))
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| {
            let size = e.metadata().expect("metadata").len();
            (e.file_name().to_string_lossy().into_owned(), size)
        })
        .collect();
    logs.sort();
    logs.pop().expect("a WAL file")
}

/// Opened with `prewrite_wal`, the WAL commits append to is a file already written to its full
/// size (so an fdatasync overwrites blocks on disk), and rows survive reopening it any number
/// of times, with and without the option.
#[tokio::test]
async fn the_wal_is_written_ahead_and_reopens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open_with(dir.path(), true);
    let (name, size) = newest_wal(dir.path());
    assert!(
        size >= weft_storage::WAL_AHEAD_BYTES as u64,
        "the WAL {name} in use is {size} bytes, not written ahead"
    );
    let t = create_users(&s).await;
    for i in 0..10 {
        let mut txn = s.begin();
        txn.insert(&t, user(i, "ahead", None, i)).expect("insert");
        txn.commit().await.expect("commit");
    }
    // Appends overwrite the file: it does not grow.
    assert_eq!(newest_wal(dir.path()), (name, size));
    drop(s);
    for (round, prewrite) in [true, false, true].into_iter().enumerate() {
        let s = open_with(dir.path(), prewrite);
        let t = s.catalog().table_by_id(t.id).cloned().expect("table");
        let r = s.begin();
        for i in 0..10 {
            assert_eq!(
                r.get(&t, &[Value::Int32(i)]).expect("get"),
                Some(user(i, "ahead", None, i)),
                "row {i} after reopen {round}"
            );
        }
        drop(r);
        let mut txn = s.begin();
        txn.insert(&t, user(100 + round as i32, "ahead", None, 0))
            .expect("insert");
        txn.commit().await.expect("commit");
    }
    let s = open_with(dir.path(), false);
    let r = s.begin();
    let t = s.catalog().table_by_id(t.id).cloned().expect("table");
    for round in 0..3 {
        assert!(r
            .get(&t, &[Value::Int32(100 + round)])
            .expect("get")
            .is_some());
    }
}
