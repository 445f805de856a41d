// Bench-only Worker (bench/workerd): the real tail Worker build (its index.js and wasm, loaded from
// the same directory by the bench) with its D1 binding replaced by a stub, so that the CPU the
// bench measures is the tail handler's own: JSON.stringify of the items, the Rust pipeline (parse,
// noise filter, scrub, normalize, fingerprint, statements), binding the statements to D1 objects,
// the log line, and what workerd's D1 client (cloudflare-internal:d1-api, `_send`) does in the
// tail Worker's isolate for a batch: the statement text joined for its trace span, the JSON request
// body, and parsing a JSON answer with one result per statement (answer text prepared up front).
// Not included: the request to D1 itself (I/O) and D1's execution of the statements (the local
// SQLite Durable Object, which in production runs outside the tail Worker).
// The stub is put into `env` (the object behind the `env` of cloudflare:workers, which the tail
// Worker's wasm-bindgen import reads) as `DB`, checked on every call; this Worker has no real DB
// binding, so a miss fails loudly. (withEnv() with a copy of env per call would do too, but costs
// ~10 µs per call in proxy traps, which the deployed Worker does not pay.)
// GET on this Worker returns what the stub saw: batches, statements, request body bytes.
import { WorkerEntrypoint, env } from "cloudflare:workers";
import Tail from "./index.js";

const seen = { batches: 0, statements: 0, bodyBytes: 0, spanBytes: 0 };
const answers = new Map(); // statement count -> JSON answer text, as D1 would send it
const answer = (n) => {
  let text = answers.get(n);
  if (!text) {
    const meta = { served_by: "bench", duration: 0.1, changes: 1, last_row_id: 1, changed_db: true, size_after: 4096, rows_read: 1, rows_written: 1 };
    text = JSON.stringify(Array.from({ length: n }, () => ({ success: true, results: [], meta })));
    answers.set(n, text);
  }
  return text;
};

class D1PreparedStatement {
  constructor(sql, params = []) {
    this.statement = sql;
    this.params = params;
  }
  bind(...params) {
    return new D1PreparedStatement(this.statement, params);
  }
}

// The class name matters: workers-rs accepts a D1 binding whose constructor is named D1Database.
class D1Database {
  prepare(sql) {
    return new D1PreparedStatement(sql);
  }
  async batch(statements) {
    const spanText = statements.map((s) => s.statement).join("\n");
    const body = JSON.stringify(statements.map((s) => ({ sql: s.statement, params: s.params })));
    const url = new URL("/query", "http://d1");
    url.searchParams.set("resultsFormat", "ROWS_AND_COLUMNS");
    const results = JSON.parse(answer(statements.length)).map((r) => ({ success: true, meta: r.meta, results: r.results }));
    seen.batches += 1;
    seen.statements += statements.length;
    seen.bodyBytes += body.length;
    seen.spanBytes += spanText.length;
    return results;
  }
}

const DB = new D1Database();

export default class extends WorkerEntrypoint {
  async tail(items) {
    if (env.DB !== DB) env.DB = DB;
    // As the runtime does for the deployed Worker: construct its entrypoint, call tail().
    return new Tail(this.ctx, this.env).tail(items);
  }
  async fetch() {
    return Response.json(seen);
  }
}
