//! The replay corpus of the pipeline benches: TraceItems derived deterministically from the 58
//! captured ones in `tests/fixtures/trace-items/all.json`, with varied messages, ids, URLs, emails,
//! headers, stack line numbers and planted secrets (GitHub, AWS, Stripe, Slack, JWT, bearer tokens,
//! card numbers, passwords), so that no two items are alike and the scrubber has real work.
//!
//! Used by `benches/pipeline.rs` and `examples/cold_start.rs` (`#[path]` include). No rand crate:
//! a 64-bit LCG with a fixed seed, so every run replays the same items.

#![allow(dead_code)] // each includer uses a different part

use serde_json::{Value, json};

/// The captured payloads, `[{mode, item}]`.
const FIXTURE: &str = include_str!("../../tests/fixtures/trace-items/all.json");

/// Markers of the planted secrets: none of them may survive the pipeline.
pub const PLANTED_MARKERS: &[&str] = &[
    "ghp_",
    "AKIA",
    "sk_live_",
    "eyJhbGci",
    "hooks.slack.com",
    "hunter",
    "4111 1111",
];

/// Knuth's MMIX LCG; the high 32 bits are the output.
pub struct Lcg(u64);

impl Lcg {
    /// A generator with a fixed seed.
    pub fn new(seed: u64) -> Self {
        Lcg(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// Next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 32) as u32
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: usize) -> usize {
        self.next_u32() as usize % n.max(1)
    }

    /// True with probability `pct`%.
    pub fn chance(&mut self, pct: u32) -> bool {
        self.next_u32() % 100 < pct
    }

    /// One element of `xs`.
    pub fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }

    /// `n` characters of `alphabet`.
    pub fn chars(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| char::from(alphabet[self.below(alphabet.len())]))
            .collect()
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const UPPER_NUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const HEX: &[u8] = b"0123456789abcdef";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

const NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "example.org",
    "mail.test",
    "corp.example.net",
];
const FIELDS: &[&str] = &[
    "id", "user", "email", "total", "items", "price", "sku", "session", "token", "address",
];
const HOSTS: &[&str] = &[
    "api.example.com",
    "shop.example.org",
    "127.0.0.1:8787",
    "billing.example.net",
    "edge.example.com",
];
const SCRIPTS: &[&str] = &["api", "shop-frontend", "billing-worker", "auth-gateway"];
const PATHS: &[&str] = &[
    "/users/{n}",
    "/users/{n}/orders/{uuid}",
    "/v1/items/{hex}",
    "/api/carts/{uuid}/checkout",
    "/throw",
    "/async-throw",
    "/console-error",
    "/500",
    "/search",
    "/",
    "/static/app.{hex}.js",
    "/webhooks/stripe",
];

/// A message template: `{…}` are filled by [`fill`].
const MESSAGES: &[&str] = &[
    "Cannot read properties of undefined (reading '{field}')",
    "User {email} not found (id={n})",
    "fetch https://api.github.com/repos/acme/{field}/issues failed: 401 Bad credentials with token {ghp}",
    "D1_ERROR: no such column: {field} at offset {n}: SQLITE_ERROR",
    "order {uuid} total {float} exceeds limit {n}",
    "S3 PutObject s3://bucket-{n}/{hex} failed: AccessDenied for key {akia}",
    "invalid JWT {jwt} for session {hex}",
    "payment failed for card 4111 1111 1111 1111 (customer {email})",
    "timeout after {n}ms calling https://{host}/v1/items/{n}?email={email}",
    "Stripe rejected key {stripe}: Invalid API Key provided",
    "connect ECONNREFUSED {ip}:{port}",
    "POST https://hooks.slack.com/services/T{upper8}/B{upper8}/{alnum24} returned 404",
    "login failed for {email}: password=hunter{n} rejected",
    "Authorization: Bearer {alnum32} expired at {date}",
    "TypeError: x.map is not a function",
    "KV get of key user:{n}:profile took {n}ms (limit {n}ms)",
    "Error: Network connection lost.",
    "RangeError: Invalid array length {n}",
    "upstream 502 from {ip} request-id {hex} after {float}s",
    "config aws_secret_access_key={aws_secret} refused by STS",
];

/// Fills the placeholders of a message template.
pub fn fill(rng: &mut Lcg, template: &str) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            break;
        };
        out.push_str(&rest[..open]);
        let key = &rest[open + 1..close];
        let value = match key {
            "n" => (rng.below(1_000_000) + 1).to_string(),
            "port" => (1024 + rng.below(60_000)).to_string(),
            "float" => format!("{}.{:02}", rng.below(10_000), rng.below(100)),
            "field" => rng.pick(FIELDS).to_string(),
            "email" => format!(
                "{}.{}@{}",
                rng.pick(NAMES),
                rng.below(10_000),
                rng.pick(DOMAINS)
            ),
            "uuid" => format!(
                "{}-{}-4{}-a{}-{}",
                rng.chars(HEX, 8),
                rng.chars(HEX, 4),
                rng.chars(HEX, 3),
                rng.chars(HEX, 3),
                rng.chars(HEX, 12)
            ),
            "hex" => rng.chars(HEX, 12),
            "host" => rng.pick(HOSTS).to_string(),
            "ip" => format!(
                "10.{}.{}.{}",
                rng.below(256),
                rng.below(256),
                rng.below(256)
            ),
            "ghp" => format!("ghp_{}", rng.chars(ALNUM, 36)),
            "akia" => format!("AKIA{}", rng.chars(UPPER_NUM, 16)),
            "aws_secret" => rng.chars(B64, 40),
            "stripe" => format!("sk_live_{}", rng.chars(ALNUM, 24)),
            "jwt" => format!(
                "eyJhbGciOiJIUzI1NiJ9.eyJ{}.{}",
                rng.chars(B64URL, 30),
                rng.chars(B64URL, 43)
            ),
            "upper8" => rng.chars(UPPER_NUM, 8),
            "alnum24" => rng.chars(ALNUM, 24),
            "alnum32" => rng.chars(ALNUM, 32),
            "date" => format!(
                "2026-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                1 + rng.below(12),
                1 + rng.below(28),
                rng.below(24),
                rng.below(60),
                rng.below(60),
                rng.below(1000)
            ),
            other => other.to_string(),
        };
        out.push_str(&value);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The 58 captured TraceItems (the `item` of each fixture entry).
pub fn templates() -> Vec<Value> {
    let all: Vec<Value> = serde_json::from_str(FIXTURE).expect("fixture is JSON");
    all.into_iter()
        .filter_map(|mut e| e.get_mut("item").map(Value::take))
        .collect()
}

/// Rewrites `line:col` numbers and `dev-XXXXXX` build dirs of a stack so each item differs.
fn vary_stack(rng: &mut Lcg, stack: &str) -> String {
    let mut out = String::with_capacity(stack.len());
    for (i, line) in stack.lines().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let line = match line.find("/dev-") {
            Some(p) if line.len() >= p + 11 => {
                format!(
                    "{}/dev-{}{}",
                    &line[..p],
                    rng.chars(ALNUM, 6),
                    &line[p + 11..]
                )
            }
            _ => line.to_string(),
        };
        // `…:34:38)` → new numbers, keeping the shape
        match line.rfind(".js:") {
            Some(p) if line.ends_with(')') => {
                out.push_str(&line[..p]);
                out.push_str(&format!(
                    ".js:{}:{})",
                    1 + rng.below(400),
                    1 + rng.below(80)
                ));
            }
            _ => out.push_str(&line),
        }
    }
    out
}

/// Item `i` of the corpus: a captured template, varied.
fn vary(rng: &mut Lcg, template: &Value, i: usize) -> Value {
    let mut v = template.clone();
    let ts = 1_795_269_945_000.0 + (i as f64) * 37.0 + f64::from(rng.next_u32() % 1000);
    let obj = v.as_object_mut().expect("TraceItem is an object");
    obj.insert("eventTimestamp".into(), json!(ts));
    if rng.chance(50) {
        obj.insert("scriptName".into(), json!(rng.pick(SCRIPTS)));
    }
    // request: URL with ids, sometimes secrets in the query; extra sensitive headers
    if let Some(req) = obj
        .get_mut("event")
        .and_then(|e| e.get_mut("request"))
        .and_then(Value::as_object_mut)
    {
        let path_t = rng.pick(PATHS);
        let path = fill(rng, path_t);
        let mut url = format!("https://{}{}", rng.pick(HOSTS), path);
        if rng.chance(40) {
            let q_t = rng.pick(&[
                "?email={email}&page={n}",
                "?token={ghp}",
                "?q={field}&session={hex}",
                "?access_token={jwt}",
            ]);
            url.push_str(&fill(rng, q_t));
        }
        req.insert("url".into(), json!(url));
        if let Some(h) = req.get_mut("headers").and_then(Value::as_object_mut) {
            if rng.chance(50) {
                h.insert("authorization".into(), json!(fill(rng, "Bearer {jwt}")));
            }
            if rng.chance(30) {
                h.insert("cookie".into(), json!(fill(rng, "session={hex}; uid={n}")));
            }
            h.insert("cf-connecting-ip".into(), json!(fill(rng, "{ip}")));
        }
    }
    // exceptions: new message most of the time, stack line numbers always
    if let Some(exs) = obj.get_mut("exceptions").and_then(Value::as_array_mut) {
        for ex in exs {
            let Some(ex) = ex.as_object_mut() else {
                continue;
            };
            ex.insert("timestamp".into(), json!(ts + 1.0));
            if rng.chance(75) {
                let m_t = rng.pick(MESSAGES);
                let m = fill(rng, m_t);
                ex.insert("message".into(), json!(m));
            }
            if let Some(s) = ex.get("stack").and_then(Value::as_str) {
                let s = vary_stack(rng, s);
                ex.insert("stack".into(), json!(s));
            }
        }
    }
    // logs: error/warn strings get a new message; every timestamp moves
    if let Some(logs) = obj.get_mut("logs").and_then(Value::as_array_mut) {
        for log in logs {
            let Some(log) = log.as_object_mut() else {
                continue;
            };
            log.insert("timestamp".into(), json!(ts + 2.0));
            let level = log.get("level").and_then(Value::as_str).unwrap_or("");
            let loud = matches!(level, "error" | "warn");
            if let Some(args) = log.get_mut("message").and_then(Value::as_array_mut) {
                for a in args.iter_mut() {
                    if let Value::String(s) = a
                        && (loud || rng.chance(30))
                        && !s.starts_with("panicked at")
                        && !s.starts_with('[')
                    {
                        let m_t = rng.pick(MESSAGES);
                        *s = fill(rng, m_t);
                    }
                }
                if loud && rng.chance(40) {
                    args.push(json!({ "user": fill(rng, "{email}"), "id": rng.below(100_000) }));
                }
            }
        }
    }
    v
}

/// `n` items from the captured templates, deterministic for a given seed.
pub fn items(n: usize, seed: u64) -> Vec<Value> {
    items_from(&templates(), n, seed)
}

/// `n` items, each a uniformly picked template, varied; deterministic for a given seed.
pub fn items_from(templates: &[Value], n: usize, seed: u64) -> Vec<Value> {
    let mut rng = Lcg::new(seed);
    (0..n)
        .map(|i| {
            let t = &templates[rng.below(templates.len())];
            vary(&mut rng, t, i)
        })
        .collect()
}

/// The items as tail batches (`JSON.stringify(events)`) of `batch` items each (the last may be
/// shorter).
pub fn batches(items: &[Value], batch: usize) -> Vec<String> {
    items
        .chunks(batch.max(1))
        .map(|c| serde_json::to_string(c).expect("serializable"))
        .collect()
}
