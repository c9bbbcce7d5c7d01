//! Thin adapters from a turn's [`TurnEvent`](crate::agent::events::TurnEvent)s to what a
//! client reads: SSE and OpenAI's `chat.completion.chunk`s here; the WebSocket's in
//! `server/ws.rs`.

pub mod sse;
pub mod v1;
