//! Work shared out over the host's cores with scoped threads, results kept in order (one thread
//! in the browser, which has none).

use std::ops::Range;

/// Threads for `n` items: the host's cores, one per `per` items at most (one in the browser).
pub fn threads_for(n: usize, per: usize) -> usize {
    #[cfg(target_arch = "wasm32")]
    {
        let _ = (n, per);
        1
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::thread::available_parallelism()
            .map_or(1, |c| c.get())
            .min(n.div_ceil(per.max(1)))
            .max(1)
    }
}

/// `f` of every item, in the items' order, computed on up to [`threads_for`]`(len, per)`
/// threads, each taking one contiguous run of items. A panic in `f` is passed on to the caller,
/// as if the items had been mapped on its own thread.
pub fn map_ordered<T: Sync, R: Send>(
    items: &[T],
    per: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    map_ranges(items.len(), per, |r| {
        items[r].iter().map(&f).collect::<Vec<R>>()
    })
    .into_iter()
    .flatten()
    .collect()
}

/// `f` of contiguous ranges that together cover `0..n` in order, one range per thread of
/// [`threads_for`]`(n, per)`, for work that keeps scratch memory per range. A panic in `f` is
/// passed on to the caller.
pub fn map_ranges<R: Send>(n: usize, per: usize, f: impl Fn(Range<usize>) -> R + Sync) -> Vec<R> {
    let threads = threads_for(n, per);
    if threads <= 1 {
        return vec![f(0..n)];
    }
    let run = n.div_ceil(threads);
    std::thread::scope(|scope| {
        let f = &f;
        let parts: Vec<_> = (0..n)
            .step_by(run)
            .map(|a| scope.spawn(move || f(a..(a + run).min(n))))
            .collect();
        parts
            .into_iter()
            .map(|p| {
                p.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Hands the browser's thread back for a turn of its event loop (a frame drawn, input taken)
/// before the caller goes on; natively, nothing. Long work on the page's only thread awaits it
/// between parts.
pub async fn yield_to_host() {
    #[cfg(target_arch = "wasm32")]
    {
        let promise = js_sys::Promise::new(&mut |resolve, _| {
            let queued = web_sys::window()
                .map(|w| w.set_timeout_with_callback(&resolve).is_ok())
                .unwrap_or(false);
            if !queued {
                let _ = resolve.call0(&wasm_bindgen::JsValue::NULL);
            }
        });
        let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_order_whatever_the_split() {
        for n in [0, 1, 7, 64, 1000] {
            let items: Vec<usize> = (0..n).collect();
            for per in [1, 3, 1000] {
                let out = map_ordered(&items, per, |&i| i * i);
                assert_eq!(out, items.iter().map(|i| i * i).collect::<Vec<_>>());
            }
        }
        assert_eq!(threads_for(0, 8), 1);
        assert_eq!(threads_for(5, 0), threads_for(5, 1));
    }
}
