//! Order-preserving parallel map on scoped threads: the emitter's independent stacks are built,
//! rendered and hashed on the workers the caller allows, and come back in input order, so the
//! output is the same bytes whatever the worker count.

pub(crate) fn map<T: Send, R: Send>(items: Vec<T>, workers: usize, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let workers = workers.clamp(1, items.len().max(1));
    if workers == 1 {
        return items.into_iter().map(f).collect();
    }
    // A shared queue: each worker takes the next item when it is done with its last, so a few
    // heavy items do not pile up on one worker. The calling thread is one of the workers: one
    // thread fewer to start (and for the allocator to give memory of its own).
    let n = items.len();
    let queue: Vec<std::sync::Mutex<Option<T>>> = items.into_iter().map(|t| std::sync::Mutex::new(Some(t))).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (f, queue, next) = (&f, &queue, &next);
    let work = move || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if i >= n {
                break done;
            }
            let item = queue[i].lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            if let Some(t) = item {
                done.push((i, f(t)));
            }
        }
    };
    let mut out: Vec<(usize, R)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..workers).map(|_| scope.spawn(work)).collect();
        let mut out = work();
        for h in handles {
            out.extend(h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        }
        out
    });
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_input_order_for_any_worker_count() {
        let items: Vec<u32> = (0..37).collect();
        let want: Vec<u32> = items.iter().map(|x| x * x).collect();
        for w in [0, 1, 2, 3, 8, 100] {
            assert_eq!(super::map(items.clone(), w, |x| x * x), want, "workers {w}");
        }
        assert!(super::map(Vec::<u32>::new(), 4, |x| x).is_empty());
    }
}
