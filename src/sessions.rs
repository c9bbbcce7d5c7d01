//! Persistent chat sessions in SQLite (state dir, WAL, one transaction per message).
//!
//! The database is user data, so the store watches the file it writes to: before every
//! operation it checks that the file at its path is still the one it has open (a user who
//! deletes it gets a new, empty one there rather than writes into an unlinked file) and
//! that it still starts like a database (a file overwritten under the daemon fails every
//! session operation with an error naming it, instead of serving stale cached pages and
//! writing into a damaged file). A damaged file is never deleted: at the next start it is
//! moved aside as `sessions.sqlite.corrupt-<time>` and a new database is created.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use log::{error, warn};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::dbfile;
use crate::providers::{Context, Message, Role, ToolCall};
use crate::sync::lock;

const SCHEMA_VERSION: i64 = 1;

/// A storage failure (disk, corruption). Never user error. The message names the file.
#[derive(Debug)]
pub struct StoreError(String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// A session as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionInfo {
    pub session_id: String,
    pub model: String,
    pub created_at: String,
    pub updated_at: String,
    pub message_count: u64,
}

/// A stored message with its time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredMessage {
    #[serde(skip)]
    pub id: i64,
    pub role: Role,
    pub content: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
    pub created_at: String,
    /// What the model was told beside a user message; the model's business, not the API's.
    #[serde(skip)]
    pub context: Option<Context>,
}

impl StoredMessage {
    pub fn to_message(&self) -> Message {
        Message {
            role: self.role,
            content: self.content.clone(),
            tool_calls: self.tool_calls.clone(),
            tool_call_id: self.tool_call_id.clone(),
            tool_name: self.tool_name.clone(),
            is_error: self.is_error,
            context: self.context.clone(),
        }
    }
}

/// What a turn needs from a session: the summary of older turns and the messages after it.
#[derive(Debug, Clone, Default)]
pub struct SessionContext {
    pub summary: String,
    pub messages: Vec<StoredMessage>,
}

/// The session database. One connection behind a mutex: session writes are small and rare
/// next to a model call.
pub struct SessionStore {
    path: PathBuf,
    state: Mutex<State>,
    /// Sessions with a turn in progress; a second concurrent turn on one is refused.
    busy: Mutex<HashSet<String>>,
}

/// A session claimed for one turn; dropping it frees the session.
pub struct Claim<'a> {
    store: &'a SessionStore,
    id: String,
}

impl Claim<'_> {
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        lock(&self.store.busy).remove(&self.id);
    }
}

struct State {
    /// `None` after a reopen failed; the next operation tries again.
    conn: Option<Connection>,
    /// Why the open file was found damaged while running. Every operation fails from then
    /// on, until the file is replaced or the daemon restarts: the cached pages no longer
    /// match the file, so writing on would only damage it further.
    damaged: Option<String>,
}

fn now() -> String {
    crate::clock::rfc3339(jiff::Timestamp::now())
}

fn role_str(r: Role) -> &'static str {
    match r {
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

fn parse_role(s: &str) -> Role {
    match s {
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        _ => Role::User,
    }
}

/// Opens the database at `path`, creating it (0600, and its folder) when missing. A file
/// that is not a database, or that SQLite finds corrupt while opening it, is moved aside
/// with a warning and a new database is created in its place.
fn open_conn(path: &Path) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent() {
        crate::paths::create_private_dir(dir).map_err(|e| StoreError(e.to_string()))?;
    }
    if let Err(why) = dbfile::check_header(path) {
        set_aside(path, &why)?;
    }
    match init(path) {
        Err(e) if dbfile::is_corruption(&e) => {
            set_aside(path, &e.to_string())?;
            init(path).map_err(|e| StoreError(format!("{}: {e}", path.display())))
        }
        other => other.map_err(|e| StoreError(format!("{}: {e}", path.display()))),
    }
}

fn set_aside(path: &Path, why: &str) -> Result<(), StoreError> {
    let aside = dbfile::move_aside(path).map_err(|e| StoreError(e.to_string()))?;
    warn!(
        "sessions database {} is corrupt ({why}): moved aside to {} (kept for recovery, \
         e.g. `sqlite3 FILE .recover`); starting a new, empty one",
        path.display(),
        aside.display()
    );
    Ok(())
}

fn init(path: &Path) -> rusqlite::Result<Connection> {
    if !path.exists()
        && let Err(e) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!("cannot create it: {e}")),
        ));
    }
    let _ = crate::paths::make_private(path);
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL in WAL mode: a committed message survives a crash or kill of the daemon
    // (the WAL is written before the commit returns); only a power cut may lose the
    // last commits, never corrupt the file. FULL would add an fsync to every message,
    // several milliseconds before a stream's first token on slow disks.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version == 0 {
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE IF NOT EXISTS sessions (
                id TEXT PRIMARY KEY,
                model TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                summary TEXT NOT NULL DEFAULT '',
                summarized_upto INTEGER NOT NULL DEFAULT 0
             );
             CREATE TABLE IF NOT EXISTS messages (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
                role TEXT NOT NULL,
                content TEXT NOT NULL,
                tool_calls TEXT,
                tool_call_id TEXT,
                tool_name TEXT,
                is_error INTEGER NOT NULL DEFAULT 0,
                created_at TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS messages_by_session ON messages(session_id, id);
             PRAGMA user_version = 1;
             COMMIT;",
        )?;
    } else if version != SCHEMA_VERSION {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(format!(
                "schema version {version}, this build knows {SCHEMA_VERSION}"
            )),
        ));
    }
    // Added within version 1: a nullable column older builds never name, so a database
    // stays usable by both.
    let has_context: bool = conn.query_row(
        "SELECT count(*) FROM pragma_table_info('messages') WHERE name = 'context'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has_context {
        conn.execute("ALTER TABLE messages ADD COLUMN context TEXT", [])?;
    }
    Ok(conn)
}

impl SessionStore {
    /// Opens (creating, 0600) the database at `path`; a corrupt one is moved aside.
    pub fn open(path: &Path) -> Result<SessionStore, StoreError> {
        let conn = open_conn(path)?;
        Ok(SessionStore {
            path: path.to_path_buf(),
            state: Mutex::new(State {
                conn: Some(conn),
                damaged: None,
            }),
            busy: Mutex::new(HashSet::new()),
        })
    }

    /// Marks session `id` busy for a turn; `None` when it is in one already.
    pub fn claim(&self, id: &str) -> Option<Claim<'_>> {
        lock(&self.busy).insert(id.to_string()).then(|| Claim {
            store: self,
            id: id.to_string(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the connection once the file has been checked (see the module doc).
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut state = lock(&self.state);
        let state = &mut *state;
        if state
            .conn
            .as_ref()
            .is_some_and(|c| dbfile::has_moved(c, &self.path))
        {
            warn!(
                "sessions database {} was deleted or replaced while the daemon ran; \
                 opening what is there now (a new, empty database if nothing is)",
                self.path.display()
            );
            // Close ours first: closing removes `-wal`/`-shm` by name, and they must be
            // the old file's, not the new one's.
            drop(state.conn.take());
            state.damaged = None;
        }
        let conn = match state.conn.as_mut() {
            Some(conn) => conn,
            None => state.conn.insert(open_conn(&self.path)?),
        };
        if state.damaged.is_none()
            && let Err(why) = dbfile::check_header(&self.path)
        {
            // Leave the file as it was found: no checkpoint writes into it at close.
            let _ = conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true);
            error!(
                "sessions database {} is corrupt ({why}); session requests fail until \
                 the daemon restarts, which moves it aside and starts a new one",
                self.path.display()
            );
            state.damaged = Some(why);
        }
        if let Some(why) = &state.damaged {
            return Err(StoreError(format!(
                "{} is corrupt ({why}); restart the daemon to move it aside and start a new one",
                self.path.display()
            )));
        }
        f(conn).map_err(|e| {
            let corrupt = if dbfile::is_corruption(&e) {
                error!("sessions database {}: {e}", self.path.display());
                " (the database is corrupt: stop the daemon and move the file aside; \
                 `sqlite3 FILE .recover` salvages what is readable)"
            } else {
                ""
            };
            StoreError(format!("{}: {e}{corrupt}", self.path.display()))
        })
    }

    pub fn create(&self, model: &str) -> Result<SessionInfo, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let at = now();
        self.with(|conn| {
            conn.execute(
                "INSERT INTO sessions (id, model, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)",
                params![id, model, at],
            )
        })?;
        Ok(SessionInfo {
            session_id: id,
            model: model.to_string(),
            created_at: at.clone(),
            updated_at: at,
            message_count: 0,
        })
    }

    pub fn list(&self) -> Result<Vec<SessionInfo>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn.prepare(
                "SELECT s.id, s.model, s.created_at, s.updated_at,
                        (SELECT count(*) FROM messages m WHERE m.session_id = s.id)
                 FROM sessions s ORDER BY s.updated_at DESC, s.id",
            )?;
            let rows = stmt.query_map([], info_row)?;
            rows.collect()
        })
    }

    pub fn get(&self, id: &str) -> Result<Option<SessionInfo>, StoreError> {
        self.with(|conn| {
            conn.query_row(
                "SELECT s.id, s.model, s.created_at, s.updated_at,
                        (SELECT count(*) FROM messages m WHERE m.session_id = s.id)
                 FROM sessions s WHERE s.id = ?1",
                [id],
                info_row,
            )
            .optional()
        })
    }

    pub fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.with(|conn| conn.execute("DELETE FROM sessions WHERE id = ?1", [id]))
            .map(|n| n > 0)
    }

    /// Every message of a session, oldest first.
    pub fn messages(&self, id: &str) -> Result<Vec<StoredMessage>, StoreError> {
        self.with(|conn| messages_after(conn, id, 0))
    }

    /// Appends one message in its own transaction.
    pub fn append(&self, id: &str, msg: &Message) -> Result<(), StoreError> {
        let at = now();
        let calls = if msg.tool_calls.is_empty() {
            None
        } else {
            serde_json::to_string(&msg.tool_calls).ok()
        };
        let context = msg
            .context
            .as_ref()
            .and_then(|c| serde_json::to_string(c).ok());
        self.with(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO messages (session_id, role, content, tool_calls, tool_call_id, tool_name, is_error, created_at, context)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![id, role_str(msg.role), msg.content, calls, msg.tool_call_id, msg.tool_name, msg.is_error as i64, at, context],
            )?;
            tx.execute(
                "UPDATE sessions SET updated_at = ?2 WHERE id = ?1",
                params![id, at],
            )?;
            tx.commit()
        })
    }

    /// The summary and the messages a turn should see.
    pub fn context(&self, id: &str) -> Result<SessionContext, StoreError> {
        self.with(|conn| {
            let (summary, upto): (String, i64) = conn.query_row(
                "SELECT summary, summarized_upto FROM sessions WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok(SessionContext {
                summary,
                messages: messages_after(conn, id, upto)?,
            })
        })
    }

    /// Records that messages up to `upto` (a message id) are now covered by `summary`.
    pub fn set_summary(&self, id: &str, summary: &str, upto: i64) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                "UPDATE sessions SET summary = ?2, summarized_upto = ?3 WHERE id = ?1",
                params![id, summary, upto],
            )
        })?;
        Ok(())
    }
}

fn messages_after(conn: &Connection, id: &str, after: i64) -> rusqlite::Result<Vec<StoredMessage>> {
    let mut stmt = conn.prepare(
        "SELECT id, role, content, tool_calls, tool_call_id, tool_name, is_error, created_at, context
         FROM messages WHERE session_id = ?1 AND id > ?2 ORDER BY id",
    )?;
    let rows = stmt.query_map(params![id, after], |r| {
        let calls: Option<String> = r.get(3)?;
        Ok(StoredMessage {
            id: r.get(0)?,
            role: parse_role(&r.get::<_, String>(1)?),
            content: r.get(2)?,
            tool_calls: calls
                .and_then(|c| serde_json::from_str(&c).ok())
                .unwrap_or_default(),
            tool_call_id: r.get(4)?,
            tool_name: r.get(5)?,
            is_error: r.get::<_, i64>(6)? != 0,
            created_at: r.get(7)?,
            context: r
                .get::<_, Option<String>>(8)?
                .and_then(|c| serde_json::from_str(&c).ok()),
        })
    })?;
    rows.collect()
}

fn info_row(r: &rusqlite::Row) -> rusqlite::Result<SessionInfo> {
    Ok(SessionInfo {
        session_id: r.get(0)?,
        model: r.get(1)?,
        created_at: r.get(2)?,
        updated_at: r.get(3)?,
        message_count: r.get::<_, i64>(4)? as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn create_append_read_delete() {
        let dir = std::env::temp_dir().join(format!("lgpt-sessions-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sqlite");
        let store = SessionStore::open(&path).unwrap();
        let s = store.create("openai/gpt-x").unwrap();
        store.append(&s.session_id, &Message::user("hi")).unwrap();
        let call = ToolCall {
            id: "c1".into(),
            name: "bash".into(),
            arguments: json!({"command": "ls"}),
        };
        store
            .append(&s.session_id, &Message::assistant("", vec![call.clone()]))
            .unwrap();
        store
            .append(&s.session_id, &Message::tool_result(&call, "denied", true))
            .unwrap();
        drop(store);

        let store = SessionStore::open(&path).unwrap();
        let info = store.get(&s.session_id).unwrap().unwrap();
        assert_eq!(info.message_count, 3);
        let msgs = store.messages(&s.session_id).unwrap();
        assert_eq!(msgs[1].tool_calls, vec![call]);
        assert!(msgs[2].is_error);
        assert_eq!(msgs[2].to_message().role, Role::Tool);

        store
            .set_summary(&s.session_id, "they said hi", msgs[0].id)
            .unwrap();
        let ctx = store.context(&s.session_id).unwrap();
        assert_eq!(ctx.summary, "they said hi");
        assert_eq!(ctx.messages.len(), 2);

        assert_eq!(store.list().unwrap().len(), 1);
        assert!(store.delete(&s.session_id).unwrap());
        assert!(!store.delete(&s.session_id).unwrap());
        assert!(store.get(&s.session_id).unwrap().is_none());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_messages_context_is_kept_and_older_databases_gain_the_column() {
        let dir = std::env::temp_dir().join(format!(
            "lgpt-sessions-context-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sqlite");
        // A database as the first release of schema 1 made it: no `context` column.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE sessions (id TEXT PRIMARY KEY, model TEXT NOT NULL,
                created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
                summary TEXT NOT NULL DEFAULT '', summarized_upto INTEGER NOT NULL DEFAULT 0);
             CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT,
                session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
                role TEXT NOT NULL, content TEXT NOT NULL, tool_calls TEXT, tool_call_id TEXT,
                tool_name TEXT, is_error INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL);
             INSERT INTO sessions VALUES ('old', 'openai/m', 't', 't', '', 0);
             INSERT INTO messages (session_id, role, content, created_at)
                VALUES ('old', 'user', 'from before', 't');
             PRAGMA user_version = 1;",
        )
        .unwrap();
        drop(conn);
        let store = SessionStore::open(&path).unwrap();
        let context = Context {
            text: "<context>\nLocal time: 10:00\n</context>".into(),
            shown: vec![crate::providers::Shown {
                file: "memory/2026-02-14.md".into(),
                from: 0,
                to: 12,
                hash: 42,
                whole: true,
            }],
        };
        store
            .append("old", &Message::user("hi").with_context(context.clone()))
            .unwrap();
        let msgs = store.messages("old").unwrap();
        assert_eq!(msgs[0].context, None);
        assert_eq!(msgs[1].to_message().context, Some(context));
        let shown = serde_json::to_string(&msgs).unwrap();
        assert!(!shown.contains("context"), "not part of the API: {shown}");
        drop(store);
        assert!(
            SessionStore::open(&path).is_ok(),
            "opens again once migrated"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_deleted_file_is_recreated_and_a_damaged_one_moved_aside() {
        let dir = std::env::temp_dir().join(format!("lgpt-sessions-fault-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sqlite");
        let store = SessionStore::open(&path).unwrap();
        let old = store.create("openai/x").unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        assert!(store.list().unwrap().is_empty(), "a new database");
        let new = store.create("openai/x").unwrap();
        drop(store);
        let store = SessionStore::open(&path).unwrap();
        assert!(store.get(&old.session_id).unwrap().is_none());
        assert!(
            store.get(&new.session_id).unwrap().is_some(),
            "written to the real file"
        );

        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let err = store.list().unwrap_err().to_string();
        assert!(err.contains("corrupt") && err.contains("s.sqlite"), "{err}");
        drop(store);
        let store = SessionStore::open(&path).unwrap();
        assert!(store.list().unwrap().is_empty());
        let aside: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.starts_with("s.sqlite.corrupt-") && !n.ends_with("-wal") && !n.ends_with("-shm")
            })
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(
            std::fs::read(dir.join(&aside[0])).unwrap()[..8192],
            [0x5a; 8192]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
