//! A request body that must arrive in full before a deadline: past it the next read fails and
//! a shared flag says so, so the server answers 408 instead of a generic read error. The timer
//! is armed on the first read, so requests whose body is never read cost nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::BoxError;

/// The error a late body ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimedOut(pub Duration);

pub struct DeadlineBody<B> {
    inner: B,
    timeout: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
    timed_out: Arc<AtomicBool>,
}

impl<B> DeadlineBody<B> {
    /// Wraps `inner`; `timed_out` turns true if the deadline passes while the body is read.
    pub fn new(inner: B, timeout: Duration, timed_out: Arc<AtomicBool>) -> DeadlineBody<B> {
        DeadlineBody { inner, timeout, deadline: None, timed_out }
    }
}

impl<B> HttpBody for DeadlineBody<B>
where
    B: HttpBody + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let timeout = this.timeout;
        let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + timeout)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.timed_out.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(Box::new(BodyTimedOut(timeout)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test]
    async fn a_body_that_stalls_fails_at_the_deadline_and_says_so() {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        sender.send(Ok(Frame::data(Bytes::from_static(b"part")))).await.unwrap();
        let stream = StreamBody::new(tokio_stream_from(receiver));
        let flag = Arc::new(AtomicBool::new(false));
        let body = DeadlineBody::new(stream, Duration::from_millis(50), flag.clone());
        let error = body.collect().await.err().expect("the stalled body fails");
        assert!(error.to_string().contains("did not arrive within 50ms"), "{error}");
        assert!(flag.load(Ordering::Relaxed));
        drop(sender);
    }

    #[tokio::test]
    async fn a_complete_body_passes_untouched() {
        let flag = Arc::new(AtomicBool::new(false));
        let body = DeadlineBody::new(http_body_util::Full::new(Bytes::from_static(b"whole")), Duration::from_millis(1), flag.clone());
        assert_eq!(body.collect().await.unwrap().to_bytes(), Bytes::from_static(b"whole"));
        assert!(!flag.load(Ordering::Relaxed));
    }

    fn tokio_stream_from<T>(mut receiver: tokio::sync::mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
    }
}
