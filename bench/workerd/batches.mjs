// Realistic TraceItem batches for the workerd bench, derived from the 58 TraceItems captured from
// workerd in tests/fixtures/trace-items/all.json (every shape the runtime produced: ok requests with
// and without logs, 404/500 responses, uncaught exceptions, console.error, Rust panics, cron and
// queue events). Each item of a batch is a deep copy of a fixture item, picked in a seeded random
// order, then varied the way production traffic varies, so that no two items are byte-identical:
//  - `eventTimestamp`/log timestamps unique per item; `scriptName` and `scriptVersion` set as
//    production sends them (locally they are null/absent);
//  - numbers and UUIDs in URL paths, exception messages and log lines replaced by fresh ones;
//  - a fresh `x-request-id` header; about a third of the items get a secret or PII planted in a
//    URL query, a header, an exception message or a log line (bearer JWT, AWS/GitHub/Stripe/Slack
//    keys, password=..., email, IPv4, a Luhn-valid card number), as the scrubber meets them.
// Deterministic for a given seed. `summary()` tells what a set of batches holds.

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
export const FIXTURES = join(ROOT, "tests/fixtures/trace-items/all.json");

/** mulberry32: small seeded PRNG, good enough to vary test data. */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX = "0123456789abcdef";

function makeGen(seed) {
  const r = rng(seed);
  const int = (n) => Math.floor(r() * n);
  const pick = (xs) => xs[int(xs.length)];
  const str = (n, alphabet = ALNUM) => Array.from({ length: n }, () => alphabet[int(alphabet.length)]).join("");
  const uuid = () => `${str(8, HEX)}-${str(4, HEX)}-4${str(3, HEX)}-a${str(3, HEX)}-${str(12, HEX)}`;
  const b64url = (n) => str(n, ALNUM + "-_");
  const luhn = () => {
    const digits = [4, ...Array.from({ length: 14 }, () => int(10))];
    let sum = 0;
    for (let i = 0; i < 15; i++) {
      let d = digits[14 - i];
      if (i % 2 === 0) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
      sum += d;
    }
    return digits.join("") + ((10 - (sum % 10)) % 10);
  };
  const secrets = [
    () => `Bearer eyJhbGciOiJIUzI1NiJ9.${b64url(40)}.${b64url(43)}`,
    () => `AKIA${str(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")}`,
    () => `ghp_${str(36)}`,
    () => `sk_live_${str(24)}`,
    () => `xoxb-${int(1e12)}-${int(1e12)}-${str(24)}`,
    () => `password=${str(12)}`,
    () => `${pick(["alice", "bob", "carol", "dave"])}.${str(5).toLowerCase()}@example.com`,
    () => `${10 + int(200)}.${int(256)}.${int(256)}.${1 + int(254)}`,
    () => luhn(),
  ];
  return { r, int, pick, str, uuid, secret: () => pick(secrets)() };
}

const UUID_RE = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;

/** Replaces ids (UUIDs, runs of 2+ digits) in free text by fresh ones. */
function vary(g, text) {
  return text.replace(UUID_RE, () => g.uuid()).replace(/\b\d{2,}\b/g, (m) => String(10 ** (m.length - 1) + g.int(9 * 10 ** (m.length - 1))));
}

const SCRIPTS = ["shop-api", "auth-edge", "media-proxy"];

/**
 * `count` batches of `size` TraceItems each (see the file comment). `baseTs` is the first
 * `eventTimestamp`; items are 1 ms apart, so every item has its own event key.
 */
export function makeBatches({ count = 20, size = 100, seed = 1, baseTs = 1795269945000 } = {}) {
  const fixtures = JSON.parse(readFileSync(FIXTURES, "utf8")).map((f) => f.item);
  const g = makeGen(seed);
  const versions = Object.fromEntries(SCRIPTS.map((s) => [s, { id: g.uuid(), tag: `v1.${g.int(40)}.${g.int(10)}` }]));
  let ts = baseTs;
  const batches = [];
  for (let b = 0; b < count; b++) {
    const batch = [];
    for (let i = 0; i < size; i++) {
      const item = structuredClone(g.pick(fixtures));
      const planted = g.r() < 0.33;
      const where = g.int(4); // 0 url, 1 header, 2 exception, 3 log
      const shift = ts - item.eventTimestamp;
      item.eventTimestamp = ts;
      ts += 1;
      item.scriptName = g.pick(SCRIPTS);
      item.scriptVersion = versions[item.scriptName];
      for (const log of item.logs ?? []) {
        log.timestamp += shift;
        log.message = (log.message ?? []).map((m) => (typeof m === "string" ? vary(g, m) : m));
      }
      for (const ex of item.exceptions ?? []) {
        if (typeof ex.timestamp === "number") ex.timestamp += shift;
        if (typeof ex.message === "string") ex.message = vary(g, ex.message);
      }
      const req = item.event?.request;
      if (req) {
        const url = new URL(req.url);
        url.pathname = vary(g, url.pathname);
        if (planted && where === 0) url.searchParams.set(g.pick(["token", "email", "q", "session"]), g.secret());
        req.url = url.toString();
        req.headers = { ...req.headers, "x-request-id": g.uuid() };
        if (planted && where === 1) req.headers[g.pick(["authorization", "cookie", "x-api-key"])] = g.secret();
      }
      if (planted && where === 2 && item.exceptions?.length) {
        item.exceptions[0].message += ` (while handling ${g.secret()})`;
      } else if (planted && (where === 3 || where === 2)) {
        item.logs = [...(item.logs ?? []), { message: [`retrying with ${g.secret()}`], level: "log", timestamp: item.eventTimestamp }];
      }
      batch.push(item);
    }
    batches.push(batch);
  }
  return batches;
}

/** What the batches hold: items, bytes of JSON, outcomes, items with exceptions/logs. */
export function summary(batches) {
  const items = batches.flat();
  const outcomes = {};
  for (const it of items) outcomes[it.outcome] = (outcomes[it.outcome] ?? 0) + 1;
  return {
    batches: batches.length,
    items: items.length,
    avgJsonBytes: Math.round(items.reduce((n, it) => n + JSON.stringify(it).length, 0) / items.length),
    outcomes,
    withExceptions: items.filter((it) => it.exceptions?.length).length,
    withLogs: items.filter((it) => it.logs?.length).length,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const batches = makeBatches();
  console.log(JSON.stringify(summary(batches)));
  console.log(JSON.stringify(batches[0][0], null, 1).slice(0, 2000));
}
