//! A canned HTTP server on 127.0.0.1: every request gets the answer `respond` gives for its
//! request line (status line text, JSON body). For tests that need one fixed exchange answer
//! without the whole fake server; pulled in with `#[path = "support/canned.rs"] mod canned;`.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpListener;

/// Starts the server; returns its port.
pub fn serve(respond: impl Fn(&str) -> (&'static str, String) + Send + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let mut request = Vec::new();
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(buf.get(..n).unwrap_or_default()),
                }
            }
            let (status, body) = respond(&String::from_utf8_lossy(&request));
            let _ = s.write_all(
                format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    port
}
