//! Panics in driver code. On Windows a panic in the driver is wdk-panic's
//! halt, a bugcheck; here it unwinds a simulated kernel thread (tests) or
//! aborts the process (`cargo xtask`, built with panic=abort). The suite's
//! panic hook records the message so the running test fails quoting it,
//! and, when the process is about to abort, prints the results so far and
//! writes the JUnit file first ([`set_last_words`]).

use std::sync::{Mutex, Once};

static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());
type LastWords = Box<dyn Fn(&str) + Send + Sync>;
static LAST_WORDS: Mutex<Option<LastWords>> = Mutex::new(None);

/// Installs the hook (once per process), chained to the one in place.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("<unnamed>").to_owned();
            let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
                (*s).to_owned()
            } else if let Some(s) = info.payload().downcast_ref::<String>() {
                s.clone()
            } else {
                "<non-string payload>".to_owned()
            };
            let location = info
                .location()
                .map_or(String::new(), |l| format!(" at {}:{}", l.file(), l.line()));
            let line = format!("'{message}'{location} on thread {name}");
            PANICS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(line.clone());
            // A panic aborts the process under panic=abort, and on a
            // simulated kernel thread under any strategy: it cannot unwind
            // out of the thread's extern "C" start routine. The main thread
            // may still be finishing the table then, so the last words are
            // written here, before the unwinding starts, not left to it.
            let aborting = cfg!(panic = "abort") || name.starts_with("nt-sim");
            if aborting
                && let Some(words) = LAST_WORDS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
            {
                words(&line);
            }
            previous(info);
        }));
    });
}

/// The oldest panic not yet taken.
pub fn take() -> Option<String> {
    let mut panics = PANICS.lock().unwrap_or_else(|e| e.into_inner());
    if panics.is_empty() {
        None
    } else {
        Some(panics.remove(0))
    }
}

/// Forgets panics recorded so far (a test starts clean).
pub fn clear() {
    PANICS.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// What to do just before a panic aborts the process (print the results
/// so far, write the JUnit file).
pub fn set_last_words(f: impl Fn(&str) + Send + Sync + 'static) {
    *LAST_WORDS.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(f));
}
