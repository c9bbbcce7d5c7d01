//! What the bot says, and long answers cut to Telegram's message size.

/// Telegram's limit on a message's text. It counts UTF-16 code units (an emoji outside the
/// basic plane counts twice), so that is what [`split`] counts.
pub const MAX_MESSAGE: usize = 4096;

/// The answer to `/help` and `/start`.
pub const HELP: &str = "I am your localgpt assistant. Write to me as you would to a person; \
I answer with my memory and my tools.\n\
\n\
/new - start a new conversation (what I keep in memory stays)\n\
/help - this text\n\
\n\
Tools that change things (running commands, writing files) ask you first, with Approve \
and Deny buttons. Heartbeat alerts arrive here too.";

/// Telegram message length of `s`.
fn units(s: &str) -> usize {
    s.encode_utf16().count()
}

/// Cuts `text` into messages of at most `max` UTF-16 units: at line breaks where it can
/// (the break itself is dropped), and a single longer line hard, between characters.
/// Pieces that would be only whitespace are left out (Telegram refuses them).
pub fn split(text: &str, max: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut current_units = 0;
    let mut started = false;
    for line in text.split('\n') {
        let line_units = units(line);
        let joined = if started {
            current_units + 1 + line_units
        } else {
            line_units
        };
        if joined <= max {
            if started {
                current.push('\n');
            }
            current.push_str(line);
            current_units = joined;
            started = true;
            continue;
        }
        if started {
            pieces.push(std::mem::take(&mut current));
        }
        // The line alone: whole if it fits, else cut hard into full pieces.
        current_units = 0;
        for c in line.chars() {
            let n = c.len_utf16();
            if current_units + n > max {
                pieces.push(std::mem::take(&mut current));
                current_units = 0;
            }
            current.push(c);
            current_units += n;
        }
        started = true;
    }
    if started {
        pieces.push(current);
    }
    pieces.retain(|p| !p.trim().is_empty());
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_message() {
        assert_eq!(split("hello\nworld", 4096), vec!["hello\nworld"]);
        assert!(split("  \n ", 4096).is_empty());
    }

    #[test]
    fn long_text_is_cut_at_line_breaks() {
        let line = "x".repeat(1000);
        let text = [line.as_str(); 10].join("\n");
        let pieces = split(&text, 4096);
        assert_eq!(pieces.len(), 3);
        for p in &pieces {
            assert!(units(p) <= 4096);
            assert!(p.split('\n').all(|l| l == line), "lines stay whole");
        }
        assert_eq!(pieces.join("\n"), text);
    }

    #[test]
    fn a_longer_line_is_cut_hard_and_nothing_is_lost() {
        let text = format!("start\n{}\nend", "é".repeat(9000));
        let pieces = split(&text, 4096);
        assert!(
            pieces.iter().all(|p| units(p) <= 4096),
            "{:?}",
            pieces.iter().map(|p| units(p)).collect::<Vec<_>>()
        );
        assert_eq!(pieces.concat().replace('\n', ""), text.replace('\n', ""));
        assert_eq!(pieces[0], "start");
    }

    #[test]
    fn characters_outside_the_basic_plane_count_twice() {
        let text = "😀".repeat(3000); // 6000 units
        let pieces = split(&text, 4096);
        assert_eq!(pieces.len(), 2);
        assert_eq!(units(&pieces[0]), 4096);
        assert_eq!(pieces.concat(), text);
    }
}
