// POST /tail  with a JSON array: delivered to selfheal-tail's tail() exactly as the runtime would.
// POST /tail-each with a JSON array: each TraceItem delivered alone, one tail() invocation per item,
//   one after the other (as production delivers one invocation's items per call). With ?stamp=1,
//   each item's eventTimestamp (and its exceptions' timestamps) is set to the moment it is handed
//   over, so the load bench can measure the delay from delivery to storage.
// POST /queue with a JSON array: each element sent as one message on the fix-jobs Queue.
// POST /ingest with a JSON array of strings: each sent as one text message on the ingest Queue
//   (what the tail Worker sends), so tests can deliver one message five times or a malformed one.
export default {
  async fetch(request, env) {
    const { pathname } = new URL(request.url);
    if (request.method !== "POST") return new Response("POST /tail or /queue\n", { status: 405 });
    const items = await request.json();
    if (pathname === "/tail") {
      await env.TAIL.tail(items);
    } else if (pathname === "/tail-each") {
      const stamp = new URL(request.url).searchParams.get("stamp") === "1";
      for (const item of items) {
        if (stamp) {
          item.eventTimestamp = Date.now();
          for (const e of item.exceptions ?? []) e.timestamp = item.eventTimestamp;
        }
        await env.TAIL.tail([item]);
      }
    } else if (pathname === "/ingest") {
      await env.INGEST.sendBatch(items.map((body) => ({ body, contentType: "text" })));
    } else if (pathname === "/queue") {
      for (const m of items) await env.FIX_JOBS.send(m);
    } else {
      return new Response("not found\n", { status: 404 });
    }
    return Response.json({ delivered: items.length });
  },
};
