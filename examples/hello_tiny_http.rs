//! The reference for `scripts/bench-http.sh`: a bare `tiny_http` server answering every
//! request with `{"status":"ok"}` from a single thread, the library's own minimal loop.
//! Usage: `hello_tiny_http PORT`.

fn main() {
    let port = std::env::args().nth(1).unwrap_or_else(|| "31399".into());
    let server = match tiny_http::Server::http(format!("127.0.0.1:{port}")) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot listen on port {port}: {e}");
            std::process::exit(1);
        }
    };
    for request in server.incoming_requests() {
        let mut resp = tiny_http::Response::from_string("{\"status\":\"ok\"}");
        if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", "application/json") {
            resp.add_header(h);
        }
        let _ = request.respond(resp);
    }
}
