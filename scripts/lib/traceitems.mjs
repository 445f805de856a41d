// Production-shaped TraceItems (the fields workerd and the edge deliver to a tail consumer:
// scriptName, scriptVersion {id, tag}, entrypoint, eventTimestamp, event.request with cf, the
// response or the exceptions) for the e2e tests and the load script.

let ray = 0;
const versionIds = new Map();

/** A stable version id per release tag (a UUID, as scriptVersion.id is). */
export function versionId(release) {
  if (!versionIds.has(release)) versionIds.set(release, `7e1a5c00-0000-4000-8000-${String(versionIds.size + 1).padStart(12, "0")}`);
  return versionIds.get(release);
}

/** One TraceItem. `error`: {name, message, stack?} makes it an uncaught exception. */
export function traceItem({ script, release, route, ts, error, method = "GET", status = 200, colo = "FRA" }) {
  return {
    wallTime: 12,
    cpuTime: 2,
    truncated: false,
    executionModel: "stateless",
    outcome: error ? "exception" : "ok",
    scriptName: script,
    scriptVersion: { id: versionId(release), tag: release },
    entrypoint: "default",
    diagnosticsChannelEvents: [],
    eventTimestamp: ts,
    event: {
      request: {
        url: `https://${script}.example.com${route}`,
        method,
        headers: { "cf-ray": `ray-${++ray}`, accept: "application/json" },
        cf: { colo, country: "DE" },
      },
      ...(error ? {} : { response: { status } }),
    },
    exceptions: error ? [{ ...error, timestamp: ts }] : [],
    logs: [],
  };
}
