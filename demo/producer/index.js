// demo-producer: a small API with several real bugs, and secrets put on purpose into its error
// messages, URLs and logs, so that selfheal has something to catch (and to scrub).
// Seeded secrets (the end-to-end test checks none of them reaches D1): see scripts/lib/demo.mjs, and
// the four prefix-less shapes below (issue 9), listed in tests/e2e/loop.test.mjs.

// Issue 9: secrets without a vendor prefix, as two public apps leaked them.
const PLANTED = {
  awsSecret: "q8Zr3T0fWm1XcV7bN4kJ2pLs9HdYg6Ea5uRiOtWz", // a bare 40-char AWS secret access key
  apiKey: "pk_prod_4eC39HqLyjWDarjtT1zdp7dc", // a custom key, no vendor prefix
  session: "sess_9fKd02LmQx7PzR4tVb81NcWe", // a session token logged from a header
  password: "tr0ub&dor&Pa55", // a password holding `&`
};

const USERS = {
  1: { id: 1, email: "ok-user@example.com", profile: { name: "Ada" } },
  2: { id: 2, email: "alice.secret@example.com" }, // no profile: GET /users/2 throws a TypeError
};

async function getUser(id) {
  const user = USERS[id] ?? { id, email: `user${id}@example.com` }; // unknown ids have no profile either
  // Bug 1: a missing field. Throws TypeError: Cannot read properties of undefined (reading 'name')
  return { id: user.id, name: user.profile.name };
}

async function createOrder(request, orderId) {
  const text = await request.text();
  // Bug 2: no validation of the body. A bad body throws SyntaxError whose message quotes the input.
  const order = JSON.parse(text);
  return { orderId, items: order.items?.length ?? 0 };
}

async function checkout(cartId, env) {
  // Bug 3: the payment upstream is down (a closed port) and the error is turned into a 500.
  try {
    const upstream = env.PAYMENT_URL ?? "http://127.0.0.1:9/pay";
    const res = await fetch(`${upstream}?cart=${cartId}`);
    return new Response(await res.text(), { status: res.status });
  } catch (err) {
    console.error(`payment upstream failed for cart ${cartId}:`, String(err));
    // the payment library echoes the stored credential and the retried body into its error log
    console.error(
      `duplicate key value violates unique constraint "payment_keys_pkey"\nDETAIL: Key (id, secret)=(7, ${PLANTED.awsSecret}) already exists.`,
      `retry body: password=${PLANTED.password}&cart=${cartId}`,
    );
    return Response.json({ error: "payment unavailable" }, { status: 500 });
  }
}

function sync(url) {
  // Bug 4: a log line that leaks a credential (and the request goes on, status 200).
  const token = url.searchParams.get("token") ?? "ghp_DemoLeakedToken0000000000000000000001";
  console.error("sync failed, retry with", `Authorization: Bearer ${token}`, { attempt: 3, user: "alice.secret@example.com" });
  console.error(`session lookup failed for header x-session: ${PLANTED.session}`);
  return Response.json({ synced: false });
}

function report(url) {
  // Bug 5: a thrown error whose message carries secrets from the query string.
  const key = url.searchParams.get("aws_key");
  throw new Error(`report export failed for alice.secret@example.com with key ${key} (api key ${PLANTED.apiKey})`);
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const parts = url.pathname.split("/").filter(Boolean);
    if (url.pathname === "/health") return new Response("ok");
    if (parts[0] === "users" && parts.length === 2) return Response.json(await getUser(Number(parts[1])));
    if (parts[0] === "orders" && parts.length === 2 && request.method === "POST") {
      return Response.json(await createOrder(request, parts[1]));
    }
    if (parts[0] === "checkout" && parts.length === 2) return checkout(parts[1], env);
    if (url.pathname === "/sync") return sync(url);
    if (url.pathname === "/reports/export") return report(url);
    return Response.json({ error: "not found" }, { status: 404 });
  },
};
