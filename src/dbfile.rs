//! SQLite database files seen from outside SQLite: is the file still a database, is it
//! still the file a connection has open, and moving aside or deleting a damaged one
//! together with its `-wal`/`-shm` companions.
//!
//! SQLite keeps pages it has read in its cache and, in WAL mode, never looks at the main
//! file's header again while the WAL is unchanged: a file overwritten under a running
//! daemon goes unnoticed until a page that is not cached is needed. Reading the 16-byte
//! header before a transaction is a cheap way to notice at once.

use std::fs;
use std::io::{self, Read};
use std::os::raw::c_int;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, FileControl};

/// The first 16 bytes of every SQLite 3 database.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// `Err(why)` when `path` holds bytes that are not an SQLite database. A missing or empty
/// file is fine (SQLite creates it), and so is a file that cannot be read (SQLite reports
/// that better).
pub fn check_header(path: &Path) -> Result<(), String> {
    let mut head = [0u8; 16];
    let mut n = 0;
    let read = fs::File::open(path).and_then(|mut f| {
        while n < head.len() {
            match f.read(&mut head[n..])? {
                0 => break,
                got => n += got,
            }
        }
        Ok(())
    });
    if read.is_err() || n == 0 || head == *SQLITE_MAGIC {
        return Ok(());
    }
    Err("it does not start with the SQLite header".into())
}

/// True when SQLite reports the database file itself as damaged (as opposed to a lock, a
/// full disk or a permission): the errors a new file cures.
pub fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// True when the file at `path` is no longer the one `conn` has open: deleted, or replaced
/// by a rename (a user cleaning a cache, another process that rebuilt it).
pub fn has_moved(conn: &Connection, path: &Path) -> bool {
    let mut moved: c_int = 0;
    match conn.file_control(Some("main"), FileControl::HasMoved(&mut moved)) {
        Ok(()) => moved != 0,
        Err(_) => !path.exists(),
    }
}

/// The database's write-ahead log, `<path>-wal`.
pub fn wal_path(path: &Path) -> PathBuf {
    with_suffix(path, "-wal")
}

/// The database's shared-memory index, `<path>-shm`.
pub fn shm_path(path: &Path) -> PathBuf {
    with_suffix(path, "-shm")
}

/// Deletes the database and its `-wal`/`-shm` files; missing ones are fine. For a cache
/// that is rebuilt from elsewhere; user data is moved aside instead ([`move_aside`]).
pub fn remove(path: &Path) -> io::Result<()> {
    for p in [path.to_path_buf(), wal_path(path), shm_path(path)] {
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot remove {}: {e}", p.display()),
                ));
            }
        }
    }
    Ok(())
}

/// Makes the database and its `-wal`/`-shm` files the owner's alone, whatever the umask
/// (SQLite gives the companions the database file's mode). Best effort: a file that does
/// not exist yet is skipped.
pub fn make_private(path: &Path) {
    for p in [path.to_path_buf(), wal_path(path), shm_path(path)] {
        let _ = crate::paths::make_private(&p);
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Renames a damaged database and its `-wal`/`-shm` files to
/// `<name>.corrupt-<UTC time>` (plus the same suffixes, so SQLite still pairs them for a
/// recovery) and returns the new path of the database. Nothing is deleted.
pub fn move_aside(path: &Path) -> io::Result<PathBuf> {
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let base = format!("{}.corrupt-{stamp}", path.display());
    let mut target = PathBuf::from(&base);
    let mut n = 1;
    while fs::symlink_metadata(&target).is_ok() {
        n += 1;
        target = PathBuf::from(format!("{base}-{n}"));
    }
    for suffix in ["-wal", "-shm", ""] {
        let from = with_suffix(path, suffix);
        let to = with_suffix(&target, suffix);
        match fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot move {} aside: {e}", from.display()),
                ));
            }
        }
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_move_aside() {
        let dir = std::env::temp_dir().join(format!("lgpt-dbfile-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let db = dir.join("s.sqlite");
        assert!(check_header(&db).is_ok(), "missing is fine");
        fs::write(&db, b"").unwrap();
        assert!(check_header(&db).is_ok(), "empty is fine");
        fs::write(&db, b"SQLite format 3\0rest of page one").unwrap();
        assert!(check_header(&db).is_ok());
        fs::write(&db, b"SQLite").unwrap();
        assert!(check_header(&db).is_err(), "a short file is not a database");
        fs::write(&db, b"garbage garbage garbage").unwrap();
        assert!(check_header(&db).is_err());

        fs::write(dir.join("s.sqlite-wal"), b"wal").unwrap();
        let first = move_aside(&db).unwrap();
        assert!(!db.exists());
        assert_eq!(fs::read(&first).unwrap(), b"garbage garbage garbage");
        assert_eq!(
            fs::read(format!("{}-wal", first.display())).unwrap(),
            b"wal"
        );
        fs::write(&db, b"again").unwrap();
        let second = move_aside(&db).unwrap();
        assert_ne!(first, second, "a second copy does not replace the first");
        assert_eq!(fs::read(&second).unwrap(), b"again");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn companions_are_removed_together_and_moves_are_noticed() {
        let dir = std::env::temp_dir().join(format!("lgpt-dbfile-rm-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let db = dir.join("c.sqlite");
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t(x);")
            .unwrap();
        assert!(wal_path(&db).exists() && shm_path(&db).exists());
        assert!(!has_moved(&conn, &db));
        remove(&db).unwrap();
        assert!(!db.exists() && !wal_path(&db).exists() && !shm_path(&db).exists());
        assert!(has_moved(&conn, &db));
        remove(&db).unwrap();
        drop(conn);
        fs::remove_dir_all(&dir).unwrap();
    }
}
