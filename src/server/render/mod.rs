//! Thin adapters from a turn's [`TurnEvent`](crate::agent::events::TurnEvent)s to what a
//! client reads: SSE, and the WebSocket's mailbox (its connection is `server/ws.rs`).

pub mod sse;
pub mod ws;
