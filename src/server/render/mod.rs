//! Thin adapters from a turn's [`TurnEvent`](crate::agent::events::TurnEvent)s to what a
//! client reads: SSE, OpenAI's `chat.completion.chunk`s, and the WebSocket's mailbox (its
//! connection is `server/ws.rs`).

pub mod sse;
pub mod v1;
pub mod ws;
