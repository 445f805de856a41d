//! Stack traces: parsing V8 / SpiderMonkey / JavaScriptCore / Workers / wasm frames, telling the
//! application's frames from the runtime's, and a grouping key per frame that survives rebuilds and
//! deploys.
//!
//! # Parsing
//! The whole stack is read in one of two modes, as error-stack-parser does:
//! - **V8** (any line is `at …` with a `file:line` location or `(native)`): only `at` lines are
//!   frames (`at fn (loc)`, `at loc`, `at async fn (loc)`, `at new X (loc)`, eval frames, wasm
//!   frames); headers such as `Error: message` and other text are skipped.
//! - **SpiderMonkey / JavaScriptCore**: `fn@loc`, `@loc`, bare `loc` lines ending in `:line`,
//!   Safari's bare function names (`eval code`, `global code`), Firefox eval locations
//!   (`file line 26 > eval:1:30` → `file:26`). Bare function names are only frames when another
//!   line has an `@` location (so plain text is not read as a stack).
//!
//! Fields follow error-stack-parser (so its fixtures are the reference): `eval` and
//! `<anonymous>` locations have no file, `(native)` is kept as the file; eval frames report the
//! outermost caller's location. Wasm locations `url:wasm-function[N]:0xOFF` become file `url`,
//! line `N` (the function index) and column `OFF` (the byte offset). `async ` is not part of a
//! function name. Opera's `<anonymous function: f>([arguments not available])` is read as `f`.
//!
//! Bounded: lines over 2 KiB are skipped and at most 256 frames are returned. Never panics.
//!
//! # In-app rules ([`Frame::in_app`])
//! A frame is *not* in-app when:
//! - it has no file, or the file is a runtime location: `native`, `(native)`, `[native code]`,
//!   `<anonymous>`, `node:…`, `internal/…`, or it is under `node_modules/`;
//! - it is a dev bundle or a glue shim: under `.wrangler/tmp/` (wrangler dev's bundle, which holds
//!   wrangler's middleware and the workers-rs glue), `shim.mjs` or `build/worker/` (worker-build's
//!   JS glue), or its function is wasm-bindgen glue (`__wbg_…`, `__wbindgen_…`);
//! - it is a wasm frame (file `wasm://…` or `…wasm-function[…]`) whose Rust path has no crate
//!   (`wasm-function[12]`, `__rust_start_panic`) or whose crate is a runtime or library crate:
//!   `std`, `core`, `alloc`, `wasm_bindgen*`, `js_sys`, `web_sys`, `worker*`, `futures*`,
//!   `tokio*`, `serde*`, `console_error_panic_hook`, `dlmalloc`, `compiler_builtins`, `panic_*`,
//!   `hashbrown`, `matchit`, `http`, `bytes`, `tracing*`, `getrandom`; for `<T as Trait>::f` the
//!   crate of `T` decides;
//! - it is a Rust source location in the toolchain or a dependency (`/rustc/…`, `library/std/…`,
//!   `.cargo/registry/`, `.cargo/git/`).
//!
//! Everything else is in-app, including Workers' `worker:25:13` and production bundles
//! (`index.js`, `worker.js`).
//!
//! # Key ([`Frame::key`])
//! `"<function> (<file>)"`, no line or column. The function is `<anonymous>` when absent, without
//! `async `; Rust symbols lose the `<module>.wasm.` prefix, the `[0123abcd…]` crate
//! disambiguators and the `::h<16 hex>` hash suffix. The file loses its query and fragment, its
//! scheme and authority (`file:///srv/app/index.js` → `/srv/app/index.js`,
//! `https://cdn.example.com/a/app.js` → `/a/app.js`), and build-specific names are masked with `*`:
//! wrangler's `.wrangler/tmp/dev-AbC123/` directory and content-hash parts of file names of 8+ hex
//! chars or 8–20 alphanumerics with a digit (`index-3f2a9c1b.js` → `index-*.js`,
//! `cron_worker.wasm-001cf3fe` → `cron_worker.wasm-*`). A redeploy or rebuild keeps the key.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

/// Lines longer than this are skipped.
pub const MAX_LINE_BYTES: usize = 2048;
/// At most this many frames are returned.
pub const MAX_FRAMES: usize = 256;

/// One stack frame, top of the stack first in a `Vec<Frame>`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Frame {
    /// Function name as the engine printed it (`Object.fetch`, `crate::module::fn`), if any.
    pub function: Option<String>,
    /// File or URL as printed (`file:///srv/app/index.js`, `worker`, `wasm://…`), if any.
    pub file: Option<String>,
    /// 1-based line; for wasm frames the wasm function index.
    pub line: Option<u32>,
    /// 1-based column; for wasm frames the byte offset.
    pub column: Option<u32>,
}

/// Crates whose wasm frames are runtime or library code (exact names; see also the prefixes).
const LIBRARY_CRATES: &[&str] = &[
    "std",
    "core",
    "alloc",
    "js_sys",
    "web_sys",
    "console_error_panic_hook",
    "dlmalloc",
    "compiler_builtins",
    "panic_abort",
    "panic_unwind",
    "hashbrown",
    "matchit",
    "http",
    "bytes",
    "getrandom",
    "gimli",
    "addr2line",
    "miniz_oxide",
    "rustc_demangle",
];
/// Crate-name prefixes of library crates (`worker` matches `worker`, `worker_sys`, `worker_macros`).
const LIBRARY_CRATE_PREFIXES: &[&str] = &[
    "wasm_bindgen",
    "worker",
    "futures",
    "tokio",
    "serde",
    "tracing",
];

/// `[a543996e6e7dbf1e]` crate disambiguators and `::h58789c3365549034` hash suffixes of Rust symbols.
static RUST_HASHES: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
          \[[0-9a-f]{8,16}\]              # crate disambiguator: std[a543996e6e7dbf1e]
        | ::h[0-9a-f]{16}\b               # legacy mangling hash suffix: ::h58789c3365549034
        ",
    )
    .ok()
});

/// Firefox eval locations: `file line 26 > eval line 2 > eval:1:30` → `file:26`.
static FF_EVAL: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
        \x20line\x20([0-9]+)              # the line in the outer file
        (?:\x20>\x20eval\x20line\x20[0-9]+)*   # nested evals
        \x20>\x20eval:[0-9]+:[0-9]+          # position inside the innermost eval
        ",
    )
    .ok()
});

/// Chrome eval origins: `(eval at foo (` prefixes.
static V8_EVAL_AT: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\(eval at [^()]*").ok());

impl Frame {
    /// False for runtime and library frames (see the module docs for the rules).
    pub fn in_app(&self) -> bool {
        let Some(file) = self.file.as_deref() else {
            return false;
        };
        let function = self.function.as_deref().unwrap_or("");
        if matches!(
            file,
            "native" | "(native)" | "[native code]" | "<anonymous>" | "(<anonymous>)"
        ) || file.starts_with("node:")
            || file.starts_with("internal/")
            || file.contains("node_modules/")
            || file.contains(".wrangler/tmp/")
            || file.contains("/build/worker/")
            || file.starts_with("build/worker/")
            || file_name(file).starts_with("shim.")
            || function.starts_with("__wbg_")
            || function.starts_with("__wbindgen_")
        {
            return false;
        }
        if file.ends_with(".rs") {
            return !(file.contains("/rustc/")
                || file.starts_with("library/")
                || file.contains(".cargo/registry/")
                || file.contains(".cargo/git/"));
        }
        if file.starts_with("wasm://")
            || file.contains("wasm-function[")
            || function.contains(".wasm.")
        {
            return match rust_crate(function) {
                Some(krate) => !is_library_crate(krate),
                None => false,
            };
        }
        true
    }

    /// Stable grouping key `"function (file)"` (see the module docs).
    pub fn key(&self) -> String {
        let function = self
            .function
            .as_deref()
            .map_or("<anonymous>", |f| f.strip_prefix("async ").unwrap_or(f));
        let function = strip_wasm_module(function);
        let function = match RUST_HASHES.as_ref() {
            Some(re) if function.contains('[') || function.contains("::h") => {
                re.replace_all(function, "").into_owned()
            }
            _ => function.to_owned(),
        };
        let file = self
            .file
            .as_deref()
            .map_or_else(|| "<unknown>".to_owned(), stable_file);
        format!("{function} ({file})")
    }
}

/// The last path component.
fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// `cron_worker.wasm.std::x` → `std::x` (V8 names wasm functions `<module>.wasm.<symbol>`).
fn strip_wasm_module(function: &str) -> &str {
    match function.find(".wasm.") {
        Some(p) if !function.get(..p).unwrap_or("").contains("::") => {
            function.get(p + 6..).unwrap_or(function)
        }
        _ => function,
    }
}

/// The crate of a Rust symbol inside a wasm frame's function name, if it has a path.
fn rust_crate(function: &str) -> Option<&str> {
    let mut sym = strip_wasm_module(function).trim_start();
    // `<T as Trait>::f`, `<&mut T>::f`: the crate of T.
    loop {
        let before = sym;
        for p in ["<", "&", "mut ", "dyn ", "impl ", "*const ", "*mut "] {
            sym = sym.strip_prefix(p).unwrap_or(sym);
        }
        if sym == before {
            break;
        }
    }
    let end = sym.find("::")?;
    let krate = sym.get(..end)?;
    let krate = krate.split('[').next().unwrap_or(krate);
    (!krate.is_empty()
        && krate
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_'))
    .then_some(krate)
}

fn is_library_crate(krate: &str) -> bool {
    LIBRARY_CRATES.contains(&krate)
        || LIBRARY_CRATE_PREFIXES.iter().any(|p| {
            krate
                .strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('_'))
        })
}

/// File for keys: no query/fragment, no scheme/authority, build hashes masked.
fn stable_file(file: &str) -> String {
    let mut f = file;
    if !f.starts_with("wasm://")
        && let Some(p) = f.find(['?', '#'])
    {
        f = f.get(..p).unwrap_or(f);
    }
    if let Some(p) = f.find("://") {
        let scheme = f.get(..p).unwrap_or("");
        if scheme != "wasm"
            && !scheme.is_empty()
            && scheme
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        {
            let rest = f.get(p + 3..).unwrap_or("");
            f = rest.find('/').and_then(|q| rest.get(q..)).unwrap_or("/");
        }
    }
    mask_build_hashes(f)
}

/// Masks with `*` wrangler's dev bundle directory (`.wrangler/tmp/dev-FxB1Db` →
/// `.wrangler/tmp/dev-*`) and content-hash parts of names: an alphanumeric run of 8–64 chars with
/// a digit, after `.`, `-` or `_` and before `.`, `-`, `_`, `/` or the end
/// (`index-3f2a9c1b.js`, `cron_worker.wasm-001cf3fe`).
fn mask_build_hashes(f: &str) -> String {
    let mut out = String::with_capacity(f.len());
    let b = f.as_bytes();
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        let c = b.get(i).copied().unwrap_or(0);
        let prev = if i == 0 {
            0
        } else {
            b.get(i - 1).copied().unwrap_or(0)
        };
        if c.is_ascii_alphanumeric() && matches!(prev, b'.' | b'-' | b'_') {
            let mut j = i;
            while b.get(j).is_some_and(u8::is_ascii_alphanumeric) {
                j += 1;
            }
            let next = b.get(j).copied();
            let run = b.get(i..j).unwrap_or(&[]);
            let in_dev_dir = f
                .get(..i)
                .is_some_and(|h| h.ends_with(".wrangler/tmp/dev-"));
            let hashy = (8..=64).contains(&run.len()) && run.iter().any(u8::is_ascii_digit);
            if (in_dev_dir || hashy) && matches!(next, None | Some(b'.' | b'-' | b'_' | b'/')) {
                out.push_str(f.get(copied..i).unwrap_or(""));
                out.push('*');
                copied = j;
            }
            i = j.max(i + 1);
            continue;
        }
        i += 1;
    }
    out.push_str(f.get(copied..).unwrap_or(""));
    out
}

/// Parses a stack trace into frames, top first (see the module docs).
pub fn parse_stack(stack: &str) -> Vec<Frame> {
    frames(stack).collect()
}

/// The frames of [`parse_stack`], parsed one at a time as they are asked for (at most
/// [`MAX_FRAMES`]): a caller after the first in-app frame ([`top_in_app_frame_of`]) does not
/// build the frames below it.
pub fn frames(stack: &str) -> impl Iterator<Item = Frame> + '_ {
    let lines = move || stack.lines().filter(|l| l.len() <= MAX_LINE_BYTES);
    let v8 = lines().any(is_v8_frame_line);
    let has_at_frames = !v8
        && lines().any(|l| {
            let t = l.trim();
            t.contains('@') && (location_has_line(t) || t.ends_with("[native code]"))
        });
    lines()
        .filter_map(move |line| {
            if v8 {
                is_v8_frame_line(line)
                    .then(|| parse_v8_line(line))
                    .flatten()
            } else {
                parse_gecko_line(line.trim(), has_at_frames)
            }
        })
        .take(MAX_FRAMES)
}

/// The first in-app frame of a stack trace: `top_in_app_frame(&parse_stack(stack))`, without
/// building the frames below it.
pub fn top_in_app_frame_of(stack: &str) -> Option<Frame> {
    frames(stack).find(Frame::in_app)
}

/// The first in-app frame.
pub fn top_in_app_frame(frames: &[Frame]) -> Option<&Frame> {
    frames.iter().find(|f| f.in_app())
}

/// The location of a Rust panic message (`panicked at src/lib.rs:102:13:` since Rust 1.73, or
/// `panicked at 'msg', src/lib.rs:102:13` before) as a frame without function. workers-rs logs
/// it (console_error_panic_hook) while the wasm stack of the exception often holds only library
/// frames; this frame is then the panic's in-app location.
pub fn panic_location(text: &str) -> Option<Frame> {
    let text = crate::text::truncate(text, 64 * 1024);
    let start = text.find("panicked at ")? + "panicked at ".len();
    let rest = text.get(start..)?;
    let first_line = rest.lines().next().unwrap_or("");
    // Old format: the location follows the quoted message.
    let loc = if first_line.starts_with('\'') {
        first_line.rsplit_once("', ").map(|(_, l)| l)?
    } else {
        first_line.split_whitespace().next()?
    };
    let loc = loc.trim_end_matches(':');
    let (file, line, column) = split_location(loc);
    if file.is_empty() || line.is_none() {
        return None;
    }
    Some(Frame {
        function: None,
        file: Some(file.to_owned()),
        line,
        column,
    })
}

/// `at …` with a location (`file:line`) or a parenthesized location such as `(native)`.
fn is_v8_frame_line(line: &str) -> bool {
    let t = line.trim_start();
    let Some(rest) = t.strip_prefix("at ") else {
        return false;
    };
    let rest = rest.trim_end();
    !rest.is_empty() && (location_has_line(rest) || rest.ends_with(')'))
}

/// Some `:<digits>` in the text.
fn location_has_line(t: &str) -> bool {
    let b = t.as_bytes();
    b.windows(2)
        .any(|w| matches!(w, [b':', d] if d.is_ascii_digit()))
}

fn parse_v8_line(line: &str) -> Option<Frame> {
    // borrowed from the line unless an eval frame needs rewriting (most frames)
    let mut rest = Cow::Borrowed(line.trim().strip_prefix("at ")?.trim());
    if rest.contains("(eval ") {
        // As error-stack-parser: keep the outermost caller's location, drop the eval positions.
        let mut r = rest.replace("eval code", "eval");
        if let Some(re) = V8_EVAL_AT.as_ref() {
            r = re.replace_all(&r, "").into_owned();
        }
        if let Some(p) = r.find(',') {
            r.truncate(p);
        }
        rest = Cow::Owned(r);
    }
    if rest.contains("(eval code") {
        rest = Cow::Owned(rest.replace("(eval code", "("));
    }
    let rest = rest.strip_prefix("async ").unwrap_or(&rest).trim();
    let (function, location) = match rest.find(" (") {
        Some(p) if rest.ends_with(')') => (
            rest.get(..p).map(str::trim),
            rest.get(p + 1..).unwrap_or(""),
        ),
        _ => (None, rest),
    };
    let function = function.filter(|f| !f.is_empty()).map(str::to_owned);
    let (file, line_no, column) = parse_location(location);
    Some(Frame {
        function,
        file,
        line: line_no,
        column,
    })
}

/// A location, possibly in parentheses, as error-stack-parser's `extractLocation` reads it, plus
/// wasm locations.
fn parse_location(location: &str) -> (Option<String>, Option<u32>, Option<u32>) {
    if !location.contains(':') {
        // `(native)`, `(index 0)`, `<anonymous>`: no line.
        let inner = location.trim_start_matches('(').trim_end_matches(')');
        if inner.is_empty()
            || matches!(inner, "eval" | "<anonymous>")
            || inner.starts_with("index ")
        {
            return (None, None, None);
        }
        return (Some(location.to_owned()), None, None);
    }
    let loc = location.trim_start_matches('(').trim_end_matches(')');
    // Wasm: wasm://wasm/mod-1234abcd:wasm-function[338]:0x33cad
    if let Some(p) = loc.find(":wasm-function[") {
        let file = loc.get(..p).unwrap_or("");
        let tail = loc.get(p + ":wasm-function[".len()..).unwrap_or("");
        let (index, after) = tail.split_once(']').unwrap_or((tail, ""));
        let offset = after
            .strip_prefix(":0x")
            .and_then(|h| u32::from_str_radix(h, 16).ok());
        return (
            Some(file.to_owned()).filter(|f| !f.is_empty()),
            index.parse().ok(),
            offset,
        );
    }
    let (file, line, column) = split_location(loc);
    if file.is_empty() || matches!(file, "eval" | "<anonymous>") {
        return (None, line, column);
    }
    (Some(file.to_owned()), line, column)
}

/// `file:line:col` / `file:line` / `file` (up to two trailing numeric parts).
fn split_location(loc: &str) -> (&str, Option<u32>, Option<u32>) {
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    match loc.rsplit_once(':') {
        Some((head, last)) if numeric(last) => match head.rsplit_once(':') {
            Some((file, line)) if numeric(line) => (file, line.parse().ok(), last.parse().ok()),
            _ => (head, last.parse().ok(), None),
        },
        _ => (loc, None, None),
    }
}

/// SpiderMonkey / JavaScriptCore / Opera 11 lines.
fn parse_gecko_line(line: &str, has_at_frames: bool) -> Option<Frame> {
    if line.is_empty()
        || line == "[native code]"
        || line == "eval@[native code]"
        || line.starts_with("Error created at ")
    {
        return None;
    }
    let owned;
    let line = match FF_EVAL.as_ref() {
        Some(re) if line.contains(" > eval") => {
            owned = re.replace_all(line, ":$1").into_owned();
            owned.as_str()
        }
        _ => line,
    };
    if !line.contains('@') && !line.contains(':') {
        // Safari eval frames only have a function name.
        let plausible = line.len() <= 256
            && line.bytes().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, b' ' | b'_' | b'$' | b'.' | b'<' | b'>')
            });
        return (has_at_frames && plausible).then(|| Frame {
            function: Some(line.to_owned()),
            file: None,
            line: None,
            column: None,
        });
    }
    // The function name ends at the first `@` after the last quote (`obj["@fn"]@file`).
    let search_from = match (line.find('"'), line.rfind('"')) {
        (Some(a), Some(b)) if b > a => b,
        _ => 0,
    };
    let at = line
        .get(search_from..)
        .and_then(|t| t.find('@'))
        .map(|p| p + search_from);
    let (function, location) = match at {
        Some(p) => (line.get(..p).unwrap_or(""), line.get(p + 1..).unwrap_or("")),
        None => ("", line),
    };
    if at.is_none() && !location_has_line(location) {
        // Not a frame (`Error: message`).
        return None;
    }
    let (file, line_no, column) = split_location(location);
    if at.is_none() && line_no.is_none() {
        return None;
    }
    let function = clean_gecko_function(function);
    let file = Some(file.to_owned()).filter(|f| !f.is_empty());
    Some(Frame {
        function,
        file,
        line: line_no,
        column,
    })
}

/// Opera 11: `<anonymous function: run>([arguments not available])` → `run`;
/// `<anonymous function>` → none.
fn clean_gecko_function(function: &str) -> Option<String> {
    let f = function
        .strip_suffix("([arguments not available])")
        .unwrap_or(function);
    let f = if let Some(inner) = f
        .strip_prefix("<anonymous function")
        .and_then(|r| r.strip_suffix('>'))
    {
        inner.strip_prefix(':').unwrap_or(inner).trim()
    } else {
        f
    };
    (!f.is_empty()).then(|| f.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fr(
        function: Option<&str>,
        file: Option<&str>,
        line: Option<u32>,
        column: Option<u32>,
    ) -> Frame {
        Frame {
            function: function.map(str::to_owned),
            file: file.map(str::to_owned),
            line,
            column,
        }
    }

    #[test]
    fn patterns_compile() {
        assert!(RUST_HASHES.is_some());
        assert!(FF_EVAL.is_some());
        assert!(V8_EVAL_AT.is_some());
    }

    #[test]
    fn v8_shapes() {
        let s = "TypeError: boom\n    at Object.fetch (worker:25:13)\n    at worker:144:13\n    at async handle (file:///srv/app/index.js:9:15)\n    at new Foo (/srv/app/foo.js:1:2)\n    at Array.forEach (native)\n    at new Promise (<anonymous>)\n    at async Promise.all (index 0)";
        let f = parse_stack(s);
        assert_eq!(
            f,
            vec![
                fr(Some("Object.fetch"), Some("worker"), Some(25), Some(13)),
                fr(None, Some("worker"), Some(144), Some(13)),
                fr(
                    Some("handle"),
                    Some("file:///srv/app/index.js"),
                    Some(9),
                    Some(15)
                ),
                fr(Some("new Foo"), Some("/srv/app/foo.js"), Some(1), Some(2)),
                fr(Some("Array.forEach"), Some("(native)"), None, None),
                fr(Some("new Promise"), None, None, None),
                fr(Some("Promise.all"), None, None, None),
            ]
        );
    }

    #[test]
    fn v8_eval_and_spaces() {
        let f = parse_stack(
            "Error\n at baz (eval at foo (eval at speak (http://x/f.js:21:17)), <anonymous>:1:30)\n at /var/my app/i.js:2:9\n at Object.<anonymous> (/var/my app/i.js:3:4)",
        );
        assert_eq!(
            f[0],
            fr(Some("baz"), Some("http://x/f.js"), Some(21), Some(17))
        );
        assert_eq!(f[1], fr(None, Some("/var/my app/i.js"), Some(2), Some(9)));
        assert_eq!(
            f[2],
            fr(
                Some("Object.<anonymous>"),
                Some("/var/my app/i.js"),
                Some(3),
                Some(4)
            )
        );
    }

    #[test]
    fn gecko_and_safari_shapes() {
        let f = parse_stack(
            "foo@http://x/f.js:41:13\n@http://x/f.js:1\nhttp://x/f.js:48:22\n[native code]\nglobal code\n\nobj[\"@fn\"]@Scratchpad/1:10:29\nbaz@http://x/f.js line 26 > eval line 2 > eval:1:30",
        );
        assert_eq!(
            f,
            vec![
                fr(Some("foo"), Some("http://x/f.js"), Some(41), Some(13)),
                fr(None, Some("http://x/f.js"), Some(1), None),
                fr(None, Some("http://x/f.js"), Some(48), Some(22)),
                fr(Some("global code"), None, None, None),
                fr(
                    Some("obj[\"@fn\"]"),
                    Some("Scratchpad/1"),
                    Some(10),
                    Some(29)
                ),
                fr(Some("baz"), Some("http://x/f.js"), Some(26), None),
            ]
        );
    }

    #[test]
    fn plain_text_is_not_a_stack() {
        assert!(parse_stack("boom").is_empty());
        assert!(parse_stack("Error: something at the end: went wrong").is_empty());
        assert!(parse_stack("").is_empty());
    }

    #[test]
    fn wasm_frames() {
        let s = "RuntimeError: unreachable\n    at cron_worker.wasm.std[a543996e6e7dbf1e]::panicking::panic_with_hook (wasm://wasm/cron_worker.wasm-001cf3fe:wasm-function[338]:0x33cad)\n    at cron_worker.wasm.my_app::handler::h0123456789abcdef (wasm://wasm/cron_worker.wasm-001cf3fe:wasm-function[12]:0x100)\n    at oe (file:///srv/app/cron-worker/.wrangler/tmp/dev-FxB1Db/index.js:888:11)";
        let f = parse_stack(s);
        assert_eq!(f.len(), 3);
        assert_eq!(
            f[0],
            fr(
                Some("cron_worker.wasm.std[a543996e6e7dbf1e]::panicking::panic_with_hook"),
                Some("wasm://wasm/cron_worker.wasm-001cf3fe"),
                Some(338),
                Some(0x33cad)
            )
        );
        assert!(!f[0].in_app());
        assert!(f[1].in_app());
        assert!(!f[2].in_app());
        assert_eq!(
            f[0].key(),
            "std::panicking::panic_with_hook (wasm://wasm/cron_worker.wasm-*)"
        );
        assert_eq!(
            f[1].key(),
            "my_app::handler (wasm://wasm/cron_worker.wasm-*)"
        );
        assert_eq!(top_in_app_frame(&f), Some(&f[1]));
    }

    #[test]
    fn lazy_frames_agree_with_parse_stack() {
        let many: String = (0..MAX_FRAMES + 5)
            .map(|i| format!("    at f{i} (/app/node_modules/x/i.js:{i}:1)\n"))
            .collect();
        let stacks = [
            "Error: x\n    at lib (/app/node_modules/x/i.js:1:2)\n    at handler (file:///srv/app/index.js:3:4)\n    at more (file:///srv/app/index.js:5:6)",
            "foo@http://x/f.js:41:13\n@http://x/f.js:1\n[native code]",
            "Error\n at baz (eval at foo (eval at speak (http://x/f.js:21:17)), <anonymous>:1:30)",
            "    at only (node:internal/process:1:1)\n    at lib (/app/node_modules/y/i.js:2:2)",
            "no frames at all",
            "",
            &many,
        ];
        for stack in stacks {
            let all = parse_stack(stack);
            assert_eq!(frames(stack).collect::<Vec<_>>(), all, "{stack}");
            assert_eq!(top_in_app_frame_of(stack).as_ref(), top_in_app_frame(&all));
        }
        assert_eq!(parse_stack(&many).len(), MAX_FRAMES);
        assert_eq!(
            top_in_app_frame_of(stacks[0]).map(|f| f.key()).as_deref(),
            Some("handler (/srv/app/index.js)")
        );
    }

    #[test]
    fn in_app_rules() {
        let yes = [
            fr(Some("Object.fetch"), Some("worker"), Some(1), Some(1)),
            fr(
                Some("Object.fetch"),
                Some("file:///srv/app/index.js"),
                None,
                None,
            ),
            fr(None, Some("index.js"), None, None),
            fr(None, Some("cron-worker/src/lib.rs"), Some(1), None),
            fr(
                Some("m.wasm.<my_app::Foo as core::fmt::Display>::fmt"),
                Some("wasm://wasm/m"),
                None,
                None,
            ),
        ];
        for f in &yes {
            assert!(f.in_app(), "{f:?}");
        }
        let no = [
            fr(Some("f"), None, None, None),
            fr(Some("f"), Some("/app/node_modules/x/index.js"), None, None),
            fr(
                Some("f"),
                Some("node:internal/process/task_queues"),
                None,
                None,
            ),
            fr(
                Some("f"),
                Some("internal/modules/cjs/loader.js"),
                None,
                None,
            ),
            fr(Some("f"), Some("native"), None, None),
            fr(Some("f"), Some("(native)"), None, None),
            fr(Some("f"), Some("[native code]"), None, None),
            fr(Some("f"), Some("<anonymous>"), None, None),
            fr(
                Some("f"),
                Some("/srv/app/.wrangler/tmp/dev-x/index.js"),
                None,
                None,
            ),
            fr(
                Some("f"),
                Some("/srv/app/build/worker/shim.mjs"),
                None,
                None,
            ),
            fr(
                Some("__wbg_new_bb74"),
                Some("/srv/app/index.js"),
                None,
                None,
            ),
            fr(
                Some("m.wasm.core::ops::function::FnOnce::call_once::h58789c3365549034"),
                Some("wasm://wasm/m"),
                None,
                None,
            ),
            fr(
                Some("m.wasm.js_sys::futures::x"),
                Some("wasm://wasm/m"),
                None,
                None,
            ),
            fr(
                Some("m.wasm.wasm_bindgen_futures::x"),
                Some("wasm://wasm/m"),
                None,
                None,
            ),
            fr(
                Some("m.wasm.worker::Router::run"),
                Some("wasm://wasm/m"),
                None,
                None,
            ),
            fr(
                Some("m.wasm.worker_sys::x"),
                Some("wasm://wasm/m"),
                None,
                None,
            ),
            fr(
                Some("m.wasm.futures_util::x"),
                Some("wasm://wasm/m"),
                None,
                None,
            ),
            fr(
                Some("m.wasm.<alloc::boxed::Box<F> as core::ops::Fn>::call"),
                Some("wasm://wasm/m"),
                None,
                None,
            ),
            fr(None, Some("wasm://wasm/m"), Some(3), None),
            fr(
                Some("m.wasm.__rust_start_panic"),
                Some("wasm://wasm/m"),
                None,
                None,
            ),
            fr(
                None,
                Some("/rustc/abc/library/std/src/panicking.rs"),
                Some(1),
                None,
            ),
            fr(
                None,
                Some("/home/u/.cargo/registry/src/x/lib.rs"),
                Some(1),
                None,
            ),
        ];
        for f in &no {
            assert!(!f.in_app(), "{f:?}");
        }
        // `workers_app` is not the `worker` crate.
        assert!(
            fr(
                Some("m.wasm.workers_app::run"),
                Some("wasm://wasm/m"),
                None,
                None
            )
            .in_app()
        );
    }

    #[test]
    fn keys_are_stable() {
        let a = fr(
            Some("Object.fetch"),
            Some("file:///srv/app/producer/index.js?v=1#x"),
            Some(6),
            Some(15),
        );
        assert_eq!(a.key(), "Object.fetch (/srv/app/producer/index.js)");
        let b = fr(
            Some("async Object.fetch"),
            Some("https://cdn.example.com/assets/index-3f2a9c1b.js"),
            Some(1),
            Some(1),
        );
        let c = fr(
            Some("Object.fetch"),
            Some("https://other.example.com/assets/index-77aa0011.js"),
            Some(9),
            Some(9),
        );
        assert_eq!(b.key(), c.key());
        assert_eq!(b.key(), "Object.fetch (/assets/index-*.js)");
        let d = fr(
            Some("Object.fetch"),
            Some("file:///srv/app/.wrangler/tmp/dev-FxB1Db/index.js"),
            None,
            None,
        );
        assert_eq!(
            d.key(),
            "Object.fetch (/srv/app/.wrangler/tmp/dev-*/index.js)"
        );
        assert_eq!(fr(None, None, None, None).key(), "<anonymous> (<unknown>)");
        assert_eq!(
            fr(None, Some("worker"), Some(1), None).key(),
            "<anonymous> (worker)"
        );
        // Ordinary names stay.
        assert_eq!(
            fr(
                Some("f"),
                Some("/srv/app/src/handlers/users.js"),
                None,
                None
            )
            .key(),
            "f (/srv/app/src/handlers/users.js)"
        );
        assert_eq!(
            fr(Some("f"), Some("/srv/app/src/my-component.js"), None, None).key(),
            "f (/srv/app/src/my-component.js)"
        );
    }

    #[test]
    fn panic_locations() {
        let p = panic_location("panicked at cron-worker/src/lib.rs:102:13:\ndeliberate")
            .unwrap_or_else(|| fr(None, None, None, None));
        assert_eq!(
            p,
            fr(None, Some("cron-worker/src/lib.rs"), Some(102), Some(13))
        );
        assert!(p.in_app());
        assert_eq!(p.key(), "<anonymous> (cron-worker/src/lib.rs)");
        let old = panic_location("thread 'main' panicked at 'boom, really', src/main.rs:5:9");
        assert_eq!(old, Some(fr(None, Some("src/main.rs"), Some(5), Some(9))));
        assert_eq!(panic_location("no panic here"), None);
        assert_eq!(panic_location("panicked at "), None);
    }

    #[test]
    fn bounded_and_never_panics() {
        let many = "    at f (/a.js:1:1)\n".repeat(10_000);
        assert_eq!(parse_stack(&many).len(), MAX_FRAMES);
        let many_gecko = "f@/a.js:1:1\n".repeat(10_000);
        assert_eq!(parse_stack(&many_gecko).len(), MAX_FRAMES);
        let long = format!("    at f ({}:1:1)\n    at g (/b.js:2:2)", "x".repeat(3000));
        assert_eq!(parse_stack(&long).len(), 1);
        let big = "é".repeat(500_000);
        assert!(parse_stack(&big).is_empty());
        for s in [
            "at",
            "at ",
            "at (",
            "at )",
            "at ()",
            "at f (",
            "@",
            "@:",
            ":",
            "::",
            "at f (:1:1)",
            "at f (wasm-function[",
            "at f (x:wasm-function[1]:0x)",
            "at f (x:wasm-function[",
            "\u{0}at\u{1} x:1",
            "a@b\"@c\"",
            "\"\"@",
            "   at é (é:1:é)",
            "at f (\r\n",
            "at async",
            "at async (x:1:2)",
        ] {
            let f = parse_stack(s);
            for fr in &f {
                let _ = (fr.in_app(), fr.key());
            }
        }
        let _ = panic_location("panicked at :");
        let _ = panic_location("panicked at 'x");
    }

    #[test]
    fn multibyte() {
        let f = parse_stack("    at función (/srv/app/índice.js:3:4)");
        assert_eq!(
            f,
            vec![fr(
                Some("función"),
                Some("/srv/app/índice.js"),
                Some(3),
                Some(4)
            )]
        );
        assert_eq!(f[0].key(), "función (/srv/app/índice.js)");
    }
}
