//! Faults, end to end: a broken provider on every chat route, session and index databases
//! deleted or corrupted under a running daemon, a read-only workspace, and `kill -9` in the
//! middle of a burst of writes. The real binary over loopback, real SQLite files, the real
//! fake provider server.
//!
//! Related faults covered elsewhere: every wire format's parsing of each fault at the
//! provider level (`tests/providers.rs`), 401 and trickles (`tests/chat.rs`,
//! `tests/providers.rs`), a client that disconnects (`tests/stream.rs`), `kill -9` during
//! one stream (`tests/stream.rs::sessions_survive_restart_and_kill_9`), a garbage index at
//! start and a deleted index while running (`tests/memory.rs`).

mod support;

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::fake_provider::{FakeProvider, Fault, Reply, TEST_KEY};
use support::stream_client::Sse;
use support::{Daemon, Home, eventually, parse_response};

const MODELS: &[&str] = &[
    "openai/gpt-test",
    "anthropic/claude-test",
    "ollama/llama-test",
];

/// Generous for a loaded 2-core CI machine; polls return as soon as the condition holds.
const PATIENCE: Duration = Duration::from_secs(30);

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("<none>")
}

fn new_session(d: &Daemon, model: &str) -> String {
    let (status, s) = d.post("/api/sessions", &json!({ "model": model }).to_string());
    assert_eq!(status, 201, "{s}");
    s["session_id"].as_str().unwrap().to_string()
}

/// (role, content) of every stored message of a session.
fn stored(d: &Daemon, id: &str) -> Vec<(String, String)> {
    let (status, s) = d.get(&format!("/api/sessions/{id}"));
    assert_eq!(status, 200, "{s}");
    s["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(r, c)| (r.to_string(), c.to_string()))
        .collect()
}

fn search_files(d: &Daemon, q: &str) -> Vec<String> {
    let (status, body) = d.get(&format!("/api/memory/search?q={q}"));
    assert_eq!(status, 200, "{body}");
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["file"].as_str().unwrap().to_string())
        .collect()
}

fn wait_for_hit(d: &Daemon, q: &str, file: &str) {
    eventually(PATIENCE, &format!("search {q:?} finds {file}"), || {
        search_files(d, q).iter().any(|f| f == file).then_some(())
    });
}

/// Overwrites the first `len` bytes of a file in place (same inode) with noise.
fn scribble(path: &Path, len: usize) {
    let noise: Vec<u8> = (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(&noise).unwrap();
    f.sync_all().unwrap();
}

// ---- 1. provider faults × {plain, streamed} ----

#[derive(Clone, Copy, Debug)]
enum Broken {
    Refused,
    Stalled,
    Status500,
    Garbage,
    Cut,
}

/// Each fault, the status and code a plain turn answers, and words the message must hold.
const FAULTS: &[(Broken, u16, &str, &[&str])] = &[
    (Broken::Refused, 502, "provider_error", &["refused"]),
    (Broken::Stalled, 504, "provider_timeout", &["timed out"]),
    (
        Broken::Status500,
        502,
        "provider_error",
        &["500", "upstream exploded"],
    ),
    (Broken::Garbage, 502, "provider_error", &["malformed"]),
    (Broken::Cut, 502, "provider_error", &["cut"]),
];

/// One turn on either route: (status of a plain answer or the code's status, error code or
/// "", error message or the response, content deltas streamed).
fn turn(d: &Daemon, streamed: bool, id: &str, text: &str) -> (u16, String, String, Vec<String>) {
    let body = json!({"message": text, "session_id": id}).to_string();
    if !streamed {
        let (status, v) = d.post("/api/chat", &body);
        return if status == 200 {
            (
                200,
                String::new(),
                v["response"].as_str().unwrap().into(),
                vec![],
            )
        } else {
            (status, code(&v).into(), message(&v).into(), vec![])
        };
    }
    let mut sse = Sse::open(d.addr, &body);
    assert_eq!(sse.status, 200, "{}", sse.body);
    let events = sse.collect();
    assert!(
        sse.next_raw().is_none(),
        "the stream ends right after [DONE]"
    );
    let kinds: Vec<&str> = events.iter().map(|e| e.kind()).collect();
    assert_eq!(kinds.first(), Some(&"session"), "{kinds:?}");
    assert_eq!(events[0].data["session_id"], id);
    assert_eq!(kinds.last(), Some(&"[DONE]"), "{kinds:?}");
    let last = &events[events.len() - 2];
    let middle = &kinds[1..kinds.len() - 2];
    assert!(
        middle.iter().all(|k| *k == "content"),
        "only content before the end: {kinds:?}"
    );
    let deltas = events[1..events.len() - 2]
        .iter()
        .map(|e| e.data["delta"].as_str().unwrap().to_string())
        .collect();
    match last.kind() {
        "done" => (
            200,
            String::new(),
            last.data["response"].as_str().unwrap().into(),
            deltas,
        ),
        "error" => {
            let code = last.data["code"].as_str().unwrap().to_string();
            let status = if code == "provider_timeout" { 504 } else { 502 };
            (
                status,
                code,
                last.data["message"].as_str().unwrap().into(),
                deltas,
            )
        }
        other => panic!("stream ended with {other}: {kinds:?}"),
    }
}

#[test]
fn provider_faults_on_plain_and_streamed_turns_keep_the_session_and_recover() {
    let mut fake = Some(FakeProvider::start());
    let toml = fake.as_ref().unwrap().providers_toml("500ms");
    let d = Daemon::start(&format!("[heartbeat]\nenabled = false\n{toml}"));
    for model in MODELS {
        let provider = model.split('/').next().unwrap();
        for &(broken, status, error_code, words) in FAULTS {
            for streamed in [false, true] {
                let case = format!(
                    "{model} {broken:?} {}",
                    if streamed { "stream" } else { "plain" }
                );
                let id = new_session(&d, model);
                let mut down = None;
                let live = fake.as_ref().unwrap();
                match broken {
                    Broken::Refused => down = Some(fake.take().unwrap().shut_down()),
                    Broken::Stalled => live.push(Reply::fault(Fault::Hang(PATIENCE))),
                    Broken::Status500 => {
                        live.push(Reply::fault(Fault::Status(500, "upstream exploded".into())))
                    }
                    Broken::Garbage => live.push(Reply::fault(Fault::Garbage)),
                    Broken::Cut => live.push(
                        Reply::text("partial")
                            .pieces(["par", "tial"])
                            .with_fault(Fault::Cut),
                    ),
                }
                let asked = format!("question during {case}");
                let (got, got_code, text, deltas) = turn(&d, streamed, &id, &asked);
                assert_eq!(
                    (got, got_code.as_str()),
                    (status, error_code),
                    "{case}: {text}"
                );
                assert!(text.contains(provider), "{case}: {text} names the provider");
                for w in words {
                    assert!(text.contains(w), "{case}: {text} says {w:?}");
                }
                assert!(!text.contains(TEST_KEY), "{case}: the key leaked");
                if streamed && matches!(broken, Broken::Cut) {
                    assert_eq!(deltas, ["par", "tial"], "{case}: deltas before the cut");
                }
                assert_eq!(
                    stored(&d, &id),
                    pairs(&[("user", &asked)]),
                    "{case}: the user message is kept, no partial answer"
                );

                if let Some(addr) = down {
                    fake = Some(FakeProvider::start_on(addr));
                }
                fake.as_ref().unwrap().push(Reply::text("back again"));
                let again = format!("retry after {case}");
                let (got, _, text, _) = turn(&d, streamed, &id, &again);
                assert_eq!((got, text.as_str()), (200, "back again"), "{case}");
                assert_eq!(
                    stored(&d, &id),
                    pairs(&[
                        ("user", &asked),
                        ("user", &again),
                        ("assistant", "back again")
                    ]),
                    "{case}"
                );
            }
        }
    }
    assert_eq!(d.get("/health").0, 200);
}

// ---- 2. databases deleted or corrupted while the daemon runs ----

fn chat_daemon(fake: &FakeProvider) -> Daemon {
    let home = Home::new("faults");
    home.write_config(&format!(
        "[heartbeat]\nenabled = false\n[memory]\nscan_interval = \"200ms\"\n{}",
        fake.providers_toml("5s")
    ));
    start(home)
}

/// Starts a daemon whose default model is the fake's OpenAI one.
fn start(home: Home) -> Daemon {
    Daemon::start_with(home, |cmd| {
        cmd.env("LOCALGPT_MODEL", MODELS[0]);
    })
}

fn restart(d: Daemon) -> Daemon {
    start(d.into_home())
}

fn chat_in(d: &Daemon, id: &str, text: &str) -> (u16, Value) {
    d.post(
        "/api/chat",
        &json!({"message": text, "session_id": id}).to_string(),
    )
}

fn sessions_db(home: &Home) -> PathBuf {
    home.state_dir().join("sessions.sqlite")
}

fn corrupt_copies(home: &Home) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(home.state_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("sessions.sqlite.corrupt-")
                && !name.ends_with("-wal")
                && !name.ends_with("-shm")
        })
        .collect();
    found.sort();
    found
}

#[test]
fn session_db_deleted_while_running_is_recreated_not_written_into_the_void() {
    let fake = FakeProvider::start();
    let d = chat_daemon(&fake);
    let old = new_session(&d, MODELS[0]);
    fake.push(Reply::text("first"));
    assert_eq!(chat_in(&d, &old, "hello").0, 200);

    let db = sessions_db(&d.home);
    for suffix in ["", "-wal", "-shm"] {
        let _ = fs::remove_file(format!("{}{suffix}", db.display()));
    }
    // The user deleted their sessions: the store starts again, in a real file.
    let (status, list) = d.get("/api/sessions");
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["sessions"], json!([]));
    assert!(db.exists(), "the database file is recreated");
    d.wait_log("deleted or replaced");
    assert_eq!(d.get(&format!("/api/sessions/{old}")).0, 404);
    let new = new_session(&d, MODELS[0]);
    fake.push(Reply::text("second"));
    assert_eq!(chat_in(&d, &new, "again").0, 200);

    // What was written after the deletion is on disk, not in an unlinked inode.
    let d = restart(d);
    assert_eq!(
        stored(&d, &new),
        pairs(&[("user", "again"), ("assistant", "second")])
    );
    assert_eq!(
        d.get("/api/sessions").1["sessions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn session_db_corrupted_while_running_is_a_storage_error_then_moved_aside_at_start() {
    let fake = FakeProvider::start();
    let mut d = chat_daemon(&fake);
    let id = new_session(&d, MODELS[0]);
    fake.push(Reply::text("first"));
    assert_eq!(chat_in(&d, &id, "hello").0, 200);
    fs::write(
        d.home.workspace().join("knowledge.md"),
        "the narwhal dives\n",
    )
    .unwrap();
    wait_for_hit(&d, "narwhal", "knowledge.md");

    let db = sessions_db(&d.home);
    scribble(&db, 8192);
    let garbage = fs::read(&db).unwrap()[..8192].to_vec();

    let session_calls: Vec<(u16, Value)> = vec![
        d.get("/api/sessions"),
        d.get(&format!("/api/sessions/{id}")),
        d.post("/api/sessions", ""),
        chat_in(&d, &id, "are you there?"),
        d.delete(&format!("/api/sessions/{id}")),
    ];
    for (status, body) in &session_calls {
        assert_eq!((*status, code(body)), (500, "storage_error"), "{body}");
        assert!(message(body).contains(&db.display().to_string()), "{body}");
        assert!(message(body).contains("corrupt"), "{body}");
    }
    let stream = Sse::open(
        d.addr,
        &json!({"message": "streamed", "session_id": id}).to_string(),
    );
    assert_eq!(stream.status, 500, "{}", stream.body);
    assert!(stream.body.contains("storage_error"), "{}", stream.body);
    // Everything else keeps working.
    assert_eq!(d.get("/health").0, 200);
    assert_eq!(d.get("/api/status").0, 200);
    assert_eq!(search_files(&d, "narwhal"), ["knowledge.md"]);
    fake.push(Reply::text("sessionless"));
    let (status, body) = d.post("/api/chat", r#"{"message": "no session"}"#);
    assert_eq!(
        (status, body["response"].as_str()),
        (200, Some("sessionless"))
    );

    // A clean stop leaves the damaged file as it was, and the next start moves it aside.
    assert!(d.stop().success(), "{}", d.stderr());
    let d = restart(d);
    let log = d.wait_log("moved aside");
    let copies = corrupt_copies(&d.home);
    assert_eq!(copies.len(), 1, "{copies:?}\n{log}");
    assert_eq!(
        fs::read(&copies[0]).unwrap()[..8192],
        garbage[..],
        "the damaged file is kept untouched"
    );
    let mode = fs::metadata(&copies[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (status, list) = d.get("/api/sessions");
    assert_eq!((status, list["sessions"].clone()), (200, json!([])));
    let fresh = new_session(&d, MODELS[0]);
    fake.push(Reply::text("fresh start"));
    assert_eq!(chat_in(&d, &fresh, "hi").0, 200);
    // A healthy database is left alone at the next start.
    let d = restart(d);
    assert_eq!(corrupt_copies(&d.home).len(), 1);
    assert_eq!(
        stored(&d, &fresh),
        pairs(&[("user", "hi"), ("assistant", "fresh start")])
    );
}

#[test]
fn index_db_corrupted_while_running_is_rebuilt() {
    let fake = FakeProvider::start();
    let d = chat_daemon(&fake);
    let ws = d.home.workspace();
    fs::create_dir_all(ws.join("knowledge")).unwrap();
    fs::write(ws.join("knowledge/a.md"), "the pangolin curls up\n").unwrap();
    wait_for_hit(&d, "pangolin", "knowledge/a.md");

    let index = d.home.cache_dir().join("memory-index.sqlite");
    scribble(&index, 8192);
    fs::write(ws.join("knowledge/b.md"), "the okapi browses\n").unwrap();
    // Searches in the moment before the next scan may fail; then both files are found in
    // a rebuilt, healthy file.
    d.wait_log("rebuilding it from the workspace");
    wait_for_hit(&d, "okapi", "knowledge/b.md");
    wait_for_hit(&d, "pangolin", "knowledge/a.md");
    let check: String = rusqlite::Connection::open(&index)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    assert_eq!(d.get("/health").0, 200);
    assert_eq!(d.get("/api/memory/stats").0, 200);
}

// ---- 3. a read-only workspace ----

/// The uid of `nobody`, which the daemon runs as in the read-only test when the tests run
/// as root: root's CAP_DAC_OVERRIDE writes through any file mode.
const NOBODY: u32 = 65534;

/// Who the daemon must run as for file modes to bind it: `None` is the test's own user.
fn unprivileged_uid() -> Option<u32> {
    rustix::process::geteuid().is_root().then_some(NOBODY)
}

fn chown_tree(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid))
        .unwrap_or_else(|e| panic!("chown {} to {uid}: {e}", path.display()));
    let meta = fs::symlink_metadata(path).unwrap();
    if meta.is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), uid);
        }
    }
}

/// Makes a tree read-only (directories 0555, files 0444) and writable again when dropped.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn new(root: &Path) -> ReadOnly {
        set_modes(root, false);
        ReadOnly(root.to_path_buf())
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        set_modes(&self.0, true);
    }
}

fn set_modes(path: &Path, writable: bool) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    let mode = match (meta.is_dir(), writable) {
        (true, true) => 0o700,
        (true, false) => 0o500,
        (false, true) => 0o600,
        (false, false) => 0o400,
    };
    if meta.is_dir() && writable {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode));
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path).unwrap().flatten() {
            set_modes(&entry.path(), writable);
        }
    }
    if !meta.file_type().is_symlink() {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode));
    }
}

/// Fails loudly unless the daemon's user really cannot create a file in `dir`.
fn assert_unwritable(dir: &Path, uid: Option<u32>) {
    let mut probe = Command::new("sh");
    probe
        .args(["-c", "echo probe > \"$1/.write-probe\"", "sh"])
        .arg(dir)
        .stderr(std::process::Stdio::null());
    if let Some(uid) = uid {
        probe.uid(uid).gid(uid);
    }
    let status = probe.status().unwrap_or_else(|e| {
        panic!(
            "cannot run a process as uid {uid:?} ({e}); the tests run as root, and file \
             modes only bind the daemon when it runs as an unprivileged user"
        )
    });
    assert!(
        !status.success(),
        "{} is still writable for the daemon's user (uid {uid:?}) after chmod: this \
         environment cannot make the workspace read-only, so the test cannot run",
        dir.display()
    );
}

/// Every file under `root` (hidden ones too) with its bytes.
fn snapshot(root: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if path.is_dir() {
                out.push((format!("{rel}/"), Vec::new()));
                walk(root, &path, out);
            } else {
                out.push((rel, fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn start_as(home: Home, uid: Option<u32>) -> Daemon {
    if let Some(uid) = uid {
        chown_tree(home.root(), uid);
    }
    Daemon::start_with(home, |cmd| {
        cmd.env("LOCALGPT_MODEL", MODELS[0]);
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
    })
}

#[test]
fn read_only_workspace_fails_memory_writes_as_tool_errors_and_loses_nothing() {
    let uid = unprivileged_uid();
    let fake = FakeProvider::start();
    let home = Home::new("readonly");
    home.write_config(&format!(
        "[heartbeat]\nenabled = false\n[memory]\nscan_interval = \"200ms\"\n\
         [tools]\nrequire_approval = []\n{}",
        fake.providers_toml("5s")
    ));
    let ws = home.workspace();
    fs::create_dir_all(ws.join("knowledge")).unwrap();
    fs::write(ws.join("knowledge/notes.md"), "the axolotl regrows limbs\n").unwrap();
    let d = start_as(home, uid);
    wait_for_hit(&d, "axolotl", "knowledge/notes.md");
    // A starter file the next start would want to create again.
    fs::remove_file(ws.join("SOUL.md")).unwrap();
    let before = snapshot(&ws);
    let read_only = ReadOnly::new(&ws);
    for dir in [&ws, &ws.join("memory"), &ws.join("knowledge")] {
        assert_unwritable(dir, uid);
    }

    let id = new_session(&d, MODELS[0]);
    let calls = [
        (
            "write_file",
            json!({"path": "knowledge/notes.md", "content": "replaced"}),
        ),
        (
            "edit_file",
            json!({"path": "knowledge/notes.md", "old_text": "axolotl", "new_text": "newt"}),
        ),
        ("memory_append", json!({"text": "the capybara likes baths"})),
        (
            "memory_append",
            json!({"text": "the capybara, for good", "target": "memory"}),
        ),
        (
            "write_file",
            json!({"path": "knowledge/new.md", "content": "capybara"}),
        ),
    ];
    let mut reply = Reply::tool_call(calls[0].0, calls[0].1.clone());
    for (name, args) in &calls[1..] {
        reply = reply.and_tool_call(name, args.clone());
    }
    fake.push(reply);
    fake.push(Reply::text(
        "I could not save that: the workspace is read-only.",
    ));
    let (status, body) = chat_in(&d, &id, "remember the capybara");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["response"],
        "I could not save that: the workspace is read-only."
    );
    assert_eq!(body["tools_used"].as_array().unwrap().len(), calls.len());

    // Each failure is a tool error the model was shown.
    let (_, session) = d.get(&format!("/api/sessions/{id}"));
    let results: Vec<&Value> = session["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .collect();
    assert_eq!(results.len(), calls.len(), "{session}");
    let sent = fake.requests().last().unwrap().raw_body.clone();
    for (result, (name, _)) in results.iter().zip(&calls) {
        assert_eq!(result["is_error"], true, "{name}: {result}");
        let text = result["content"].as_str().unwrap();
        assert!(
            text.contains("cannot") && text.contains("denied"),
            "{name}: {text}"
        );
        let shown = serde_json::to_string(text).unwrap();
        assert!(
            sent.contains(shown.trim_matches('"')),
            "{name}: the model saw {text}"
        );
    }
    // Nothing was lost, truncated or left behind, and search still works.
    assert_eq!(snapshot(&ws), before);
    assert_eq!(search_files(&d, "axolotl"), ["knowledge/notes.md"]);
    assert_eq!(d.get("/api/memory/stats").0, 200);

    // Start-up with the workspace still read-only (and a starter file missing) works.
    let d = start_as(d.into_home(), uid);
    d.wait_log("going on without them");
    assert_eq!(d.get("/health").0, 200);
    wait_for_hit(&d, "axolotl", "knowledge/notes.md");
    fake.push(Reply::text("still here"));
    assert_eq!(chat_in(&d, &id, "hello?").0, 200);
    assert_eq!(snapshot(&ws), before);
    drop(read_only);
    drop(d);
}

// ---- 4. kill -9 during a burst of chats and memory writes ----

/// One HTTP request on a fresh connection from a client thread: (status, JSON body);
/// status 0 when the daemon is gone.
fn post_to(addr: SocketAddr, path: &str, body: &str) -> (u16, Value) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, Value::Null);
    };
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        addr.port(),
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return (0, Value::Null);
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let (status, _, text) = parse_response(&raw);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

const BURST_FILES: usize = 3;
const CLIENTS: usize = 4;

/// One version of a burst file: 64 KiB whose every line names the file and the version, so
/// a torn or mixed file cannot pass for a whole one.
fn version(file: usize, tag: &str) -> String {
    let line = format!("burst file {file} version {tag} quokka{file}\n");
    line.repeat(64 * 1024 / line.len())
}

fn burst_rel(file: usize) -> String {
    format!("knowledge/burst-{file}.md")
}

#[test]
fn kill_9_during_a_burst_loses_nothing_committed_and_tears_no_file() {
    let fake = FakeProvider::start();
    let home = Home::new("kill9");
    home.write_config(&format!(
        "[heartbeat]\nenabled = false\n[memory]\nscan_interval = \"200ms\"\n\
         [agent]\nhistory_chars = 100000000\n[tools]\nrequire_approval = []\n{}",
        fake.providers_toml("5s")
    ));
    let ws = home.workspace();
    fs::create_dir_all(ws.join("knowledge")).unwrap();
    let mut versions: Vec<HashSet<String>> = (0..BURST_FILES)
        .map(|k| HashSet::from([version(k, "seed")]))
        .collect();
    for (k, seeds) in versions.iter().enumerate() {
        fs::write(ws.join(burst_rel(k)), seeds.iter().next().unwrap()).unwrap();
    }
    let mut notes: HashSet<String> = HashSet::new();
    let mut d = start(home);

    // A session finished before any kill must come back whole every time.
    let kept = new_session(&d, MODELS[0]);
    fake.push(Reply::text("kept answer"));
    assert_eq!(chat_in(&d, &kept, "keep this").0, 200);
    let kept_messages = stored(&d, &kept);
    let mut served: Vec<String> = vec![kept.clone()];

    // Kill after this many more provider requests: early, middle, late in the burst.
    for (round, kill_after) in [4usize, 16, 40].into_iter().enumerate() {
        for i in 0..48 {
            let k = (i / 3) % BURST_FILES;
            match i % 3 {
                0 => {
                    let content = version(k, &format!("r{round}i{i}"));
                    versions[k].insert(content.clone());
                    fake.push(Reply::tool_call(
                        "write_file",
                        json!({"path": burst_rel(k), "content": content}),
                    ));
                }
                1 => {
                    let note = format!("burst note r{round}i{i}");
                    notes.insert(note.clone());
                    fake.push(Reply::tool_call("memory_append", json!({ "text": note })));
                }
                _ => fake.push(Reply::text(&format!("noted r{round}i{i}"))),
            }
        }
        let base = fake.request_count();
        let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let odd: Arc<Mutex<Vec<(u16, Value)>>> = Arc::default();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (addr, acked, odd) = (d.addr, acked.clone(), odd.clone());
                std::thread::spawn(move || {
                    let (status, s) = post_to(addr, "/api/sessions", "");
                    let Some(id) = s["session_id"].as_str().map(str::to_string) else {
                        if status != 0 {
                            odd.lock().unwrap().push((status, s));
                        }
                        return;
                    };
                    for j in 0.. {
                        let text = format!("round {round} client {c} message {j}");
                        let body = json!({"message": text, "session_id": id}).to_string();
                        match post_to(addr, "/api/chat", &body) {
                            (200, _) => acked.lock().unwrap().push((id.clone(), text)),
                            (0, _) => return,
                            other => odd.lock().unwrap().push(other),
                        }
                    }
                })
            })
            .collect();
        eventually(PATIENCE, "the burst to reach the kill point", || {
            (fake.request_count() >= base + kill_after).then_some(())
        });
        let home = d.into_home();
        for c in clients {
            c.join().unwrap();
        }
        let odd = odd.lock().unwrap();
        assert!(odd.is_empty(), "round {round}: unexpected answers {odd:?}");
        let acked = acked.lock().unwrap().clone();

        // On disk, with the daemon dead: a healthy database holding every acknowledged turn.
        let conn = rusqlite::Connection::open(home.state_dir().join("sessions.sqlite")).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "round {round}");
        for (id, text) in &acked {
            let n: i64 = conn
                .query_row(
                    "SELECT count(*) FROM messages WHERE session_id = ?1 AND role = 'user' AND content = ?2",
                    [id, text],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(n, 1, "round {round}: acknowledged {text:?} is stored once");
        }
        drop(conn);
        // Every burst file is exactly one version written to it; no daily-log line is torn.
        for (k, allowed) in versions.iter().enumerate() {
            let text = fs::read_to_string(ws.join(burst_rel(k))).unwrap();
            assert!(
                allowed.contains(&text),
                "round {round}: {} is torn ({} bytes, starts {:?})",
                burst_rel(k),
                text.len(),
                text.lines().next()
            );
        }
        for entry in fs::read_dir(ws.join("memory")).unwrap() {
            let text = fs::read_to_string(entry.unwrap().path()).unwrap();
            assert!(text.is_empty() || text.ends_with('\n'), "{text:?}");
            for line in text.lines() {
                // "- HH:MM <note>"
                let note = line.get(8..).unwrap_or_default();
                assert!(
                    line.starts_with("- ") && notes.contains(note),
                    "round {round}: torn daily-log line {line:?}"
                );
            }
        }

        d = start(home);
        // A write cut between create and rename leaves a hidden temp file: the start
        // sweeps those of dead processes.
        let mut dirs = vec![ws.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in fs::read_dir(&dir).unwrap().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                assert!(!name.contains(".tmp-"), "round {round}: {name} left behind");
                if entry.file_type().unwrap().is_dir() {
                    dirs.push(entry.path());
                }
            }
        }
        assert_eq!(stored(&d, &kept), kept_messages, "round {round}");
        served.extend(acked.iter().map(|(id, _)| id.clone()));
        for id in &served {
            assert_eq!(d.get(&format!("/api/sessions/{id}")).0, 200, "{id}");
        }
        for k in 0..BURST_FILES {
            wait_for_hit(&d, &format!("quokka{k}"), &burst_rel(k));
        }
        let after = format!("knowledge/after-{round}.md");
        fs::write(ws.join(&after), format!("the wombat{round} digs\n")).unwrap();
        wait_for_hit(&d, &format!("wombat{round}"), &after);
    }
}
