//! The runtimes connections are served on: one current-thread tokio runtime
//! per worker of the main runtime, each on its own thread.
//!
//! On the main, work-stealing runtime, every burst of ready sockets woke a
//! parked worker to steal part of it; on two cores shared with the clients
//! those wake-ups (futex, context switches) cost a quarter of an HTTP/1.1
//! request's CPU (BENCHMARKS.md, "Where a request's microseconds go"). A
//! connection served on a current-thread runtime stays on its thread: its
//! requests, their handlers and the HTTP/2 streams hyper spawns for it run
//! there, with no hand-off between threads. Connections are dealt to the
//! runtimes in turn as they are accepted.
//!
//! The accept loop, the services' background tasks and what they spawn stay
//! on the main runtime. A handler's `spawn_blocking` runs on its runtime's own
//! blocking pool.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// How long a stopping runtime waits for its blocking tasks.
const STOP_WAIT: Duration = Duration::from_secs(1);

/// The connection runtimes of one server.
pub(crate) struct ConnectionRuntimes {
    workers: Vec<Worker>,
    next: AtomicUsize,
}

struct Worker {
    handle: Handle,
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl ConnectionRuntimes {
    /// Starts `count` runtimes (at least one), each on a thread named
    /// `quintet-conn-<i>`.
    pub(crate) fn start(count: usize) -> io::Result<Self> {
        let mut workers = Vec::with_capacity(count.max(1));
        for i in 0..count.max(1) {
            let runtime = Builder::new_current_thread().enable_all().build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("quintet-conn-{i}"))
                .spawn(move || {
                    runtime.block_on(async {
                        // Sent or dropped: either way, stop.
                        let _ = stopped.await;
                    });
                    runtime.shutdown_timeout(STOP_WAIT);
                })?;
            workers.push(Worker {
                handle,
                stop,
                thread,
            });
        }
        Ok(Self {
            workers,
            next: AtomicUsize::new(0),
        })
    }

    /// The runtime the next connection is served on.
    pub(crate) fn next(&self) -> &Handle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        &self.workers[i].handle
    }

    /// Stops every runtime (what still runs on them is dropped) and waits
    /// for their threads.
    pub(crate) async fn stop(self) {
        let threads: Vec<JoinHandle<()>> = self
            .workers
            .into_iter()
            .map(|worker| {
                let _ = worker.stop.send(());
                worker.thread
            })
            .collect();
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                if thread.join().is_err() {
                    tracing::error!("a connection runtime's thread panicked");
                }
            }
        })
        .await;
        if let Err(error) = joined {
            tracing::error!(%error, "waiting for the connection runtimes failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_are_dealt_to_each_runtime_in_turn_and_run_there() {
        let runtimes = ConnectionRuntimes::start(2).expect("start");
        let mut names = Vec::new();
        for _ in 0..4 {
            let name = runtimes
                .next()
                .spawn(async { std::thread::current().name().map(str::to_owned) })
                .await
                .expect("join");
            names.push(name.unwrap_or_default());
        }
        assert_eq!(
            names,
            [
                "quintet-conn-0",
                "quintet-conn-1",
                "quintet-conn-0",
                "quintet-conn-1"
            ]
        );
        runtimes.stop().await;
    }
}
