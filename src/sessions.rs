//! Persistent chat sessions in SQLite (state dir, WAL, one transaction per message).

use std::fmt;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::providers::{Message, Role, ToolCall};

const SCHEMA_VERSION: i64 = 1;

/// A storage failure (disk, corruption). Never user error.
#[derive(Debug)]
pub struct StoreError(String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

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
    conn: Mutex<Connection>,
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

impl SessionStore {
    /// Opens (creating, 0600) the database at `path`.
    pub fn open(path: &Path) -> Result<SessionStore, StoreError> {
        if !path.exists() {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| StoreError(format!("cannot create {}: {e}", path.display())))?;
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
            return Err(StoreError(format!(
                "{} has schema version {version}, this build knows {SCHEMA_VERSION}",
                path.display()
            )));
        }
        Ok(SessionStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn create(&self, model: &str) -> Result<SessionInfo, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let at = now();
        self.conn().execute(
            "INSERT INTO sessions (id, model, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)",
            params![id, model, at],
        )?;
        Ok(SessionInfo {
            session_id: id,
            model: model.to_string(),
            created_at: at.clone(),
            updated_at: at,
            message_count: 0,
        })
    }

    pub fn list(&self) -> Result<Vec<SessionInfo>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT s.id, s.model, s.created_at, s.updated_at,
                    (SELECT count(*) FROM messages m WHERE m.session_id = s.id)
             FROM sessions s ORDER BY s.updated_at DESC, s.id",
        )?;
        let rows = stmt.query_map([], info_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn get(&self, id: &str) -> Result<Option<SessionInfo>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT s.id, s.model, s.created_at, s.updated_at,
                        (SELECT count(*) FROM messages m WHERE m.session_id = s.id)
                 FROM sessions s WHERE s.id = ?1",
                [id],
                info_row,
            )
            .optional()?)
    }

    pub fn delete(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .execute("DELETE FROM sessions WHERE id = ?1", [id])?
            > 0)
    }

    /// Every message of a session, oldest first.
    pub fn messages(&self, id: &str) -> Result<Vec<StoredMessage>, StoreError> {
        self.messages_after(id, 0)
    }

    fn messages_after(&self, id: &str, after: i64) -> Result<Vec<StoredMessage>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, role, content, tool_calls, tool_call_id, tool_name, is_error, created_at
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
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Appends one message in its own transaction.
    pub fn append(&self, id: &str, msg: &Message) -> Result<(), StoreError> {
        let at = now();
        let calls = if msg.tool_calls.is_empty() {
            None
        } else {
            serde_json::to_string(&msg.tool_calls).ok()
        };
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO messages (session_id, role, content, tool_calls, tool_call_id, tool_name, is_error, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![id, role_str(msg.role), msg.content, calls, msg.tool_call_id, msg.tool_name, msg.is_error as i64, at],
        )?;
        tx.execute(
            "UPDATE sessions SET updated_at = ?2 WHERE id = ?1",
            params![id, at],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The summary and the messages a turn should see.
    pub fn context(&self, id: &str) -> Result<SessionContext, StoreError> {
        let (summary, upto): (String, i64) = self.conn().query_row(
            "SELECT summary, summarized_upto FROM sessions WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(SessionContext {
            summary,
            messages: self.messages_after(id, upto)?,
        })
    }

    /// Records that messages up to `upto` (a message id) are now covered by `summary`.
    pub fn set_summary(&self, id: &str, summary: &str, upto: i64) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE sessions SET summary = ?2, summarized_upto = ?3 WHERE id = ?1",
            params![id, summary, upto],
        )?;
        Ok(())
    }
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
}
