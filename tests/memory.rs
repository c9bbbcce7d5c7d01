//! Memory over real HTTP against the real daemon: the workspace, an index that follows the
//! files without being asked, search and its errors, stats, reindex, and the CLI.

mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use support::{Daemon, Home, eventually};

/// Scans often so tests are quick; one test keeps the default to prove it is enough.
const FAST_SCAN: &str = "[memory]\nscan_interval = \"200ms\"\n";

/// Long enough for a slow, shared CI machine; the scan itself runs every 200 ms.
const PATIENCE: Duration = Duration::from_secs(30);

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

fn error_message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("")
}

fn search_path(q: &str, limit: Option<&str>) -> String {
    let mut path = format!(
        "/api/memory/search?q={}",
        utf8_percent_encode(q, NON_ALPHANUMERIC)
    );
    if let Some(l) = limit {
        path.push_str(&format!("&limit={l}"));
    }
    path
}

/// The results of a search that must answer 200.
fn search(d: &Daemon, q: &str) -> Vec<Value> {
    let (status, body) = d.get(&search_path(q, None));
    assert_eq!(status, 200, "{q:?}: {body}");
    assert_eq!(body["query"], q);
    let results = body["results"].as_array().cloned().unwrap_or_default();
    assert_eq!(body["total"].as_u64(), Some(results.len() as u64), "{body}");
    results
}

/// Polls until a search for `q` returns a result from `file`, and returns that result.
fn wait_for_hit(d: &Daemon, q: &str, file: &str) -> Value {
    eventually(PATIENCE, &format!("{q:?} found in {file}"), || {
        search(d, q).into_iter().find(|h| h["file"] == file)
    })
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

#[test]
fn fresh_daemon_creates_the_workspace_and_indexes_it() {
    let d = Daemon::start(FAST_SCAN);
    let ws = d.home.workspace();
    for f in ["MEMORY.md", "HEARTBEAT.md", "SOUL.md"] {
        assert!(ws.join(f).is_file(), "{f} missing");
    }
    assert!(ws.join("memory").is_dir());
    let heartbeat = fs::read_to_string(ws.join("HEARTBEAT.md")).unwrap();
    assert!(
        localgpt::memory::workspace::is_effectively_empty(&heartbeat),
        "an idle heartbeat must cost nothing: {heartbeat}"
    );
    // The starter files are indexed at start, without a reindex call.
    let status = eventually(PATIENCE, "status shows the starter files", || {
        let (_, s) = d.get("/api/status");
        (s["memory"]["files_indexed"].as_u64() == Some(3)).then_some(s)
    });
    assert!(status["memory"]["chunks"].as_u64().unwrap() >= 3);
    assert!(!search(&d, "long-term notes").is_empty());
}

#[test]
fn user_files_are_never_overwritten() {
    let home = Home::new("memkeep");
    home.write_config(FAST_SCAN);
    write(&home.workspace(), "MEMORY.md", "my own memory\n");
    write(&home.workspace(), "HEARTBEAT.md", "");
    let d = Daemon::start_in(home);
    let ws = d.home.workspace();
    wait_for_hit(&d, "own memory", "MEMORY.md");
    assert_eq!(
        fs::read_to_string(ws.join("MEMORY.md")).unwrap(),
        "my own memory\n"
    );
    assert_eq!(fs::read_to_string(ws.join("HEARTBEAT.md")).unwrap(), "");
    assert!(
        ws.join("SOUL.md").is_file(),
        "missing starters are still added"
    );
}

#[test]
fn a_file_written_by_hand_is_found_without_reindex() {
    // The default scan interval: what a user editing MEMORY.md actually gets.
    let d = Daemon::start("");
    write(
        &d.home.workspace(),
        "MEMORY.md",
        "# Memory\n\n## Pets\nThe cat is called Marmalade.\n",
    );
    let hit = wait_for_hit(&d, "marmalade", "MEMORY.md");
    assert_eq!(hit["line_start"], 1);
    assert_eq!(hit["line_end"], 4);
    assert!(hit["content"].as_str().unwrap().contains("Marmalade"));
    assert_eq!(hit["score"], 1.0);
}

#[test]
fn an_edited_line_moves_and_a_deleted_file_disappears() {
    let d = Daemon::start(FAST_SCAN);
    let ws = d.home.workspace();
    let filler = |n: usize| -> String {
        (0..n)
            .map(|i| format!("filler line {i} with some padding text to fill the chunk\n"))
            .collect()
    };
    write(
        &ws,
        "knowledge/moves.md",
        &format!("{}axolotl here\n", filler(2)),
    );
    let hit = wait_for_hit(&d, "axolotl", "knowledge/moves.md");
    assert_eq!(
        (hit["line_start"].as_u64(), hit["line_end"].as_u64()),
        (Some(1), Some(3))
    );

    write(
        &ws,
        "knowledge/moves.md",
        &format!("{}axolotl moved\n{}", filler(80), filler(5)),
    );
    let hit = eventually(PATIENCE, "the hit follows line 81", || {
        search(&d, "axolotl")
            .into_iter()
            .find(|h| h["line_start"].as_u64().is_some_and(|s| s > 1))
    });
    let (start, end) = (
        hit["line_start"].as_u64().unwrap(),
        hit["line_end"].as_u64().unwrap(),
    );
    assert!(start <= 81 && 81 <= end, "{hit}");
    assert!(hit["content"].as_str().unwrap().contains("axolotl moved"));
    assert!(
        search(&d, "axolotl")
            .iter()
            .all(|h| !h["content"].as_str().unwrap().contains("axolotl here")),
        "the old text left the index"
    );

    fs::remove_file(ws.join("knowledge/moves.md")).unwrap();
    eventually(PATIENCE, "deleted file leaves the index", || {
        search(&d, "axolotl").is_empty().then_some(())
    });
}

#[test]
fn unicode_text_and_hostile_queries() {
    let d = Daemon::start(FAST_SCAN);
    write(
        &d.home.workspace(),
        "memory/2026-02-14.md",
        "Visited Zürich, had a café crème.\n東京タワーに行った\n🦀 Rust meetup: async/await \"tips\"\n",
    );
    wait_for_hit(&d, "zurich", "memory/2026-02-14.md");
    for q in ["cafe creme", "CAFÉ", "東京タワー", "🦀 rust", "async/await"] {
        assert_eq!(search(&d, q).len(), 1, "{q:?}");
    }
    let hostile = [
        "\"",
        "\"tips",
        "-rust",
        "rust*",
        "*",
        "content:rust",
        "(rust",
        "NEAR(rust async)",
        "rust AND",
        "OR",
        "NOT rust",
        "'; DROP TABLE chunks; --",
        "🦀",
        "^",
        "{a b}",
        "a:b:c",
        "\u{0301}",
        "%",
        "+",
        "rust -- async",
    ];
    for q in hostile {
        let (status, body) = d.get(&search_path(q, None));
        assert_eq!(status, 200, "{q:?}: {body}");
        assert!(body["results"].is_array());
    }
    // Nothing searchable is zero results, not an error.
    let (status, body) = d.get(&search_path("!!! ???", None));
    assert_eq!((status, body["total"].as_u64()), (200, Some(0)));
}

#[test]
fn limit_bounds_and_scores() {
    let d = Daemon::start(FAST_SCAN);
    let ws = d.home.workspace();
    for i in 0..120 {
        let extra = "narwhal ".repeat(i % 7);
        write(
            &ws,
            &format!("knowledge/n{i:03}.md"),
            &format!("narwhal {extra}note {i}\n"),
        );
    }
    eventually(PATIENCE, "all 120 files indexed", || {
        let (_, s) = d.get("/api/status");
        (s["memory"]["files_indexed"].as_u64() == Some(123)).then_some(())
    });
    assert_eq!(search(&d, "narwhal").len(), 10, "default limit");
    let (status, body) = d.get(&search_path("narwhal", Some("100")));
    assert_eq!(status, 200);
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 100);
    let scores: Vec<f64> = results
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    assert_eq!(scores[0], 1.0);
    assert!(scores.iter().all(|s| *s > 0.0 && *s <= 1.0));
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "best first");
    let (status, body) = d.get(&search_path("narwhal", Some("1")));
    assert_eq!((status, body["total"].as_u64()), (200, Some(1)));
    for bad in ["0", "101", "-3", "ten", "2.5", ""] {
        let (status, body) = d.get(&search_path("narwhal", Some(bad)));
        assert_eq!(
            (status, error_code(&body)),
            (400, "invalid_request"),
            "{bad}"
        );
        assert!(error_message(&body).contains("limit"), "{body}");
    }
}

#[test]
fn search_errors_name_the_parameter() {
    let d = Daemon::start(FAST_SCAN);
    for (path, param) in [
        ("/api/memory/search".to_string(), "'q'"),
        ("/api/memory/search?limit=5".to_string(), "'q'"),
        ("/api/memory/search?q=".to_string(), "'q'"),
        ("/api/memory/search?q=%20%20".to_string(), "'q'"),
        (format!("/api/memory/search?q={}", "a".repeat(1001)), "'q'"),
    ] {
        let (status, body) = d.get(&path);
        assert_eq!(
            (status, error_code(&body)),
            (400, "invalid_request"),
            "{path}"
        );
        assert!(error_message(&body).contains(param), "{path}: {body}");
    }
    let (status, _) = d.get(&format!("/api/memory/search?q={}", "a".repeat(1000)));
    assert_eq!(status, 200, "1000 characters is within the bound");
    let (status, body) = d.post("/api/memory/search?q=x", "");
    assert_eq!((status, error_code(&body)), (405, "method_not_allowed"));
}

#[test]
fn stats_status_and_reindex_shapes() {
    let d = Daemon::start(FAST_SCAN);
    let ws = d.home.workspace();
    write(&ws, "memory/2026-02-13.md", "day one\n");
    write(&ws, "memory/2026-02-14.md", "day two\nmore\n");
    write(&ws, "MEMORY.md", "alpha\nbeta\ngamma\n");
    // Every file's latest text is in the index: the scanner is done with them.
    wait_for_hit(&d, "gamma", "MEMORY.md");
    wait_for_hit(&d, "one", "memory/2026-02-13.md");
    wait_for_hit(&d, "more", "memory/2026-02-14.md");
    let (status, s) = d.get("/api/memory/stats");
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["workspace"], ws.to_str().unwrap());
    assert_eq!(s["files"]["total"], 5);
    assert_eq!(s["files"]["memory_md"]["size_bytes"], 17);
    assert_eq!(s["files"]["memory_md"]["lines"], 3);
    assert!(s["files"]["heartbeat_md"]["size_bytes"].as_u64().unwrap() > 0);
    assert!(s["files"]["heartbeat_md"]["lines"].as_u64().unwrap() > 0);
    assert_eq!(s["files"]["daily_logs"]["count"], 2);
    assert_eq!(s["files"]["daily_logs"]["total_size_bytes"], 8 + 13);
    assert!(s["index"]["chunks"].as_u64().unwrap() >= 5);
    let last = s["index"]["last_indexed"].as_str().unwrap();
    assert!(last.ends_with('Z') && last.contains('T'), "{last}");
    assert!(s["index"]["database_size_bytes"].as_u64().unwrap() > 0);

    let (status, r) = d.post("/api/memory/reindex", "");
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["files_processed"], 5);
    assert_eq!(r["files_updated"], 0, "nothing changed since the scan");
    assert!(r["chunks"].as_u64().unwrap() >= 5);
    assert!(r["duration_ms"].is_u64());
    let (status, r) = d.post("/api/memory/reindex", r#"{"force": true}"#);
    assert_eq!((status, r["files_updated"].as_u64()), (200, Some(5)));
    let (status, body) = d.post("/api/memory/reindex", r#"{"force": "yes"}"#);
    assert_eq!((status, error_code(&body)), (400, "invalid_request"));
    assert!(error_message(&body).contains("force"));
}

#[test]
fn a_garbage_index_file_is_rebuilt_at_start() {
    let home = Home::new("memgarbage");
    home.write_config(FAST_SCAN);
    fs::create_dir_all(home.cache_dir()).unwrap();
    let garbage: Vec<u8> = (0..200_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    fs::write(home.cache_dir().join("memory-index.sqlite"), garbage).unwrap();
    write(&home.workspace(), "knowledge/k.md", "the quetzal flies\n");
    let d = Daemon::start_in(home);
    assert_eq!(d.get("/health").0, 200);
    wait_for_hit(&d, "quetzal", "knowledge/k.md");
    d.wait_log("rebuil");
}

#[test]
fn a_deleted_index_is_recreated_while_running() {
    let d = Daemon::start(FAST_SCAN);
    write(&d.home.workspace(), "knowledge/a.md", "the tapir naps\n");
    wait_for_hit(&d, "tapir", "knowledge/a.md");
    for suffix in ["", "-wal", "-shm"] {
        let _ = fs::remove_file(
            d.home
                .cache_dir()
                .join(format!("memory-index.sqlite{suffix}")),
        );
    }
    eventually(PATIENCE, "index file recreated", || {
        d.home
            .cache_dir()
            .join("memory-index.sqlite")
            .exists()
            .then_some(())
    });
    wait_for_hit(&d, "tapir", "knowledge/a.md");
}

#[test]
fn cli_works_with_and_without_the_daemon() {
    let mut d = Daemon::start(FAST_SCAN);
    write(&d.home.workspace(), "knowledge/c.md", "the ocelot hunts\n");
    wait_for_hit(&d, "ocelot", "knowledge/c.md");

    let (status, out, err) = d.home.run(&["memory", "search", "ocelot", "--json"]);
    assert!(status.success(), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["total"], 1);
    assert_eq!(v["results"][0]["file"], "knowledge/c.md");
    let (status, out, err) = d.home.run(&["memory", "stats"]);
    assert!(status.success(), "{err}");
    assert!(out.contains("MEMORY.md"), "{out}");
    let (status, out, err) = d.home.run(&["memory", "reindex"]);
    assert!(status.success(), "{err}");
    assert!(out.contains("indexed 4 files"), "{out}");

    assert!(d.stop().success());
    write(&d.home.workspace(), "knowledge/c.md", "the margay climbs\n");
    let (status, out, err) = d.home.run(&["memory", "search", "margay", "-l", "3"]);
    assert!(status.success(), "{err}");
    assert!(out.contains("knowledge/c.md:1-1"), "{out}");
    let (status, out, _) = d.home.run(&["memory", "search", "ocelot"]);
    assert!(status.success());
    assert!(out.contains("no results"), "{out}");
    let (status, out, err) = d.home.run(&["memory", "stats", "--json"]);
    assert!(status.success(), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["files"]["total"], 4);
    let (status, _, err) = d.home.run(&["memory", "search", "x", "-l", "101"]);
    assert_eq!(status.code(), Some(2), "{err}");
}

#[test]
fn words_are_found_in_other_forms() {
    let d = Daemon::start(FAST_SCAN);
    write(
        &d.home.workspace(),
        "memory/2026-01-14.md",
        "- 10:02 Passport renewal done at the town hall\n- 18:30 Went running by the river\n",
    );
    wait_for_hit(&d, "passport", "memory/2026-01-14.md");
    for (q, line) in [
        ("renew", 1),
        ("renewed passports", 1),
        ("runs", 2),
        ("rivers", 2),
    ] {
        let results = search(&d, q);
        assert_eq!(results.len(), 1, "{q:?}: {results:?}");
        let (start, end) = (
            results[0]["line_start"].as_u64().unwrap(),
            results[0]["line_end"].as_u64().unwrap(),
        );
        assert!(start <= line && line <= end, "{q:?}: {results:?}");
    }
}

#[test]
fn a_cjk_word_inside_a_sentence_is_found() {
    let d = Daemon::start(FAST_SCAN);
    write(
        &d.home.workspace(),
        "knowledge/trip.md",
        "# 旅行\n\n昨日は東京タワーに行って、夜景を見ました。\n서울에서 친구를 만났어요.\n",
    );
    wait_for_hit(&d, "東京タワー", "knowledge/trip.md");
    for q in ["タワー", "夜景", "行って", "서울", "친구"] {
        let results = search(&d, q);
        assert_eq!(results.len(), 1, "{q:?}: {results:?}");
        assert_eq!(results[0]["file"], "knowledge/trip.md");
    }
    assert!(search(&d, "大阪").is_empty());
}

#[test]
fn search_says_which_mode_ran_and_checks_it() {
    let d = Daemon::start(FAST_SCAN);
    write(
        &d.home.workspace(),
        "knowledge/m.md",
        "the kinkajou climbs\n",
    );
    wait_for_hit(&d, "kinkajou", "knowledge/m.md");
    // Without embeddings every mode answers lexically, and says so.
    for mode in ["", "&mode=lexical", "&mode=hybrid", "&mode=vector"] {
        let (status, body) = d.get(&format!("{}{mode}", search_path("kinkajou", None)));
        assert_eq!(status, 200, "{mode}: {body}");
        assert_eq!(body["mode"], "lexical", "{mode}: {body}");
        assert_eq!(body["total"], 1);
    }
    for bad in ["fuzzy", "", "HYBRID!"] {
        let (status, body) = d.get(&format!("{}&mode={bad}", search_path("kinkajou", None)));
        assert_eq!(
            (status, error_code(&body)),
            (400, "invalid_request"),
            "{bad}"
        );
        assert!(error_message(&body).contains("'mode'"), "{body}");
    }
    let (_, s) = d.get("/api/memory/stats");
    assert_eq!(s["embeddings"]["state"], "off", "{s}");
    assert_eq!(s["embeddings"]["provider"], "");
    let (_, s) = d.get("/api/status");
    assert_eq!(s["embeddings"]["state"], "off", "{s}");
    let (status, out, err) = d
        .home
        .run(&["memory", "search", "kinkajou", "--mode", "vector", "--json"]);
    assert!(status.success(), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["mode"].as_str(), v["total"].as_u64()),
        (Some("lexical"), Some(1))
    );
    let (status, _, err) = d.home.run(&["memory", "search", "x", "--mode", "fuzzy"]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("hybrid, lexical or vector"), "{err}");
}
