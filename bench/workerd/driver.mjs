// Bench-only Worker (bench/workerd): holds the generated TraceItem batches in memory and delivers
// them to a tail consumer over a service binding (JS RPC `tail(items)`, as tests/e2e/replayer does).
//   POST /load                       body: JSON array of batches (once per isolate)
//   POST /run?target=T&from=i&count=k&cycle=n&base=b  delivers batches b + (i..i+k-1 modulo n;
//                                    n defaults to all, b to 0) to env[T].tail(), one
//                                    awaited call per batch. Every delivery first moves each item's
//                                    eventTimestamp by +1 ms, identically for every target, so a
//                                    batch delivered again is new traffic (new event keys), not a
//                                    replay that D1 would ignore.
let batches = [];

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (request.method === "POST" && url.pathname === "/load") {
      batches = await request.json();
      return Response.json({ batches: batches.length });
    }
    if (request.method === "POST" && url.pathname === "/run") {
      const target = env[url.searchParams.get("target")];
      if (!target) return new Response("unknown target\n", { status: 400 });
      const from = Number(url.searchParams.get("from") ?? 0);
      const count = Number(url.searchParams.get("count") ?? 1);
      const cycle = Number(url.searchParams.get("cycle") ?? batches.length);
      const base = Number(url.searchParams.get("base") ?? 0);
      let items = 0;
      for (let j = 0; j < count; j++) {
        const batch = batches[base + ((from + j) % cycle)];
        for (const item of batch) item.eventTimestamp += 1;
        await target.tail(batch);
        items += batch.length;
      }
      return Response.json({ items });
    }
    return new Response("POST /load or /run\n", { status: 404 });
  },
};
