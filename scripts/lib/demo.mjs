// The scripted traffic of the demo: a deterministic mix of healthy requests, expected client errors
// and five real bugs of demo/producer, with secrets planted in URLs, bodies, headers and messages.

/** Secrets planted by the demo traffic and the producer. None may be stored anywhere. */
export const SECRETS = {
  jwt: "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTk5OTk5OTk5OX0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
  email: "alice.secret@example.com",
  awsKey: "AKIA2E0A8F3B244C9986",
  password: "hunter2-Sup3rSecret!",
  githubToken: "ghp_DemoLeakedToken0000000000000000000001",
};

/** The five bugs the traffic triggers, by route pattern (what selfheal should make incidents of). */
export const BUG_ROUTES = ["/users/:id", "/orders/:id", "/checkout/:id", "/sync", "/reports/export"];

const uuid = (i) => `6f1c2a3b-4d5e-4f60-8a7b-${String(100000000000 + i).padStart(12, "0")}`;

/**
 * The request plan: [{ path, init, bug? }]. `bug` names the route pattern of the incident it should
 * feed; healthy and 4xx requests have none.
 */
export function plan() {
  const reqs = [];
  const auth = { authorization: `Bearer ${SECRETS.jwt}` };
  for (let i = 0; i < 60; i++) reqs.push({ path: `/health?i=${i}` });
  for (let i = 0; i < 20; i++) reqs.push({ path: "/users/1", init: { headers: auth } });
  for (let i = 0; i < 30; i++) reqs.push({ path: `/no-such-page/${i}` });
  for (let i = 0; i < 50; i++) {
    reqs.push({ path: `/users/${100 + i}?session=${SECRETS.jwt}`, init: { headers: auth }, bug: "/users/:id" });
  }
  for (let i = 0; i < 40; i++) {
    // Form-encoded by mistake: V8's SyntaxError quotes the start of the body (and so the password).
    const body = `password=${SECRETS.password}&user=${SECRETS.email}&n=${i}`;
    reqs.push({
      path: `/orders/${uuid(i)}`,
      init: { method: "POST", body, headers: { "content-type": "application/json", cookie: `session=${SECRETS.jwt}` } },
      bug: "/orders/:id",
    });
  }
  for (let i = 0; i < 30; i++) reqs.push({ path: `/checkout/${9000 + i}`, bug: "/checkout/:id" });
  for (let i = 0; i < 20; i++) reqs.push({ path: `/sync?token=${SECRETS.githubToken}&n=${i}`, bug: "/sync" });
  for (let i = 0; i < 20; i++) {
    reqs.push({ path: `/reports/export?aws_key=${SECRETS.awsKey}&page=${i}`, bug: "/reports/export" });
  }
  // Interleave deterministically so bugs are spread over time like real traffic.
  return reqs.map((r, i) => ({ r, k: (i * 7919) % reqs.length })).sort((a, b) => a.k - b.k).map((x) => x.r);
}

/** Sends the plan to the producer, `concurrency` at a time. Returns { sent, byStatus }. */
export async function drive(stack, requests = plan(), concurrency = 8) {
  const byStatus = {};
  let next = 0;
  const worker = async () => {
    while (next < requests.length) {
      const i = next++;
      const { path, init = {} } = requests[i];
      // A request id per request, as real clients send: locally TraceItems carry no cf-ray, and two
      // identical requests in the same millisecond would otherwise be one occurrence.
      const res = await stack.producer(path, { ...init, headers: { ...init.headers, "x-request-id": `demo-${i}` } });
      await res.arrayBuffer();
      byStatus[res.status] = (byStatus[res.status] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { sent: requests.length, byStatus };
}
