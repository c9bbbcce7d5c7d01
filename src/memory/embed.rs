//! Embedding in the background: a thread finds the chunks whose text has no vector for the
//! configured model, sends them to the embedder in batches, and stores the vectors in the
//! index database (keyed by text hash and model) and in memory for search.
//!
//! It never blocks indexing or search: it reads through the index's reader connections,
//! writes one short transaction per batch, and searches answer lexically until every chunk
//! has its vector. An embedder that cannot be reached is retried with a growing pause
//! (up to `memory.embeddings.max_backoff`) and logged once per outage; a text the embedder
//! refuses while it answers others is left out (searched lexically only) instead of
//! blocking the rest.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, select};
use log::{info, warn};
use serde::Serialize;

use super::embedder::{EmbedError, Embedder};
use super::fusion::Fusion;
use super::index::IndexError;
use super::vectors::{VectorStore, quantise};
use super::{Memory, lock};
use crate::config::EmbeddingsConfig;

/// The first pause after a failed attempt; it doubles up to `max_backoff`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// What the embedding side is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbedState {
    /// No embedder configured: search is lexical.
    Off,
    /// Loading stored vectors or embedding new text; search is lexical until done.
    Embedding,
    /// Every chunk has its vector (or was refused by the embedder).
    Ready,
    /// The embedder did not answer; retried with backoff, search is lexical meanwhile.
    Down,
}

/// `embeddings` in `/api/memory/stats` and `/api/status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingsStatus {
    /// `memory.embeddings.provider`; empty when off.
    pub provider: String,
    pub model: String,
    pub state: EmbedState,
    /// Chunks that have their vector.
    pub embedded: u64,
    /// Chunks waiting for theirs.
    pub pending: u64,
    /// Chunks whose text the embedder refused (searched lexically only).
    pub failed: u64,
    /// Why the embedder is down; null otherwise.
    pub error: Option<String>,
}

impl EmbeddingsStatus {
    /// The status when no embedder is configured.
    pub fn off() -> EmbeddingsStatus {
        EmbeddingsStatus {
            provider: String::new(),
            model: String::new(),
            state: EmbedState::Off,
            embedded: 0,
            pending: 0,
            failed: 0,
            error: None,
        }
    }
}

#[derive(Debug, Clone)]
struct Progress {
    state: EmbedState,
    embedded: u64,
    pending: u64,
    failed: u64,
    error: Option<String>,
    /// Until the first sweep the counts are unknown: pending is then the chunk count.
    swept: bool,
    /// Bumped by every index change; a sweep may only declare `Ready` if none came since
    /// it listed the chunks.
    changes: u64,
}

/// The embedding side of [`Memory`]: the client, the vectors, and the worker's progress.
pub(super) struct Embedding {
    pub embedder: Embedder,
    pub fusion: Fusion,
    pub store: RwLock<VectorStore>,
    provider: String,
    batch_size: usize,
    max_backoff: Duration,
    progress: Mutex<Progress>,
    /// Texts the embedder refused while it answered others.
    refused: Mutex<HashSet<u64>>,
    /// Index passes that changed chunks nudge the worker through this.
    wake_tx: Sender<()>,
    wake_rx: Receiver<()>,
    /// Set when a worker thread runs (the daemon); without one (the CLI) the vectors are
    /// loaded by the first search that wants them.
    worker: AtomicBool,
    /// Serialises loading the stored vectors.
    loading: Mutex<bool>,
    /// The database was reopened: the worker reloads the vectors from it.
    reload: AtomicBool,
}

impl Embedding {
    /// The embedding side for `config`; `None` when embeddings are off.
    pub fn new(config: &EmbeddingsConfig) -> Option<Embedding> {
        let embedder = Embedder::new(config)?;
        let (wake_tx, wake_rx) = bounded(1);
        let vector_weight = config.vector_weight;
        Some(Embedding {
            embedder,
            fusion: if config.fusion == "weighted" {
                Fusion::Weighted { vector_weight }
            } else {
                Fusion::Rrf { vector_weight }
            },
            store: RwLock::new(VectorStore::default()),
            provider: config.provider.clone(),
            batch_size: config.batch_size.max(1),
            max_backoff: config.max_backoff.get().max(FIRST_BACKOFF),
            progress: Mutex::new(Progress {
                state: EmbedState::Embedding,
                embedded: 0,
                pending: 0,
                failed: 0,
                error: None,
                swept: false,
                changes: 0,
            }),
            refused: Mutex::new(HashSet::new()),
            wake_tx,
            wake_rx,
            worker: AtomicBool::new(false),
            loading: Mutex::new(false),
            reload: AtomicBool::new(false),
        })
    }

    /// Says a worker thread is about to run, so searches leave loading the vectors to it.
    /// Called before the thread starts: a search arriving first must not load them too.
    pub fn expect_worker(&self) {
        self.worker.store(true, Ordering::SeqCst);
    }

    pub fn state(&self) -> EmbedState {
        lock(&self.progress).state
    }

    /// The status for the API; `chunks` stands in for pending before the first sweep.
    pub fn status(&self, chunks: u64) -> EmbeddingsStatus {
        let p = lock(&self.progress).clone();
        EmbeddingsStatus {
            provider: self.provider.clone(),
            model: self.embedder.model().to_string(),
            state: p.state,
            embedded: p.embedded,
            pending: if p.swept { p.pending } else { chunks },
            failed: p.failed,
            error: p.error,
        }
    }

    /// Called by an index pass that changed chunks: they may need vectors, so search is
    /// lexical until the worker has looked.
    pub fn note_change(&self) {
        {
            let mut p = lock(&self.progress);
            p.changes += 1;
            if p.state == EmbedState::Ready {
                p.state = EmbedState::Embedding;
            }
        }
        let _ = self.wake_tx.try_send(());
    }

    /// `Ready`, unless the index changed since the sweep that saw `changes` (then the
    /// worker looks again). Returns whether it is ready.
    fn set_ready(&self, changes: u64) -> bool {
        let mut p = lock(&self.progress);
        if p.changes != changes {
            return false;
        }
        p.state = EmbedState::Ready;
        p.error = None;
        true
    }

    /// Called after the index database was reopened (deleted, replaced or rebuilt).
    pub fn note_reopen(&self) {
        self.reload.store(true, Ordering::SeqCst);
        *lock(&self.loading) = false;
        self.note_change();
    }

    /// Called when a search could not embed its text: the embedder is down until the
    /// worker reaches it again.
    pub fn note_query_failure(&self, e: &EmbedError) {
        let mut p = lock(&self.progress);
        if p.state != EmbedState::Down {
            warn!(
                "memory: the embedder at {} did not answer a search ({e}); searching \
                 lexically until it does",
                self.embedder.shown_url()
            );
            p.state = EmbedState::Down;
            p.error = Some(e.to_string());
        }
        drop(p);
        let _ = self.wake_tx.try_send(());
    }

    fn set_state(&self, state: EmbedState, error: Option<String>) {
        let mut p = lock(&self.progress);
        p.state = state;
        p.error = error;
    }
}

/// The worker's pause between attempts while the embedder is down. The outage itself is
/// the `Down` state, shared with searches, so it is logged once whoever notices first.
struct Outage {
    backoff: Duration,
}

impl Memory {
    /// The embedding worker's body (see the module doc). Returns when `stop` is set or
    /// `stop_rx`'s sender is dropped.
    pub(super) fn run_embedder(&self, stop: &AtomicBool, stop_rx: &Receiver<()>) {
        let Some(emb) = &self.embedding else {
            return;
        };
        emb.worker.store(true, Ordering::SeqCst);
        if let Err(e) = self.load_vectors(emb) {
            warn!("memory: cannot load stored vectors ({e}); they will be embedded again");
        }
        let mut outage = Outage {
            backoff: Duration::ZERO,
        };
        let mut pruned = false;
        let mut run: Option<Run> = None;
        'sweep: while !stop.load(Ordering::SeqCst) {
            // Woken from here on means "look again".
            while emb.wake_rx.try_recv().is_ok() {}
            if emb.reload.swap(false, Ordering::SeqCst)
                && let Err(e) = self.load_vectors(emb)
            {
                warn!("memory: cannot load stored vectors ({e}); they will be embedded again");
            }
            let changes = lock(&emb.progress).changes;
            let (pending, referenced) = match self.sweep(emb) {
                Ok(s) => s,
                Err(e) => {
                    warn!("memory: cannot list chunks to embed ({e}); trying again");
                    if wait(stop_rx, None, Some(Duration::from_secs(5))) {
                        break;
                    }
                    continue;
                }
            };
            if emb.state() == EmbedState::Down && wait(stop_rx, None, Some(outage.backoff)) {
                break;
            }
            if pending.is_empty() {
                if emb.state() == EmbedState::Down {
                    match emb.embedder.embed(&["ok".to_string()]) {
                        Ok(_) => outage.recovered(emb),
                        Err(e) => outage.failed(emb, &e, emb.max_backoff),
                    }
                    continue;
                }
                if !emb.set_ready(changes) {
                    continue;
                }
                if let Some(run) = run.take().filter(|r| r.texts > 0) {
                    let took = run.started.elapsed();
                    info!(
                        "memory: embedded {} chunk texts in {:.1} s ({:.0}/s; {:.1} s of it \
                         waiting for the embedder)",
                        run.texts,
                        took.as_secs_f64(),
                        run.texts as f64 / took.as_secs_f64().max(0.001),
                        run.waiting.as_secs_f64()
                    );
                }
                self.prune(emb, &referenced, &mut pruned);
                if wait(stop_rx, Some(&emb.wake_rx), None) {
                    break;
                }
                continue;
            }
            if emb.state() != EmbedState::Down {
                emb.set_state(EmbedState::Embedding, None);
            }
            for batch in pending.chunks(emb.batch_size) {
                if stop.load(Ordering::SeqCst) {
                    break 'sweep;
                }
                if !emb.wake_rx.is_empty() {
                    continue 'sweep;
                }
                let current = run.get_or_insert_with(Run::start);
                match self.embed_texts(emb, batch, current) {
                    Ok(()) => {
                        outage.recovered(emb);
                        emb.set_state(EmbedState::Embedding, None);
                    }
                    Err(Failure::Embedder(e)) => {
                        outage.failed(emb, &e, emb.max_backoff);
                        // An outage is not embedding time: the next run is timed afresh.
                        run = None;
                        continue 'sweep;
                    }
                    Err(Failure::Index(e)) => {
                        warn!("memory: cannot store vectors ({e}); trying again");
                        if wait(stop_rx, None, Some(Duration::from_secs(5))) {
                            break 'sweep;
                        }
                        continue 'sweep;
                    }
                }
            }
        }
        emb.worker.store(false, Ordering::SeqCst);
    }

    /// Loads the vectors of the configured model from the index database into memory.
    pub(super) fn load_vectors(&self, emb: &Embedding) -> Result<(), IndexError> {
        let mut loaded = VectorStore::default();
        let mut q = Vec::new();
        self.index
            .for_each_vector(emb.embedder.model(), |hash, bytes| {
                q.clear();
                q.extend(bytes.iter().map(|&b| b as i8));
                loaded.insert(hash, &q);
            })?;
        *emb.store.write().unwrap_or_else(|p| p.into_inner()) = loaded;
        Ok(())
    }

    /// Without a worker (the CLI), loads the stored vectors and counts what is pending, once,
    /// so a search can use the vectors a daemon embedded.
    pub(super) fn prepare_vectors(&self) {
        let Some(emb) = &self.embedding else {
            return;
        };
        if emb.worker.load(Ordering::SeqCst) {
            return;
        }
        let mut done = lock(&emb.loading);
        if *done {
            return;
        }
        *done = true;
        if let Err(e) = self.load_vectors(emb) {
            warn!("memory: cannot load stored vectors ({e})");
            return;
        }
        let changes = lock(&emb.progress).changes;
        match self.sweep(emb) {
            Ok((pending, _)) if pending.is_empty() => {
                emb.set_ready(changes);
            }
            Ok(_) => {}
            Err(e) => warn!("memory: cannot count chunks to embed ({e})"),
        }
    }

    /// Counts embedded, pending and refused chunks. Returns the text hashes still to embed
    /// (each once, in chunk order) and every hash a chunk has.
    fn sweep(&self, emb: &Embedding) -> Result<(Vec<u64>, HashSet<u64>), IndexError> {
        let hashes = self.index.chunk_hashes()?;
        let store = emb.store.read().unwrap_or_else(|p| p.into_inner());
        let refused = lock(&emb.refused);
        let (mut embedded, mut failed) = (0u64, 0u64);
        let mut seen = HashSet::with_capacity(hashes.len());
        let mut pending = Vec::new();
        let mut pending_chunks = 0u64;
        for &h in &hashes {
            if store.contains(h) {
                embedded += 1;
            } else if refused.contains(&h) {
                failed += 1;
            } else {
                pending_chunks += 1;
                if seen.insert(h) {
                    pending.push(h);
                }
            }
        }
        drop((store, refused));
        let mut p = lock(&emb.progress);
        p.embedded = embedded;
        p.pending = pending_chunks;
        p.failed = failed;
        p.swept = true;
        drop(p);
        seen.clear();
        seen.extend(hashes);
        Ok((pending, seen))
    }

    /// Drops vectors no chunk needs (texts gone, other models) from the database and from
    /// memory, once the current model is complete. Skipped while an index pass runs: a
    /// rename is a removal then an addition within one pass, and its vectors must survive
    /// it.
    fn prune(&self, emb: &Embedding, referenced: &HashSet<u64>, pruned: &mut bool) {
        let garbage = emb.store.read().unwrap_or_else(|p| p.into_inner()).len() > referenced.len();
        if *pruned && !garbage {
            return;
        }
        let _pass = match self.pass.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        match self.index.write(|w| w.prune_vectors(emb.embedder.model())) {
            Ok(n) if n > 0 => info!("memory: dropped {n} vectors no chunk needs any more"),
            Ok(_) => {}
            Err(e) => warn!("memory: cannot drop unused vectors ({e})"),
        }
        emb.store
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|h| referenced.contains(&h));
        *pruned = true;
    }

    /// Embeds and stores one batch. A refused batch is split to find the texts at fault;
    /// a single refused text is left out when the embedder still answers a probe.
    fn embed_texts(&self, emb: &Embedding, hashes: &[u64], run: &mut Run) -> Result<(), Failure> {
        let items = self.index.embed_texts(hashes).map_err(Failure::Index)?;
        if items.is_empty() {
            return Ok(());
        }
        self.embed_items(emb, &items, run)
    }

    fn embed_items(
        &self,
        emb: &Embedding,
        items: &[(u64, String)],
        run: &mut Run,
    ) -> Result<(), Failure> {
        let texts: Vec<String> = items.iter().map(|(_, t)| t.clone()).collect();
        let asked = Instant::now();
        let answer = emb.embedder.embed(&texts);
        run.waiting += asked.elapsed();
        match answer {
            Ok(vectors) => {
                run.texts += items.len();
                self.store_vectors(emb, items, &vectors)
            }
            Err(EmbedError::Refused(why)) if items.len() > 1 => {
                if let Err(e) = emb.embedder.embed(&["ok".to_string()]) {
                    return Err(Failure::Embedder(e));
                }
                let (a, b) = items.split_at(items.len() / 2);
                self.embed_items(emb, a, run)?;
                self.embed_items(emb, b, run).map_err(|e| match e {
                    Failure::Embedder(EmbedError::Refused(_)) => {
                        Failure::Embedder(EmbedError::Refused(why))
                    }
                    other => other,
                })
            }
            Err(EmbedError::Refused(why)) => match emb.embedder.embed(&["ok".to_string()]) {
                Ok(_) => {
                    warn!(
                        "memory: the embedder refused a chunk's text ({why}); that chunk is \
                         found by lexical search only"
                    );
                    lock(&emb.refused).insert(items[0].0);
                    let mut p = lock(&emb.progress);
                    p.pending = p.pending.saturating_sub(1);
                    p.failed += 1;
                    Ok(())
                }
                Err(_) => Err(Failure::Embedder(EmbedError::Refused(why))),
            },
            Err(e) => Err(Failure::Embedder(e)),
        }
    }

    fn store_vectors(
        &self,
        emb: &Embedding,
        items: &[(u64, String)],
        vectors: &[Vec<f32>],
    ) -> Result<(), Failure> {
        let model = emb.embedder.model();
        let quantised: Vec<(u64, f32, Vec<i8>)> = items
            .iter()
            .zip(vectors)
            .map(|((hash, _), v)| {
                let (scale, q) = quantise(v);
                (*hash, scale, q)
            })
            .collect();
        let dim = emb.store.read().unwrap_or_else(|p| p.into_inner()).dim();
        let new_dim = quantised.first().map(|(_, _, q)| q.len()).unwrap_or(dim);
        if dim != 0 && new_dim != dim {
            warn!(
                "memory: {model} now gives {new_dim}-dimension vectors instead of {dim}; \
                 embedding every chunk again"
            );
            self.index
                .write(|w| w.drop_vectors(model))
                .map_err(Failure::Index)?;
            emb.store.write().unwrap_or_else(|p| p.into_inner()).clear();
        }
        let rows: Vec<(u64, f32, &[i8])> = quantised
            .iter()
            .map(|(h, s, q)| (*h, *s, q.as_slice()))
            .collect();
        self.index
            .write(|w| w.put_vectors(model, &rows))
            .map_err(Failure::Index)?;
        let mut store = emb.store.write().unwrap_or_else(|p| p.into_inner());
        let mut counted: HashMap<u64, ()> = HashMap::new();
        for (h, _, q) in &quantised {
            store.insert(*h, q);
            counted.insert(*h, ());
        }
        drop(store);
        let mut p = lock(&emb.progress);
        let n = counted.len() as u64;
        p.embedded += n;
        p.pending = p.pending.saturating_sub(n);
        Ok(())
    }
}

/// One stretch of embedding, from the first batch to nothing pending, for the log line
/// that says how long it took and how much of that was the embedder's own time.
struct Run {
    started: Instant,
    texts: usize,
    waiting: Duration,
}

impl Run {
    fn start() -> Run {
        Run {
            started: Instant::now(),
            texts: 0,
            waiting: Duration::ZERO,
        }
    }
}

/// Why a batch could not be stored.
enum Failure {
    Embedder(EmbedError),
    Index(IndexError),
}

impl Outage {
    fn failed(&mut self, emb: &Embedding, e: &EmbedError, max: Duration) {
        self.backoff = if self.backoff.is_zero() {
            FIRST_BACKOFF
        } else {
            (self.backoff * 2).min(max)
        };
        let mut p = lock(&emb.progress);
        if p.state != EmbedState::Down {
            warn!(
                "memory: the embedder at {} cannot embed ({e}); search answers lexically \
                 meanwhile; retrying every {}s at most",
                emb.embedder.shown_url(),
                max.as_secs()
            );
        }
        p.state = EmbedState::Down;
        p.error = Some(e.to_string());
    }

    fn recovered(&mut self, emb: &Embedding) {
        self.backoff = Duration::ZERO;
        let mut p = lock(&emb.progress);
        if p.state == EmbedState::Down {
            info!(
                "memory: the embedder at {} answers again",
                emb.embedder.shown_url()
            );
            p.state = EmbedState::Embedding;
            p.error = None;
        }
    }
}

/// Waits for a stop (true), a wake on `wake` (false), or `timeout` (false). `None` waits
/// without a time limit.
fn wait(stop: &Receiver<()>, wake: Option<&Receiver<()>>, timeout: Option<Duration>) -> bool {
    let never = crossbeam_channel::never();
    let wake = wake.unwrap_or(&never);
    let timeout = timeout.unwrap_or(Duration::from_secs(24 * 3600));
    select! {
        recv(stop) -> _ => true,
        recv(wake) -> _ => false,
        default(timeout) => false,
    }
}
