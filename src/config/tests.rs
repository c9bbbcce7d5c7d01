//! Config parsing, validation, env overrides and redaction.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    let c = Config::parse(Path::new("t.toml"), text)?;
    c.validate()?;
    Ok(c)
}

#[test]
fn example_file_is_exactly_the_defaults() {
    let c = parse(EXAMPLE).expect("config.example.toml parses");
    assert_eq!(c, Config::default());
}

#[test]
fn unknown_key_is_named() {
    let e = parse("[server]\nprot = 1\n").unwrap_err().to_string();
    assert!(e.contains("prot"), "{e}");
    let e = parse("[nonsense]\nx = 1\n").unwrap_err().to_string();
    assert!(e.contains("nonsense"), "{e}");
}

#[test]
fn bad_values_name_key_and_value() {
    let e = parse("[server]\nbind = \"localhost:80\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("server.bind") && e.contains("localhost:80"),
        "{e}"
    );
    let e = parse("[server]\nbind = \"0.0.0.0\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("auth_token"), "{e}");
    assert!(parse("[server]\nbind = \"0.0.0.0\"\nauth_token = \"x\"\n").is_ok());
    let e = parse("[agent]\ndefault_model = \"gpt4\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("agent.default_model"), "{e}");
    let e = parse("[heartbeat]\ninterval = \"often\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("often"), "{e}");
    let e = parse("[heartbeat]\ntimezone = \"Mars/Olympus\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("heartbeat.timezone"), "{e}");
    let e = parse("[heartbeat]\ninterval = \"10ms\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("heartbeat.interval"), "{e}");
    assert!(parse("[heartbeat]\ninterval = \"0\"\n").is_ok());
    assert!(parse("[heartbeat]\ninterval = \"1s\"\n").is_ok());
    let e = parse("[heartbeat]\nactive_hours = { start = \"8:00\", end = \"22:00\" }\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("active_hours.start"), "{e}");
    let e = parse("[server]\nport = 70000\n").unwrap_err().to_string();
    assert!(e.contains("70000"), "{e}");
    assert!(parse("[server]\nport = 0\n").is_ok(), "0 picks a free port");
}

#[test]
fn durations() {
    assert_eq!("90s".parse::<Span>().unwrap(), Span::secs(90));
    assert_eq!("2h30m".parse::<Span>().unwrap(), Span::secs(9000));
    assert_eq!("0".parse::<Span>().unwrap(), Span::secs(0));
    assert_eq!("250ms".parse::<Span>().unwrap(), Span::millis(250));
    assert!("-5s".parse::<Span>().is_err());
    assert!("soon".parse::<Span>().is_err());
    assert_eq!(String::from(Span::secs(9000)), "2h30m");
    assert_eq!(String::from(Span::millis(1500)), "1500ms");
}

#[test]
fn env_overrides_and_keys() {
    let mut c = Config::default();
    let env = |k: &str| match k {
        "LOCALGPT_PORT" => Some("4000".to_string()),
        "OPENAI_API_KEY" => Some("sk-env".to_string()),
        "LOCALGPT_WORKSPACE" => Some("/tmp/ws".to_string()),
        _ => None,
    };
    c.apply_env(env).unwrap();
    assert_eq!(c.server.port, 4000);
    assert_eq!(c.providers.openai.api_key, "sk-env");
    assert_eq!(c.memory.workspace, "/tmp/ws");
    let e = c
        .apply_env(|k| (k == "LOCALGPT_PORT").then(|| "x".into()))
        .unwrap_err();
    assert!(e.to_string().contains("LOCALGPT_PORT"));
}

#[test]
fn redaction_hides_secrets() {
    let mut c = Config::default();
    c.server.auth_token = "hunter2".into();
    c.providers.anthropic.api_key = "sk-ant-secret".into();
    let shown = c.redacted_toml();
    assert!(!shown.contains("hunter2") && !shown.contains("sk-ant-secret"));
    assert!(shown.contains("<redacted>"));
}

#[test]
fn hhmm() {
    assert_eq!(parse_hhmm("08:30"), Some(510));
    assert_eq!(parse_hhmm("23:59"), Some(1439));
    assert_eq!(parse_hhmm("24:00"), None);
    assert_eq!(parse_hhmm("8:30"), None);
}

#[test]
fn reach_settings() {
    let mut c = Config::default();
    c.apply_env(|k| (k == "TELEGRAM_BOT_TOKEN").then(|| "123:abc-DEF\n".to_string()))
        .unwrap();
    assert_eq!(c.telegram.bot_token, "123:abc-DEF");
    assert!(c.validate().is_ok());
    c.telegram.bot_token = "123:has space".into();
    let e = c.validate().unwrap_err().to_string();
    assert!(
        e.contains("telegram.bot_token") && !e.contains("has space"),
        "{e}"
    );
    let e = parse("[telegram]\npoll_timeout = \"0\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("telegram.poll_timeout"), "{e}");
    let e = parse("[notify]\nwebhooks = [\"ftp://x/secret-topic\"]\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("notify.webhooks") && !e.contains("secret-topic"),
        "{e}"
    );
    let e = parse("[notify]\nwebhooks = [\"http://ha:8123/api/webhook/a b\"]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("notify.webhooks"), "{e}");
    assert!(parse("[notify]\nwebhooks = [\"https://ntfy.sh/t?tpl=1&m={{.text}}\"]\n").is_ok());
    let c = parse("[telegram]\nallowed_users = [42, 7]\n").unwrap();
    assert_eq!(c.telegram.alerts_chat(), Some(42));
    assert!(!c.telegram.enabled());
}

#[test]
fn redaction_hides_the_bot_token_and_webhook_paths() {
    let mut c = Config::default();
    c.telegram.bot_token = "123456:AAE-secret".into();
    c.notify.webhooks = vec![
        "https://ntfy.sh/my-secret-topic?tpl=1".into(),
        "http://user:pw@ha.local:8123/api/webhook/abc".into(),
        "http://example.com".into(),
    ];
    let shown = c.redacted_toml();
    for secret in ["AAE-secret", "my-secret-topic", "pw@", "webhook/abc"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains("https://ntfy.sh/<redacted>"), "{shown}");
    assert!(shown.contains("http://ha.local:8123/<redacted>"), "{shown}");
    assert!(shown.contains("\"http://example.com/\""), "{shown}");
}

#[test]
fn mcp_servers() {
    let c = parse(
        "[mcp]\ncall_timeout = \"5s\"\n[mcp.servers.time]\ncommand = [\"mcp-server-time\", \"--local-timezone\", \"UTC\"]\nenv = { TOKEN = \"s3cret\" }\n",
    )
    .unwrap();
    let time = &c.mcp.servers["time"];
    assert_eq!(time.command[0], "mcp-server-time");
    assert_eq!(time.cwd, "");
    assert_eq!(c.mcp.call_timeout, Span::secs(5));
    let shown = c.redacted_toml();
    assert!(
        !shown.contains("s3cret") && shown.contains("<redacted>"),
        "{shown}"
    );
    for (bad, key) in [
        (
            "[mcp.servers.\"a b\"]\ncommand = [\"x\"]\n",
            "mcp.servers.a b",
        ),
        ("[mcp.servers.x]\ncommand = []\n", "mcp.servers.x.command"),
        (
            "[mcp.servers.x]\ncommand = [\" \"]\n",
            "mcp.servers.x.command",
        ),
        (
            "[mcp.servers.x]\ncommand = [\"y\"]\nenv = { \"A=B\" = \"1\" }\n",
            "mcp.servers.x.env",
        ),
        ("[mcp]\ncall_timeout = \"0\"\n", "mcp.call_timeout"),
    ] {
        let e = parse(bad).unwrap_err().to_string();
        assert!(e.contains(key), "{key} in {e}");
    }
    let e = parse("[mcp.servers.x]\nargs = [\"y\"]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("args") || e.contains("command"), "{e}");
}
