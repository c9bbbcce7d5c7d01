//! Locks that outlive a panic.
//!
//! A handler that panics is caught and answered 500 (the worker lives on); a mutex it held
//! is then poisoned. Every lock in the daemon guards data that stays consistent between
//! statements, so the next holder takes it as it is rather than failing too.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning (see the module doc).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
