//! Unit tests of [`Memory`] on real files and a real SQLite database in a temp dir.

use super::*;

struct Fixture {
    root: PathBuf,
    memory: Memory,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        Fixture::with_config(tag, &MemoryConfig::default())
    }

    fn with_config(tag: &str, config: &MemoryConfig) -> Fixture {
        let root = std::env::temp_dir().join(format!(
            "lgpt-memory-{tag}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let memory = Memory::open(config, &root.join("ws"), &root.join("cache/index.sqlite"))
            .expect("open memory");
        Fixture { root, memory }
    }

    fn reopen(&self, config: &MemoryConfig) -> Memory {
        Memory::open(config, &self.ws(), &self.db()).expect("reopen memory")
    }

    fn ws(&self) -> PathBuf {
        self.root.join("ws")
    }

    fn db(&self) -> PathBuf {
        self.root.join("cache/index.sqlite")
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.ws().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }

    fn files_of(&self, text: &str) -> Vec<String> {
        self.memory
            .search(text, 100)
            .unwrap()
            .into_iter()
            .map(|h| h.file)
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// Sets a file's mtime to `secs` after the epoch (tests need a changed mtime without
/// waiting for the clock).
fn set_mtime(path: &Path, secs: u64) {
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

#[test]
fn open_creates_workspace_and_indexes_nothing_yet() {
    let fx = Fixture::new("open");
    assert!(fx.ws().join("MEMORY.md").is_file());
    assert!(fx.ws().join("memory").is_dir());
    assert_eq!(fx.memory.counts(), IndexCounts::default());
    let stats = fx.memory.stats().unwrap();
    assert_eq!(stats.index.last_indexed, None);
    assert_eq!(stats.files.total, 3);
    let report = fx.memory.reindex(false, None).unwrap();
    assert_eq!((report.files_processed, report.files_updated), (3, 3));
    assert_eq!(fx.memory.counts().files, 3);
    assert!(fx.memory.stats().unwrap().index.last_indexed.is_some());
}

#[test]
fn search_finds_edits_and_forgets_deleted_files() {
    let fx = Fixture::new("follow");
    let notes = fx.write("knowledge/notes.md", "# Notes\n\nThe zebra eats grass.\n");
    fx.memory.reindex(false, None).unwrap();
    let hits = fx.memory.search("zebra", 10).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].file, "knowledge/notes.md");
    assert_eq!((hits[0].line_start, hits[0].line_end), (1, 3));
    assert_eq!(hits[0].score, 1.0);

    fs::write(&notes, "# Notes\n\nThe giraffe eats leaves.\n").unwrap();
    set_mtime(&notes, 1_000_000);
    let report = fx.memory.reindex(false, None).unwrap();
    assert_eq!(report.files_updated, 1);
    assert!(fx.files_of("zebra").is_empty());
    assert_eq!(fx.files_of("giraffe"), ["knowledge/notes.md"]);

    fs::remove_file(&notes).unwrap();
    let report = fx.memory.reindex(false, None).unwrap();
    assert_eq!(report.files_updated, 1);
    assert!(fx.files_of("giraffe").is_empty());
    assert_eq!(fx.memory.counts().files, 3);
}

#[test]
fn unchanged_files_are_not_rewritten() {
    let fx = Fixture::new("unchanged");
    let p = fx.write("a.md", "alpha\n");
    fx.memory.reindex(false, None).unwrap();
    let again = fx.memory.reindex(false, None).unwrap();
    assert_eq!(again.files_updated, 0);
    // Same content, new mtime: metadata only.
    set_mtime(&p, 2_000_000);
    assert_eq!(fx.memory.reindex(false, None).unwrap().files_updated, 0);
    let row = fx
        .memory
        .index
        .load_files()
        .unwrap()
        .into_iter()
        .find(|r| r.path == "a.md")
        .unwrap();
    assert_eq!(row.mtime_ns, 2_000_000 * 1_000_000_000);
    // Force re-chunks everything.
    assert_eq!(fx.memory.reindex(true, None).unwrap().files_updated, 4);
}

#[test]
fn state_survives_a_reopen_without_rereading() {
    let fx = Fixture::new("reopen");
    fx.write("a.md", "alpha\n");
    fx.memory.reindex(false, None).unwrap();
    let counts = fx.memory.counts();
    let again = fx.reopen(&MemoryConfig::default());
    assert_eq!(again.counts(), counts);
    assert!(again.stats().unwrap().index.last_indexed.is_some());
    assert_eq!(again.reindex(false, None).unwrap().files_updated, 0);
}

#[test]
fn changed_chunk_settings_rechunk_everything_once() {
    let fx = Fixture::new("rechunk");
    fx.memory.reindex(false, None).unwrap();
    let config = MemoryConfig {
        chunk_chars: 400,
        ..MemoryConfig::default()
    };
    let again = fx.reopen(&config);
    assert_eq!(again.reindex(false, None).unwrap().files_updated, 3);
    assert_eq!(again.reindex(false, None).unwrap().files_updated, 0);
}

#[test]
fn refresh_file_indexes_one_file_at_once() {
    let fx = Fixture::new("refresh");
    fx.memory.reindex(false, None).unwrap();
    let p = fx.write("memory/2026-02-14.md", "met the okapi\n");
    fx.memory.refresh_file(&p).unwrap();
    assert_eq!(fx.files_of("okapi"), ["memory/2026-02-14.md"]);
    fs::remove_file(&p).unwrap();
    fx.memory.refresh_file(&p).unwrap();
    assert!(fx.files_of("okapi").is_empty());
    // Ignored and foreign paths.
    fx.memory.refresh_file(&fx.ws().join("notes.txt")).unwrap();
    let outside = fx.memory.refresh_file(Path::new("/etc/passwd"));
    assert!(matches!(outside, Err(MemoryError::OutsideWorkspace(_))));
}

#[test]
fn all_terms_first_then_any_term() {
    let fx = Fixture::new("andor");
    fx.write("a.md", "apples and pears\n");
    fx.write("b.md", "apples only\n");
    fx.memory.reindex(false, None).unwrap();
    assert_eq!(fx.files_of("apples pears"), ["a.md"]);
    let mut any = fx.files_of("pears bananas");
    any.sort();
    assert_eq!(any, ["a.md"]);
    let hits = fx.memory.search("apples", 10).unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].score, 1.0);
    assert!(hits[1].score > 0.0 && hits[1].score <= 1.0);
    assert!(fx.memory.search("!!! ---", 10).unwrap().is_empty());
    assert!(fx.memory.search("apples", 0).unwrap().is_empty());
}

#[test]
fn long_chunks_are_cut_around_the_match_with_right_lines() {
    let config = MemoryConfig {
        result_chars: 120,
        ..MemoryConfig::default()
    };
    let fx = Fixture::with_config("excerpt", &config);
    let text: String = (1..=30)
        .map(|i| {
            if i == 20 {
                "the hidden quokka lives here\n".to_string()
            } else {
                format!("filler line {i}\n")
            }
        })
        .collect();
    fx.write("k.md", &text);
    fx.memory.reindex(false, None).unwrap();
    let hit = &fx.memory.search("quokka", 1).unwrap()[0];
    assert!(
        hit.content.starts_with("…the hidden quokka"),
        "{}",
        hit.content
    );
    assert!(hit.content.chars().count() <= 120);
    assert_eq!(hit.line_start, 20);
    let shown_lines = hit.content.lines().count();
    assert_eq!(hit.line_end, 20 + shown_lines - 1);
}

#[test]
fn unicode_and_hostile_queries() {
    let fx = Fixture::new("unicode");
    fx.write(
        "u.md",
        "Café crème in Zürich\n東京タワーに行った\n🦀 crab day\n",
    );
    fx.memory.reindex(false, None).unwrap();
    assert_eq!(fx.files_of("cafe"), ["u.md"]);
    assert_eq!(fx.files_of("ZURICH"), ["u.md"]);
    assert_eq!(fx.files_of("東京タワー"), ["u.md"]);
    assert_eq!(fx.files_of("🦀 crab"), ["u.md"]);
    for q in [
        "\"", "NEAR(", "a:b", "-crab", "crab*", "(crab", "crab OR", "*",
    ] {
        fx.memory.search(q, 10).unwrap();
    }
}

#[test]
fn garbage_database_is_rebuilt_at_open() {
    let fx = Fixture::new("garbage");
    // A closed database (as after the daemon stopped): its WAL is checkpointed and empty.
    fx.reopen(&MemoryConfig::default())
        .reindex(false, None)
        .unwrap();
    fs::write(fx.db(), vec![0xAB; 100_000]).unwrap();
    let again = fx.reopen(&MemoryConfig::default());
    assert_eq!(again.counts(), IndexCounts::default());
    assert_eq!(again.reindex(false, None).unwrap().files_updated, 3);
    assert!(!again.search("memory", 10).unwrap().is_empty());
}

#[test]
fn deleted_database_is_recreated_by_the_next_pass() {
    let fx = Fixture::new("deleted");
    fx.write("a.md", "wombat\n");
    fx.memory.reindex(false, None).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _ = fs::remove_file(format!("{}{suffix}", fx.db().display()));
    }
    let report = fx.memory.reindex(false, None).unwrap();
    assert_eq!(report.files_updated, 4);
    assert!(fx.db().exists());
    assert_eq!(fx.files_of("wombat"), ["a.md"]);
}

#[test]
fn too_large_and_unreadable_files_are_skipped() {
    let config = MemoryConfig {
        max_file_bytes: 1000,
        ..MemoryConfig::default()
    };
    let fx = Fixture::with_config("skip", &config);
    fx.write("big.md", &"walrus ".repeat(500));
    fx.memory.reindex(false, None).unwrap();
    assert!(fx.files_of("walrus").is_empty());
    assert_eq!(fx.memory.counts().files, 3);
    assert_eq!(fx.memory.reindex(false, None).unwrap().files_updated, 0);
}

#[test]
fn stats_describe_the_workspace() {
    let fx = Fixture::new("stats");
    fx.write("MEMORY.md", "one\ntwo\nthree");
    fx.write("memory/2026-01-01.md", "12345");
    fx.write("memory/2026-01-02.md", "123");
    fx.write("memory/notes.md", "not a daily log");
    fx.memory.reindex(false, None).unwrap();
    let s = fx.memory.stats().unwrap();
    assert_eq!(s.files.total, 6);
    assert_eq!(s.files.memory_md.size_bytes, 13);
    assert_eq!(s.files.memory_md.lines, 3);
    assert_eq!(s.files.daily_logs.count, 2);
    assert_eq!(s.files.daily_logs.total_size_bytes, 8);
    assert!(s.files.heartbeat_md.lines > 0);
    assert_eq!(s.index.files, 6);
    assert!(s.index.database_size_bytes > 0);
    let json = serde_json::to_value(&s).unwrap();
    for key in ["workspace", "files", "index"] {
        assert!(json.get(key).is_some(), "{json}");
    }
    assert!(
        json["index"]["last_indexed"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    // A file changed since the last index is read for its line count.
    fx.write("MEMORY.md", "one\ntwo\nthree\nfour\n");
    assert_eq!(fx.memory.stats().unwrap().files.memory_md.lines, 4);
}

#[test]
fn scanner_follows_edits_and_stops() {
    let fx = Fixture::new("scanner");
    let memory = Arc::new(fx.reopen(&MemoryConfig::default()));
    let scanner = memory.spawn_scanner(Duration::from_millis(50));
    fx.write("s.md", "the pangolin sleeps\n");
    let deadline = Instant::now() + Duration::from_secs(20);
    while memory.search("pangolin", 10).unwrap().is_empty() {
        assert!(Instant::now() < deadline, "scanner never indexed the file");
        std::thread::sleep(Duration::from_millis(20));
    }
    scanner.stop();
}

#[test]
fn excerpt_and_score_edges() {
    let e = excerpt("\n\n  hello\nworld\n\n", &[], 100);
    assert_eq!(e.text, "  hello\nworld");
    assert_eq!((e.first_line, e.last_line), (2, 3));
    assert_eq!(score(-5.0, -10.0), 0.5);
    assert_eq!(score(-10.0, -10.0), 1.0);
    assert_eq!(score(-1e-12, -10.0), 0.0001);
    assert_eq!(score(0.0, 0.0), 1.0);
    let long = "x".repeat(5000) + " needle " + &"y".repeat(5000);
    let e = excerpt(&long, &["needle".to_string()], 100);
    assert!(e.text.contains("needle"), "{}", e.text);
    assert!(e.text.chars().count() <= 100);
}

#[test]
fn r_unlistable_workspace_does_not_empty_the_index() {
    let fx = Fixture::new("unmounted");
    fx.write("a.md", "capybara\n");
    fx.memory.reindex(false, None).unwrap();
    let moved = fx.root.join("ws-away");
    fs::rename(fx.ws(), &moved).unwrap();
    assert!(matches!(
        fx.memory.reindex(false, None),
        Err(MemoryError::Workspace(_))
    ));
    assert_eq!(
        fx.files_of("capybara"),
        ["a.md"],
        "index kept while unreachable"
    );
    fs::rename(&moved, fx.ws()).unwrap();
    assert_eq!(fx.memory.reindex(false, None).unwrap().files_updated, 0);
}

/// A schema 1 database as the previous build left it, holding one chunk of `a.md`.
fn write_schema_1(db: &Path) {
    fs::create_dir_all(db.parent().unwrap()).unwrap();
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER NOT NULL,
             mtime_ns INTEGER NOT NULL, hash INTEGER NOT NULL, lines INTEGER NOT NULL,
             chunks INTEGER NOT NULL, indexed_at INTEGER NOT NULL) WITHOUT ROWID;
         CREATE TABLE chunks (id INTEGER PRIMARY KEY, path TEXT NOT NULL,
             line_start INTEGER NOT NULL, line_end INTEGER NOT NULL, content TEXT NOT NULL);
         CREATE INDEX chunks_path ON chunks(path);
         CREATE VIRTUAL TABLE chunks_fts USING fts5(content, content = 'chunks',
             content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 2');
         CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
         INSERT INTO files VALUES ('a.md', 30, 1, 7, 2, 1, 1);
         INSERT INTO chunks VALUES (1, 'a.md', 1, 2, 'the aardvark digs
old renewal notes');
         INSERT INTO chunks_fts (rowid, content) VALUES (1, 'the aardvark digs
old renewal notes');
         INSERT INTO meta VALUES ('chunking', '1600/2'), ('last_indexed', '1');
         PRAGMA user_version = 1;",
    )
    .unwrap();
}

fn table_names(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn a_schema_1_index_is_searched_while_the_new_one_is_built() {
    let root = std::env::temp_dir().join(format!(
        "lgpt-memory-migrate-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let (ws, db) = (root.join("ws"), root.join("cache/index.sqlite"));
    write_schema_1(&db);
    fs::create_dir_all(&ws).unwrap();
    fs::write(ws.join("a.md"), "the aardvark digs\nnew renewal notes\n").unwrap();

    let memory = Memory::open(&MemoryConfig::default(), &ws, &db).unwrap();
    assert!(memory.index.is_legacy());
    // Before any pass: the old index answers, as it did (no stemming there).
    let hits = memory.search("aardvark", 10).unwrap();
    assert_eq!(hits.len(), 1);
    assert!(hits[0].content.contains("old renewal"), "{hits:?}");
    assert!(memory.search("renew", 10).unwrap().is_empty());
    assert_eq!(memory.stats().unwrap().index.state, "indexing");
    // Stopped before the pass: the next start resumes the migration.
    drop(memory);
    let memory = Memory::open(&MemoryConfig::default(), &ws, &db).unwrap();
    assert!(memory.index.is_legacy());
    assert_eq!(memory.search("aardvark", 10).unwrap().len(), 1);

    let report = memory.reindex(false, None).unwrap();
    assert_eq!(report.files_updated, 4, "every file into the new tables");
    assert!(!memory.index.is_legacy());
    let hits = memory.search("renew", 10).unwrap();
    assert_eq!(hits.len(), 1, "stemmed now");
    assert!(hits[0].content.contains("new renewal"), "{hits:?}");
    assert_eq!(memory.stats().unwrap().index.state, "ready");
    drop(memory);
    let tables = table_names(&db);
    assert!(tables.iter().all(|t| !t.starts_with("v1_")), "{tables:?}");
    let memory = Memory::open(&MemoryConfig::default(), &ws, &db).unwrap();
    assert!(!memory.index.is_legacy());
    assert_eq!(memory.reindex(false, None).unwrap().files_updated, 0);
    drop(memory);
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn stems_and_cjk_words_are_found() {
    let fx = Fixture::new("stems");
    fx.write(
        "memory/2026-01-14.md",
        "- 10:02 Renewed the passport\n- 11:00 東京タワーに行った\n",
    );
    fx.memory.reindex(false, None).unwrap();
    assert_eq!(fx.files_of("renewal"), ["memory/2026-01-14.md"]);
    assert_eq!(fx.files_of("タワー"), ["memory/2026-01-14.md"]);
    let hit = &fx.memory.search("タワー", 1).unwrap()[0];
    assert_eq!(
        (hit.line_start, hit.line_end),
        (1, 2),
        "shown with its neighbour"
    );
}
