//! Thin adapters from a turn's [`TurnEvent`](crate::agent::events::TurnEvent)s to what a
//! client reads: SSE here; the WebSocket's in `server/ws.rs`.

pub mod sse;
