//! Embeddings and hybrid search over real HTTP against the real daemon, with a fake
//! embedding server (tests/support/fake_embedder.rs) whose vectors make paraphrases
//! close: hybrid finds what lexical search cannot, vectors are stored by text and model
//! (restarts and renames embed nothing again, a new model embeds everything again), and an
//! embedder that is down or failing leaves search lexical, never broken.

mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use support::fake_embedder::{FakeEmbedder, vector};
use support::{Daemon, Home, eventually};

const FAST_SCAN: &str = "[memory]\nscan_interval = \"200ms\"\n";
const PATIENCE: Duration = Duration::from_secs(30);

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// One search that must answer 200: (mode that ran, files of the results in order).
fn search(d: &Daemon, q: &str, mode: Option<&str>) -> (String, Vec<String>) {
    let mut path = format!(
        "/api/memory/search?q={}",
        utf8_percent_encode(q, NON_ALPHANUMERIC)
    );
    if let Some(m) = mode {
        path.push_str(&format!("&mode={m}"));
    }
    let (status, body) = d.get(&path);
    assert_eq!(status, 200, "{path}: {body}");
    let files = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["file"].as_str().unwrap().to_string())
        .collect();
    (body["mode"].as_str().unwrap_or("<none>").to_string(), files)
}

/// Waits until every chunk has its vector, and returns the `embeddings` of the stats.
fn wait_embedded(d: &Daemon) -> Value {
    eventually(PATIENCE, "every chunk embedded", || {
        let (_, s) = d.get("/api/memory/stats");
        let e = &s["embeddings"];
        (s["index"]["state"] == "ready"
            && e["state"] == "ready"
            && e["pending"] == 0
            && e["embedded"].as_u64() == s["index"]["chunks"].as_u64())
        .then(|| e.clone())
    })
}

/// Waits until lexical search finds `q` in `file` (the scan indexed it).
fn wait_indexed(d: &Daemon, q: &str, file: &str) {
    eventually(PATIENCE, &format!("{q:?} indexed in {file}"), || {
        search(d, q, Some("lexical"))
            .1
            .contains(&file.to_string())
            .then_some(())
    });
}

fn start(fake: &FakeEmbedder, provider: &str, model: &str) -> Daemon {
    let home = Home::new("emb");
    home.write_config(&format!("{FAST_SCAN}{}", fake.config_toml(provider, model)));
    Daemon::start_in(home)
}

const CAR: &str = "# Car\n\n- The Corolla needs new tyres before winter\n";
const LUNCH: &str = "- 12:30 Lunch with Marta at the noodle bar\n- 18:00 Ran 5 km by the river\n";

#[test]
fn hybrid_finds_a_paraphrase_that_lexical_misses() {
    let fake = FakeEmbedder::start();
    let d = start(&fake, "openai", "fake-mini");
    let ws = d.home.workspace();
    write(&ws, "knowledge/car.md", CAR);
    write(&ws, "memory/2026-02-14.md", LUNCH);
    wait_indexed(&d, "tyres", "knowledge/car.md");
    wait_indexed(&d, "noodle", "memory/2026-02-14.md");
    let e = wait_embedded(&d);
    assert_eq!(e["provider"], "openai");
    assert_eq!(e["model"], "fake-mini");

    // No word of the question is in the fact: lexical search cannot find it.
    let question = "repairs for my automobile";
    let (mode, files) = search(&d, question, Some("lexical"));
    assert_eq!(mode, "lexical");
    assert!(
        !files.contains(&"knowledge/car.md".to_string()),
        "{files:?}"
    );
    let (mode, files) = search(&d, question, None);
    assert_eq!(mode, "hybrid", "the default with embeddings configured");
    assert_eq!(files.first().map(String::as_str), Some("knowledge/car.md"));
    let (mode, files) = search(&d, question, Some("vector"));
    assert_eq!(mode, "vector");
    assert_eq!(files.first().map(String::as_str), Some("knowledge/car.md"));
    // Lexical hits still rank in hybrid.
    let (_, files) = search(&d, "noodle bar", Some("hybrid"));
    assert_eq!(
        files.first().map(String::as_str),
        Some("memory/2026-02-14.md")
    );

    // The status says the same as the stats.
    let (_, status) = d.get("/api/status");
    for key in ["provider", "model", "state", "embedded", "pending"] {
        assert_eq!(status["embeddings"][key], e[key], "{key}: {status}");
    }
    // Chunks go to the embedder with their headings.
    assert!(
        fake.texts("fake-mini")
            .iter()
            .any(|t| t == "Car\n- The Corolla needs new tyres before winter"),
        "{:?}",
        fake.texts("fake-mini")
    );
}

#[test]
fn unchanged_text_is_never_embedded_again_across_restarts_and_renames() {
    let fake = FakeEmbedder::start();
    let d = start(&fake, "openai", "fake-mini");
    let ws = d.home.workspace();
    write(&ws, "knowledge/car.md", CAR);
    write(&ws, "memory/2026-02-14.md", LUNCH);
    wait_indexed(&d, "tyres", "knowledge/car.md");
    let first = wait_embedded(&d);
    let embedded = fake.texts("fake-mini");
    assert!(!embedded.is_empty());

    // A restart loads the stored vectors.
    let d = Daemon::start_in(d.into_home());
    assert_eq!(wait_embedded(&d)["embedded"], first["embedded"]);
    // A renamed file keeps its vectors; a new file is embedded (which proves the worker
    // has looked at the renamed file's chunks by then).
    let ws = d.home.workspace();
    fs::rename(ws.join("knowledge/car.md"), ws.join("knowledge/vehicle.md")).unwrap();
    wait_indexed(&d, "tyres", "knowledge/vehicle.md");
    write(&ws, "knowledge/zoo.md", "- The okapi lives in the forest\n");
    fake.wait_for_text("fake-mini", "okapi", PATIENCE);
    wait_embedded(&d);
    let mut texts = fake.texts("fake-mini");
    assert_eq!(
        texts.iter().filter(|t| t.contains("okapi")).count(),
        1,
        "{texts:?}"
    );
    texts.retain(|t| !t.contains("okapi"));
    assert_eq!(texts, embedded, "nothing else was sent again");
    let (mode, files) = search(&d, "repairs for my automobile", None);
    assert_eq!(
        (mode.as_str(), files.first().map(String::as_str)),
        ("hybrid", Some("knowledge/vehicle.md"))
    );
}

#[test]
fn a_new_model_embeds_everything_again_in_the_background() {
    let fake = FakeEmbedder::start();
    let d = start(&fake, "ollama", "mini-a");
    let ws = d.home.workspace();
    write(&ws, "knowledge/car.md", CAR);
    write(&ws, "memory/2026-02-14.md", LUNCH);
    wait_indexed(&d, "tyres", "knowledge/car.md");
    wait_embedded(&d);
    assert!(fake.requests().iter().all(|r| r.path == "/api/embed"));
    let mut a = fake.texts("mini-a");
    let home = d.into_home();
    home.write_config(&format!(
        "{FAST_SCAN}{}",
        fake.config_toml("ollama", "mini-b")
    ));
    let d = Daemon::start_in(home);
    let e = wait_embedded(&d);
    assert_eq!(e["model"], "mini-b");
    let mut b = fake.texts("mini-b");
    a.sort();
    b.retain(|t| t != "ok");
    b.sort();
    assert_eq!(a, b, "every chunk again, once, with the new model");
    assert_eq!(
        fake.texts("mini-a").len(),
        a.len(),
        "the old model is not asked again"
    );
    let (mode, files) = search(&d, "repairs for my automobile", None);
    assert_eq!(
        (mode.as_str(), files.first().map(String::as_str)),
        ("hybrid", Some("knowledge/car.md"))
    );
}

#[test]
fn an_unreachable_embedder_leaves_search_lexical() {
    let home = Home::new("embdown");
    let nothing = support::fake_provider::refused_url();
    home.write_config(&format!(
        "{FAST_SCAN}[memory.embeddings]\nprovider = \"openai\"\nmodel = \"m\"\n\
         base_url = \"{nothing}/v1\"\nmax_backoff = \"1s\"\n"
    ));
    let d = Daemon::start_in(home);
    write(&d.home.workspace(), "knowledge/car.md", CAR);
    wait_indexed(&d, "tyres", "knowledge/car.md");
    for mode in [None, Some("hybrid"), Some("vector"), Some("lexical")] {
        let (ran, files) = search(&d, "tyres", mode);
        assert_eq!(ran, "lexical", "{mode:?}");
        assert_eq!(files, ["knowledge/car.md"], "{mode:?}");
    }
    let e = eventually(PATIENCE, "embeddings reported down", || {
        let (_, s) = d.get("/api/memory/stats");
        (s["embeddings"]["state"] == "down").then(|| s["embeddings"].clone())
    });
    assert!(
        e["error"].as_str().unwrap().contains("connection refused"),
        "{e}"
    );
    assert!(e["pending"].as_u64().unwrap() > 0);
}

#[test]
fn a_failing_embedder_is_retried_logged_once_and_recovered_from() {
    let fake = FakeEmbedder::start();
    let d = start(&fake, "openai", "fake-mini");
    let ws = d.home.workspace();
    write(&ws, "knowledge/car.md", CAR);
    wait_indexed(&d, "tyres", "knowledge/car.md");
    wait_embedded(&d);
    // It fails while searches come in: they answer lexically.
    fake.set_failing(true);
    let (mode, files) = search(&d, "tyres", Some("hybrid"));
    assert_eq!((mode.as_str(), files.len()), ("lexical", 1));
    write(&ws, "memory/2026-02-14.md", LUNCH);
    wait_indexed(&d, "noodle", "memory/2026-02-14.md");
    let seen = fake.requests().len();
    eventually(PATIENCE, "retries with backoff", || {
        (fake.requests().len() >= seen + 3).then_some(())
    });
    let (mode, _) = search(&d, "repairs for my automobile", None);
    assert_eq!(mode, "lexical");
    let log = d.stderr();
    let warnings = log
        .lines()
        .filter(|l| l.contains("cannot embed") || l.contains("did not answer a search"))
        .count();
    assert_eq!(warnings, 1, "one warning per outage:\n{log}");
    fake.set_failing(false);
    wait_embedded(&d);
    d.wait_log("answers again");
    let (mode, files) = search(&d, "repairs for my automobile", None);
    assert_eq!(
        (mode.as_str(), files.first().map(String::as_str)),
        ("hybrid", Some("knowledge/car.md"))
    );
}

#[test]
fn r_shutdown_does_not_wait_for_a_hung_embedder() {
    let fake = FakeEmbedder::start();
    fake.set_delay(Duration::from_secs(600));
    let mut d = start(&fake, "openai", "fake-mini");
    // The starter files' chunks are the first batch; the fake holds on to it.
    fake.wait_for_text("fake-mini", "Memory", PATIENCE);
    assert!(d.stop().success(), "{}", d.stderr());
}

#[test]
fn the_fake_makes_paraphrases_close() {
    let cos = |a: &[f32], b: &[f32]| -> f32 { a.iter().zip(b).map(|(x, y)| x * y).sum() };
    let fact = vector("The Corolla needs new tyres before winter");
    assert!(
        cos(&fact, &vector("repairs for my automobile"))
            > cos(&fact, &vector("Lunch with Marta at the noodle bar")) + 0.2
    );
}
