//! The names MCP tools are offered under: `mcp_<server>_<tool>`, in the characters every
//! provider accepts (`A-Z a-z 0-9 _ -`), at most 64 of them (OpenAI's limit, and
//! Anthropic's). MCP allows tool names of 128 characters with dots in them, so some names
//! are changed, always the same way for the same tool.

/// Longest tool name the providers accept.
pub const MAX_TOOL_NAME: usize = 64;

/// The prefix of every tool of `server`.
pub fn prefix(server: &str) -> String {
    format!("mcp_{server}_")
}

/// `mcp_<server>_<tool>` with every other character made `_`; a name over
/// [`MAX_TOOL_NAME`] keeps its start and ends in a hash of the tool's own name.
pub fn exposed(server: &str, tool: &str) -> String {
    let name: String = format!("{}{tool}", prefix(server))
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.len() <= MAX_TOOL_NAME {
        return name;
    }
    with_hash(&name, tool)
}

/// `name` cut to leave room for `_` and 8 hex digits of a hash of `key`.
fn with_hash(name: &str, key: &str) -> String {
    let hash = xxhash_rust::xxh3::xxh3_64(key.as_bytes()) as u32;
    // `name` is ASCII here: every byte is a char boundary.
    let keep = name.len().min(MAX_TOOL_NAME - 9);
    format!("{}_{hash:08x}", &name[..keep])
}

/// Exposed names for one server's tools, in the server's order. A name that two tools
/// would share (`a.b` and `a_b` both give `..._a_b`) is kept by the first and made unique
/// with a hash of the tool's name for the others.
pub fn assign(
    server: &str,
    tools: &[&str],
    taken: &mut std::collections::HashSet<String>,
) -> Vec<String> {
    tools
        .iter()
        .map(|tool| {
            let mut name = exposed(server, tool);
            if !taken.insert(name.clone()) {
                name = with_hash(&name, &format!("{server}/{tool}"));
                taken.insert(name.clone());
            }
            name
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_sanitised_and_short() {
        assert_eq!(
            exposed("time", "get_current_time"),
            "mcp_time_get_current_time"
        );
        assert_eq!(exposed("git", "repo.log v2"), "mcp_git_repo_log_v2");
        let long = "x".repeat(120);
        let a = exposed("srv", &long);
        assert_eq!(a.len(), MAX_TOOL_NAME);
        assert!(a.starts_with("mcp_srv_xxx"));
        assert_eq!(a, exposed("srv", &long), "deterministic");
        let other = format!("{long}y");
        assert_ne!(a, exposed("srv", &other), "the hash tells long names apart");
    }

    #[test]
    fn clashing_names_are_made_unique() {
        let mut taken = HashSet::new();
        let got = assign("s", &["a.b", "a_b", "c"], &mut taken);
        assert_eq!(got[0], "mcp_s_a_b");
        assert!(got[1].starts_with("mcp_s_a_b_") && got[1].len() == "mcp_s_a_b_".len() + 8);
        assert_eq!(got[2], "mcp_s_c");
        let again = assign("s", &["a.b", "a_b", "c"], &mut HashSet::new());
        assert_eq!(got, again);
    }
}
