//! What the bridge remembers across restarts, in `<state dir>/telegram.json` (written
//! atomically, mode 0600): the next update to ask for, each chat's session, and the
//! messages taken but not answered yet.
//!
//! The offset moves past an update before the update is acted on, so a restart never
//! repeats a message (and its tool calls). A message whose answer a restart cut short is
//! still listed as pending, and its chat is told after the restart to send it again: the
//! message is not silently lost either.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::sync::lock;

/// A file larger than this is not one we wrote.
const MAX_STATE_BYTES: u64 = 4 * 1024 * 1024;

const VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Saved {
    #[serde(default)]
    version: u32,
    /// The `offset` of the next `getUpdates`: one past the newest update taken.
    #[serde(default)]
    offset: i64,
    /// Chat id → the session its messages go to.
    #[serde(default)]
    sessions: BTreeMap<i64, String>,
    /// Chat id → update ids of messages taken and not answered yet.
    #[serde(default)]
    pending: BTreeMap<i64, Vec<i64>>,
}

/// The bridge's persisted state.
pub struct Store {
    path: PathBuf,
    saved: Mutex<Saved>,
}

impl Store {
    /// Reads `path`; a missing file is a first start, a corrupt one is logged and replaced
    /// (Telegram then re-sends the updates it still holds, and chats start new sessions).
    pub fn load(path: &Path) -> Store {
        let saved = match read(path) {
            Ok(Some(s)) => s,
            Ok(None) => Saved::default(),
            Err(why) => {
                log::warn!(
                    "telegram: ignoring state file {}: {why}; chats start new sessions",
                    path.display()
                );
                Saved::default()
            }
        };
        Store {
            path: path.to_path_buf(),
            saved: Mutex::new(saved),
        }
    }

    pub fn offset(&self) -> i64 {
        lock(&self.saved).offset
    }

    /// Moves the offset past `update_id`; a message that will be answered (`chat`) is
    /// listed as pending until [`Store::answered`].
    pub fn take(&self, update_id: i64, chat: Option<i64>) {
        let mut s = lock(&self.saved);
        s.offset = s.offset.max(update_id + 1);
        if let Some(chat) = chat {
            s.pending.entry(chat).or_default().push(update_id);
        }
        self.save(&s);
    }

    /// The message `update_id` of `chat` was answered (or given up).
    pub fn answered(&self, chat: i64, update_id: i64) {
        let mut s = lock(&self.saved);
        if let Some(ids) = s.pending.get_mut(&chat) {
            ids.retain(|id| *id != update_id);
            if ids.is_empty() {
                s.pending.remove(&chat);
            }
        }
        self.save(&s);
    }

    /// Messages left unanswered by the previous run, by chat; forgotten once read.
    pub fn take_interrupted(&self) -> Vec<(i64, usize)> {
        let mut s = lock(&self.saved);
        if s.pending.is_empty() {
            return Vec::new();
        }
        let out = s.pending.iter().map(|(c, ids)| (*c, ids.len())).collect();
        s.pending.clear();
        self.save(&s);
        out
    }

    pub fn session(&self, chat: i64) -> Option<String> {
        lock(&self.saved).sessions.get(&chat).cloned()
    }

    pub fn set_session(&self, chat: i64, session_id: &str) {
        let mut s = lock(&self.saved);
        s.sessions.insert(chat, session_id.to_string());
        self.save(&s);
    }

    /// Writes under the lock, so an older snapshot never overwrites a newer one.
    fn save(&self, s: &Saved) {
        if let Err(e) = write(&self.path, s) {
            log::warn!(
                "telegram: cannot write {}: {e}; a restart may repeat or forget messages",
                self.path.display()
            );
        }
    }
}

fn read(path: &Path) -> Result<Option<Saved>, String> {
    crate::durable::read_state(path, MAX_STATE_BYTES)
}

fn write(path: &Path, s: &Saved) -> io::Result<()> {
    let mut shown = s.clone();
    shown.version = VERSION;
    crate::durable::write_state(path, &shown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn offsets_sessions_and_pending_survive_a_reload() {
        let dir = std::env::temp_dir().join(format!(
            "lgpt-tg-state-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("telegram.json");
        let store = Store::load(&path);
        assert_eq!(store.offset(), 0);
        store.take(10, Some(42));
        store.take(11, None);
        store.take(12, Some(42));
        store.answered(42, 10);
        store.set_session(42, "s1");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let again = Store::load(&path);
        assert_eq!(again.offset(), 13);
        assert_eq!(again.session(42).as_deref(), Some("s1"));
        assert_eq!(again.take_interrupted(), vec![(42, 1)]);
        assert!(Store::load(&path).take_interrupted().is_empty());

        fs::write(&path, "{not json").unwrap();
        assert_eq!(Store::load(&path).offset(), 0, "a corrupt file is replaced");
        fs::remove_dir_all(&dir).unwrap();
    }
}
