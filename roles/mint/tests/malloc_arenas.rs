//! The mint's cap on glibc malloc arenas holds when many threads allocate at once (its own
//! process: the cap is process-wide and must come before other threads allocate).

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn many_threads_allocating_at_once_share_at_most_the_capped_arenas() {
    use std::sync::{Arc, Barrier};

    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        eprintln!("MALLOC_ARENA_MAX is set: the mint leaves the cap to glibc, nothing to check");
        return;
    }
    assert!(mint::malloc_arenas::limit());
    assert!(mint::malloc_arenas::capped());
    let threads = 32;
    let start = Arc::new(Barrier::new(threads));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                let mut kept = Vec::new();
                for i in 0..20_000usize {
                    kept.push(vec![t as u8; 16 + (i * 37 + t) % 4096]);
                    if kept.len() > 64 {
                        kept.swap_remove(i % 64);
                    }
                }
                kept.len()
            })
        })
        .collect();
    for w in workers {
        assert!(w.join().expect("a worker") > 0);
    }
    // The main arena and at most MALLOC_ARENAS - 1 more: glibc counts the main one in the cap.
    let arenas = arenas();
    assert!(
        (1..=mint::malloc_arenas::MALLOC_ARENAS as usize).contains(&arenas),
        "{arenas} arenas"
    );
}

/// The arenas glibc reports (`malloc_info`: one `<heap nr=...>` each).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn arenas() -> usize {
    let mut buf: *mut libc::c_char = std::ptr::null_mut();
    let mut size: libc::size_t = 0;
    // SAFETY: open_memstream writes the buffer's address and size into the two locals; the
    // stream is closed before the buffer is read, and the buffer freed after.
    let text = unsafe {
        let stream = libc::open_memstream(&mut buf, &mut size);
        assert!(!stream.is_null(), "open_memstream");
        assert_eq!(libc::malloc_info(0, stream), 0, "malloc_info");
        libc::fclose(stream);
        let text = std::ffi::CStr::from_ptr(buf).to_string_lossy().into_owned();
        libc::free(buf.cast());
        text
    };
    text.matches("<heap nr=").count()
}
