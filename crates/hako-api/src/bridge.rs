//! Bridges between async HTTP bodies and the blocking image code (which reads and writes
//! tar streams with std::io on a blocking thread).

use std::io::{self, Write};

use axum::body::{Body, Bytes};
use futures_util::TryStreamExt;
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

/// A blocking reader of a request body. Use only inside `spawn_blocking`.
pub fn body_reader(body: Body) -> impl io::Read + Send + 'static {
    let stream = body.into_data_stream().map_err(io::Error::other);
    SyncIoBridge::new(StreamReader::new(stream))
}

/// A blocking writer whose bytes become a streaming response body.
pub struct BodyWriter {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
}

const FLUSH_AT: usize = 256 << 10;

pub fn body_channel() -> (BodyWriter, Body) {
    let (w, rx) = writer_channel();
    (w, Body::from_stream(receiver_stream(rx)))
}

/// An `application/x-tar` response whose body `write` produces on a blocking thread; a
/// failure midway breaks the transfer rather than ending it as if complete.
pub fn tar_response<E: std::fmt::Display>(
    write: impl FnOnce(&mut BodyWriter) -> Result<(), E> + Send + 'static,
) -> axum::response::Response {
    let (mut w, body) = body_channel();
    tokio::task::spawn_blocking(move || match write(&mut w) {
        Ok(()) => {
            let _ = w.flush();
        }
        Err(e) => w.fail(e),
    });
    let mut r = axum::response::Response::new(body);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-tar"),
    );
    r
}

/// A blocking writer and the receiving end of its chunks (a client's request body).
pub fn writer_channel() -> (BodyWriter, mpsc::Receiver<Result<Bytes, io::Error>>) {
    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(16);
    (
        BodyWriter {
            tx,
            buf: Vec::with_capacity(FLUSH_AT),
        },
        rx,
    )
}

/// A channel's receiving end as a body stream.
pub fn receiver_stream(
    mut rx: mpsc::Receiver<Result<Bytes, io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

impl BodyWriter {
    /// Ends the body with an error, so the client sees a broken transfer instead of a
    /// truncated success.
    pub fn fail(self, e: impl std::fmt::Display) {
        let _ = self.tx.blocking_send(Err(io::Error::other(e.to_string())));
    }
}

impl Write for BodyWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(FLUSH_AT)));
            self.tx
                .blocking_send(Ok(chunk))
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))?;
        }
        Ok(())
    }
}

impl Drop for BodyWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}
