//! Durability across `kill -9`: a child process (this test binary, re-run in child mode) commits
//! and reports each acknowledged commit; the parent kills it with SIGKILL and checks that every
//! acknowledged commit is there after reopening.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use weft_storage::{KeyRange, Value};

use crate::common::{create_users, open, user};

const CHILD_DIR: &str = "WEFT_STORAGE_CRASH_CHILD_DIR";
const COMMITS: i32 = 40;

/// Child mode only: commits `COMMITS` rows, printing `@@acked <id> <position>` after each, then
/// blocks on stdin until the parent kills it (or closes stdin, if the parent died).
#[tokio::test]
async fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let s = open(std::path::Path::new(&dir));
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

    let s = open(dir.path());
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
