//! The device hold (one recording thread at a time, every call taking turns on GL) and a
//! one-shot channel for readbacks that needs no executor.

use std::sync::{Arc, Mutex};

/// Which thread holds a device, and how many holds it has open (re-entrant).
#[derive(Default)]
pub(crate) struct DeviceHolder {
    state: Mutex<(Option<std::thread::ThreadId>, usize)>,
    released: std::sync::Condvar,
}

impl DeviceHolder {
    /// Waits until no other thread holds the device and takes one hold; true for the first.
    pub(super) fn enter(&self) -> bool {
        let me = std::thread::current().id();
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while g.0.is_some_and(|t| t != me) {
            g = self.released.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        g.0 = Some(me);
        g.1 += 1;
        g.1 == 1
    }

    pub(super) fn leave(&self) {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        g.1 = g.1.saturating_sub(1);
        if g.1 == 0 {
            g.0 = None;
            self.released.notify_all();
        }
    }
}

/// A hold on the device from [`super::Gpu::exclusive`], released when dropped.
pub(crate) struct Exclusive<'a>(pub(super) Option<&'a DeviceHolder>);

impl Drop for Exclusive<'_> {
    fn drop(&mut self) {
        if let Some(h) = self.0 {
            h.leave();
        }
    }
}

/// A one-shot channel that works without an executor on both native and web.
pub(super) fn futures_channel<T>() -> (OneshotTx<T>, OneshotRx<T>) {
    let shared = Arc::new(Mutex::new(OneshotState {
        value: None,
        waker: None,
    }));
    (OneshotTx(shared.clone()), OneshotRx(shared))
}

struct OneshotState<T> {
    value: Option<T>,
    waker: Option<std::task::Waker>,
}
pub(super) struct OneshotTx<T>(Arc<Mutex<OneshotState<T>>>);
pub(super) struct OneshotRx<T>(Arc<Mutex<OneshotState<T>>>);

impl<T> OneshotTx<T> {
    pub(super) fn send(self, v: T) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.value = Some(v);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
}

impl<T> std::future::Future for OneshotRx<T> {
    type Output = T;
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<T> {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match s.value.take() {
            Some(v) => std::task::Poll::Ready(v),
            None => {
                s.waker = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        }
    }
}
