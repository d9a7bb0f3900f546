//! One stream's side: the `Outbox` its poller fills (bounded: a client that does not read is
//! ended, not buffered for), and the response body that empties it, with the heartbeat, the
//! stream's time limit and its `event: end`.

use std::collections::VecDeque;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

use super::event::{EndReason, HEARTBEAT, RETRY};

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The stream had ended already.
    Ended,
    /// The client is `tail.max_lag_events` behind: the stream ends now (`lagging`).
    Lagging,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Bytes>,
    end: Option<EndReason>,
}

/// Called once, when a stream ends (or its client goes away first), with why: the stream
/// stops counting then, even while a client that does not read keeps its connection.
pub type OnClose = Box<dyn FnOnce(EndReason) + Send>;

/// The frames a stream's poller sent that its client has not read yet.
pub struct Outbox {
    queue: Mutex<Queue>,
    waker: AtomicWaker,
    max_lag: usize,
    on_close: Mutex<Option<OnClose>>,
}

impl Outbox {
    pub fn new(max_lag: usize) -> Arc<Self> {
        Arc::new(Self {
            queue: Mutex::default(),
            waker: AtomicWaker::new(),
            max_lag,
            on_close: Mutex::new(None),
        })
    }

    /// What to do when the stream ends.
    pub fn on_close(&self, on_close: OnClose) {
        *self.on_close.lock().unwrap_or_else(|e| e.into_inner()) = Some(on_close);
    }

    fn closed(&self, reason: EndReason) {
        let on_close = self
            .on_close
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(on_close) = on_close {
            on_close(reason);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `frame`; a client `max_lag` frames behind is ended instead, and what it had
    /// not read is dropped at once (it resumes with `Last-Event-ID`).
    pub fn push(&self, frame: Bytes) -> Result<(), Refused> {
        let mut queue = self.lock();
        if queue.end.is_some() {
            return Err(Refused::Ended);
        }
        if queue.frames.len() >= self.max_lag {
            queue.frames = VecDeque::new();
            queue.end = Some(EndReason::Lagging);
            drop(queue);
            self.waker.wake();
            self.closed(EndReason::Lagging);
            return Err(Refused::Lagging);
        }
        queue.frames.push_back(frame);
        drop(queue);
        self.waker.wake();
        Ok(())
    }

    /// Ends the stream with `reason` (the first reason given wins). Frames queued before
    /// are still sent on shutdown; on any other end they are dropped.
    pub fn end(&self, reason: EndReason) {
        let mut queue = self.lock();
        let first = queue.end.is_none();
        if first {
            queue.end = Some(reason);
            if reason != EndReason::Shutdown {
                queue.frames = VecDeque::new();
            }
        }
        drop(queue);
        self.waker.wake();
        if first {
            self.closed(reason);
        }
    }

    #[cfg(test)]
    fn ended(&self) -> Option<EndReason> {
        self.lock().end
    }
}

/// The response body of a stream.
pub struct Body {
    outbox: Arc<Outbox>,
    heartbeat_every: Duration,
    heartbeat: Pin<Box<Sleep>>,
    until: Pin<Box<Sleep>>,
    opened: bool,
    done: bool,
}

impl Body {
    pub fn new(outbox: Arc<Outbox>, heartbeat_every: Duration, max_duration: Duration) -> Self {
        let now = Instant::now();
        Self {
            outbox,
            heartbeat_every,
            heartbeat: Box::pin(tokio::time::sleep_until(now + heartbeat_every)),
            until: Box::pin(tokio::time::sleep_until(now + max_duration)),
            opened: false,
            done: false,
        }
    }
}

impl Stream for Body {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if !this.opened {
            this.opened = true;
            return Poll::Ready(Some(Ok(Bytes::from_static(RETRY))));
        }
        if this.until.as_mut().poll(cx).is_ready() {
            this.outbox.end(EndReason::MaxDuration);
        }
        // Registered before the queue is read, so a frame pushed meanwhile wakes us.
        this.outbox.waker.register(cx.waker());
        let (frame, end) = {
            let mut queue = this.outbox.lock();
            (queue.frames.pop_front(), queue.end)
        };
        if let Some(frame) = frame {
            let next = Instant::now() + this.heartbeat_every;
            this.heartbeat.as_mut().reset(next);
            return Poll::Ready(Some(Ok(frame)));
        }
        if let Some(reason) = end {
            this.done = true;
            return Poll::Ready(Some(Ok(reason.frame())));
        }
        if this.heartbeat.as_mut().poll(cx).is_ready() {
            let next = Instant::now() + this.heartbeat_every;
            this.heartbeat.as_mut().reset(next);
            // Polled once more so the new deadline is registered with the timer.
            let _ = this.heartbeat.as_mut().poll(cx);
            return Poll::Ready(Some(Ok(Bytes::from_static(HEARTBEAT))));
        }
        Poll::Pending
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        // Dropped before it ended: the client went away (or the server stopped) first; the
        // poller stops sending to it.
        self.outbox.end(EndReason::Disconnected);
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt as _;

    use super::*;

    #[tokio::test]
    async fn a_body_opens_with_retry_sends_frames_heartbeats_and_its_end() {
        let outbox = Outbox::new(4);
        let (tx, rx) = std::sync::mpsc::channel();
        outbox.on_close(Box::new(move |reason| tx.send(reason).unwrap()));
        let mut body = Body::new(
            outbox.clone(),
            Duration::from_millis(50),
            Duration::from_secs(3600),
        );
        let next = |b: &mut Body| {
            let frame = futures_util::FutureExt::now_or_never(b.next());
            frame.flatten().map(|f| f.unwrap())
        };
        assert_eq!(next(&mut body).as_deref(), Some(RETRY));
        assert_eq!(next(&mut body), None, "nothing to send yet");
        outbox.push(Bytes::from_static(b"a")).unwrap();
        assert_eq!(next(&mut body).as_deref(), Some(&b"a"[..]));
        // Nothing to send: a heartbeat comes after the interval (waited for, not timed).
        assert_eq!(body.next().await.unwrap().unwrap(), HEARTBEAT);
        outbox.end(EndReason::Unauthorized);
        assert_eq!(
            body.next().await.unwrap().unwrap(),
            EndReason::Unauthorized.frame()
        );
        assert!(body.next().await.is_none());
        drop(body);
        assert_eq!(rx.recv().unwrap(), EndReason::Unauthorized);
    }

    #[test]
    fn a_client_that_does_not_read_is_ended_at_the_bound_and_its_frames_dropped() {
        let outbox = Outbox::new(2);
        outbox.push(Bytes::from_static(b"1")).unwrap();
        outbox.push(Bytes::from_static(b"2")).unwrap();
        assert_eq!(outbox.push(Bytes::from_static(b"3")), Err(Refused::Lagging));
        assert_eq!(outbox.ended(), Some(EndReason::Lagging));
        assert!(outbox.lock().frames.is_empty());
        assert_eq!(outbox.push(Bytes::from_static(b"4")), Err(Refused::Ended));
    }
}
