//! A minimal HTTP/1.0 client for kaos's admin API: one request a connection, JSON bodies, and
//! the answer read to the end of the connection. Enough for tests and the load tool; no
//! chunked encoding, redirects or TLS.

use std::io::{Error, ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long connecting, sending or a read with no new bytes may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `method path` with `body` (as `application/json`) to `addr` (`host:port`) and returns
/// the status code and the body of the answer. The body is read as UTF-8, invalid bytes
/// replaced. An answer without a status line is an [`ErrorKind::InvalidData`] error.
pub fn request(addr: &str, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut stream = connect(addr)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .lines()
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| Error::new(ErrorKind::InvalidData, "the answer has no HTTP status line"))?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// Connects to the first of `addr`'s addresses that answers within [`TIMEOUT`].
fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let mut last = Error::new(ErrorKind::InvalidInput, "the address resolves to nothing");
    for address in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&address, TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// A server that reads one request, answers `answer` and hands back what it read.
    fn serve_once(answer: &'static [u8]) -> (String, thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut seen = Vec::new();
            let mut chunk = [0u8; 1024];
            while !String::from_utf8_lossy(&seen).contains("\r\n\r\n{") {
                let n = stream.read(&mut chunk).unwrap();
                assert!(n > 0, "the client sent its request");
                seen.extend_from_slice(&chunk[..n]);
            }
            stream.write_all(answer).unwrap();
            String::from_utf8(seen).unwrap()
        });
        (addr, server)
    }

    #[test]
    fn requests_send_json_and_answers_give_status_and_body() {
        let (addr, server) =
            serve_once(b"HTTP/1.0 201 Created\r\nContent-Type: text/plain\r\n\r\nmade\r\nit");
        let answer = request(&addr, "POST", "/tenant/1-1", "{}").unwrap();
        assert_eq!(answer, (201, "made\r\nit".to_owned()));
        let sent = server.join().unwrap();
        assert_eq!(
            sent,
            format!(
                "POST /tenant/1-1 HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
            )
        );
    }

    #[test]
    fn answers_without_a_status_line_and_closed_ports_are_errors() {
        let (addr, server) = serve_once(b"");
        let error = request(&addr, "PUT", "/x", "{}").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidData);
        server.join().unwrap();
        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        assert!(request(&closed, "GET", "/", "").is_err());
    }
}
