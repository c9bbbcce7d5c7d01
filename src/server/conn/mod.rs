//! Everything that works around tiny_http 0.12 (the crate the user chose; its last release)
//! lives here, each piece with the defect it covers and the test that proves it:
//!
//! | tiny_http 0.12 defect | what we do | proven by |
//! |---|---|---|
//! | Guesses ambiguous body framing (`Content-Length` with `Transfer-Encoding`, several lengths, `Content-Length: abc` read as "no body" and served as the next request) | refuse with 400 before reading ([`body::check_framing`]) | `r_ambiguous_body_framing_is_refused`, `tests/robustness.rs` framing cases |
//! | Dropping a request with an unread body allocates the whole declared length: a terabyte `Content-Length` aborts the process | never drop such a request: answer 413 on the raw stream and abandon the connection ([`body::refuse_undroppable`]) | `r_absurd_content_length_is_refused_without_crashing` |
//! | A request with `Connection: upgrade` gets the raw connection as its body: reading "to the end" hangs | read exactly the declared length, refuse chunked ([`body::read_body`]) | `tests/robustness.rs` (`Connection: Upgrade` cases) |
//! | A body cut short by a closed connection reads as complete | compare with `Content-Length`, 400 ([`body::read_body`]) | `tests/robustness.rs` (short body) |
//! | Its pool can strand a connection from a burst until another closes | nudge the pool while requests arrive ([`nudge::Nudger`]) | `r_a_burst_of_keep_alive_connections_is_served_while_all_stay_open`, `scripts/repro-pool-stall.sh` |
//! | A streaming `Response` is buffered in 8 KiB chunks: SSE would arrive at the end | write head and chunked framing by hand, one flush per event (`server::render::sse`) | `tests/stream.rs` (events arrive before the turn ends) |
//! | Never sets `TCP_NODELAY`; head and body go out in separate writes, so keep-alive answers wait 40 ms for a delayed ACK | set it on the listener, accepted sockets inherit it (`daemon::bind`) | `scripts/bench-http.sh` |
//! | No read, header or idle timeouts: a client that never finishes its head, or an idle keep-alive client, holds a thread for good | a watchdog shuts such sockets down through a duplicate of their descriptor ([`deadlines`]); `SO_SNDTIMEO` on the listener bounds writes to a client that stopped reading | `tests/deadlines.rs` |
//! | An `HTTP/2.0` request line deadlocks its connection's thread (a 505 written through a writer that waits for the request's own) | the socket is still closed at `server.header_timeout`, and the thread counted as stuck ([`deadlines`]) | `tests/deadlines.rs` |
//! | No header size limit | 431 after the fact (`server::screen`) | `header_caps`, `tests/robustness.rs` header cases |

pub mod body;
pub mod deadlines;
pub mod nudge;
