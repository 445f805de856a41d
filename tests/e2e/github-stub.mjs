// A local stand-in for GitHub's REST API (version 2022-11-28), because this machine cannot reach
// github.com. It implements the documented endpoints selfheal uses — issues (create, list, update),
// search/issues, comments, assignees, an issue's timeline, pulls (list, create, get) and a commit's
// check runs ("List check runs for a Git reference") — with their documented request and response
// shapes,
// and checks every request the way GitHub does or documents:
//  - `Authorization: Bearer <token>` (else 401 "Bad credentials"),
//  - a `User-Agent` (GitHub rejects requests without one with 403),
//  - `X-GitHub-Api-Version: 2022-11-28` and `Accept: application/vnd.github+json` (recorded as
//    violations when missing or different, so a test can assert there were none),
//  - JSON bodies of the documented shape (else 422 "Validation Failed").
// Every response carries the x-ratelimit-* headers. `failNext()` queues documented error responses
// (primary/secondary rate limits, 5xx) for matching requests, a response held past the client's
// timeout (`{ hangMs }`: nothing done) or a request that is applied but whose response is lost
// (`{ process: true, delayMs }`: GitHub committed the write, the client never hears it), and
// `searchLagMs` makes search miss recent issues, as GitHub's search index lags writes. Each
// recorded request has its arrival time (`at`, ms) and the status it was answered with.
// A commit's check runs are what the test sets (`setChecks(sha, list)`, or `onCheckRuns((sha,
// poll) => list)` asked at every poll, so checks can go from queued to completed); a commit nobody
// set has one green check named `ci` (a repository whose CI passes), and a ref that is not a
// 40-hex commit id gets 422 "No commit found for SHA".
//
// References: https://docs.github.com/en/rest/issues/issues, /rest/search/search,
// /rest/issues/comments, /rest/issues/assignees, /rest/issues/timeline, /rest/pulls/pulls,
// /rest/checks/runs, /rest/using-the-rest-api/rate-limits-for-the-rest-api.

import { createServer } from "node:http";

export const API_VERSION = "2022-11-28";

/** The cron Worker's vars that point its GitHub tracker at a running stub. */
export const trackerVars = (gh, token, repo) => ({
  SELFHEAL_TRACKER: "github",
  SELFHEAL_GITHUB_API: gh.url,
  SELFHEAL_GITHUB_REPO: repo,
  SELFHEAL_GITHUB_TOKEN: token,
});

/**
 * Starts the stand-in on a free loopback port.
 * Options: token (required bearer token), repo ("owner/name"), searchLagMs (default 0),
 * branchExists(name) → bool (for pulls; default: every branch exists).
 * Returns { url, issues, comments, pulls, requests, violations, failNext(match, response),
 * setChecks(sha, list), onCheckRuns(fn), close() }.
 */
export async function startGithubStub({ token, repo = "acme/shop", searchLagMs = 0, branchExists = () => true }) {
  const [owner] = repo.split("/");
  const issues = []; // { number, title, body, labels: [{name}], state, state_reason, assignees, created_ms, html_url }
  const comments = []; // { id, issue_number, body, created_at }
  const pulls = []; // { number, title, body, head: {ref, label}, base: {ref}, draft, state, html_url }
  const timeline = []; // issue timeline events: { issue_number, event, created_at, source: {type, issue} }
  const requests = []; // { method, path, headers, body }
  const violations = [];
  const failures = []; // { match: {method, path: RegExp}, response: {status, headers, body}, times }
  let nextNumber = 1;
  let nextCommentId = 1000;
  const checks = new Map(); // sha → [{name, status, conclusion, title?, summary?}]
  const polls = new Map(); // sha → polls so far
  let checksOf = () => [{ name: "ci", status: "completed", conclusion: "success" }];
  const checkIds = new Map(); // `${sha} ${name}` → id (a check run keeps its id while it runs)

  // A check run as "List check runs for a Git reference" documents it.
  const checkRunJson = (sha, c) => {
    const key = `${sha} ${c.name}`;
    if (!checkIds.has(key)) checkIds.set(key, 7000 + checkIds.size);
    const id = checkIds.get(key);
    const done = c.status === "completed";
    return {
      id, head_sha: sha, node_id: `CR_${id}`, external_id: "", name: c.name,
      url: `https://api.github.com/repos/${repo}/check-runs/${id}`,
      html_url: `https://github.com/${repo}/runs/${id}`,
      details_url: `https://github.com/${repo}/actions/runs/${id}/job/${id}`,
      status: c.status, conclusion: done ? (c.conclusion ?? null) : null,
      started_at: new Date().toISOString(), completed_at: done ? new Date().toISOString() : null,
      output: { title: c.title ?? null, summary: c.summary ?? null, text: null, annotations_count: 0, annotations_url: `https://api.github.com/repos/${repo}/check-runs/${id}/annotations` },
      check_suite: { id: 1 }, app: { id: 15368, slug: "github-actions", name: "GitHub Actions" }, pull_requests: [],
    };
  };

  const issueJson = (i) => ({
    number: i.number,
    title: i.title,
    body: i.body,
    state: i.state,
    state_reason: i.state_reason ?? null,
    labels: i.labels,
    assignees: i.assignees.map((login) => ({ login, type: login.endsWith("[bot]") ? "Bot" : "User" })),
    html_url: i.html_url,
    url: `https://api.github.com/repos/${repo}/issues/${i.number}`,
    created_at: new Date(i.created_ms).toISOString(),
  });

  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const raw = Buffer.concat(chunks).toString("utf8");
    const url = new URL(req.url, "http://stub");
    const path = url.pathname;
    const entry = { method: req.method, path, query: Object.fromEntries(url.searchParams), headers: req.headers, body: null, at: Date.now() };
    requests.push(entry);
    let delayMs = 0; // > 0: the response is held that long (the client has given up by then)

    const send = (status, body, extraHeaders = {}) => {
      entry.status = status;
      entry.retryAfter = extraHeaders["retry-after"];
      entry.rateLimitReset = extraHeaders["x-ratelimit-remaining"] === "0" ? extraHeaders["x-ratelimit-reset"] : undefined;
      if (delayMs > 0) {
        const held = delayMs;
        delayMs = 0;
        entry.lostResponse = true;
        setTimeout(() => {
          try {
            send(status, body, extraHeaders);
          } catch {
            // the client closed the connection: the response is lost, as intended
          }
        }, held);
        return;
      }
      res.writeHead(status, {
        "content-type": "application/json; charset=utf-8",
        "x-ratelimit-limit": "5000",
        "x-ratelimit-remaining": "4999",
        "x-ratelimit-reset": String(Math.floor(Date.now() / 1000) + 3600),
        "x-ratelimit-used": "1",
        "x-ratelimit-resource": path.startsWith("/search") ? "search" : "core",
        "x-github-api-version-selected": API_VERSION,
        ...extraHeaders,
      });
      res.end(body === undefined ? "" : JSON.stringify(body));
    };

    // Headers, as GitHub checks or documents them.
    if (!req.headers["user-agent"]) return send(403, { message: "Request forbidden by administrative rules. Please make sure your request has a User-Agent header" });
    if (req.headers.authorization !== `Bearer ${token}`) return send(401, { message: "Bad credentials", status: "401" });
    if (req.headers["x-github-api-version"] !== API_VERSION) violations.push(`${req.method} ${path}: X-GitHub-Api-Version ${req.headers["x-github-api-version"]}`);
    if (req.headers.accept !== "application/vnd.github+json") violations.push(`${req.method} ${path}: Accept ${req.headers.accept}`);

    let body = null;
    if (raw) {
      try {
        body = JSON.parse(raw);
      } catch {
        return send(400, { message: "Problems parsing JSON" });
      }
      if (!String(req.headers["content-type"] ?? "").startsWith("application/json")) violations.push(`${req.method} ${path}: content-type ${req.headers["content-type"]}`);
    }
    entry.body = body;

    const queued = failures.find((f) => f.times > 0 && f.match.method === req.method && f.match.path.test(path));
    if (queued) {
      queued.times -= 1;
      entry.injected = true;
      if (queued.response.process) {
        delayMs = queued.response.delayMs ?? 15_000; // applied below, answered too late
      } else {
        if (queued.response.hangMs) delayMs = queued.response.hangMs;
        return send(queued.response.status ?? 504, queued.response.body ?? { message: "injected" }, queued.response.headers ?? {});
      }
    }

    const invalid = (field) => send(422, { message: "Validation Failed", errors: [{ resource: "Issue", field, code: "invalid" }] });
    const repoPrefix = `/repos/${repo}`;
    let m;

    if (req.method === "GET" && path === "/search/issues") {
      const q = url.searchParams.get("q") ?? "";
      if (!q.includes(`repo:${repo}`)) return send(422, { message: "Validation Failed" });
      const phrase = /"([^"]+)"/.exec(q)?.[1] ?? "";
      const visible = issues.filter((i) => Date.now() - i.created_ms >= searchLagMs);
      const items = visible.filter((i) => phrase && (i.body ?? "").includes(phrase)).map(issueJson);
      return send(200, { total_count: items.length, incomplete_results: false, items });
    }
    if (req.method === "GET" && path === `${repoPrefix}/issues`) {
      const labels = (url.searchParams.get("labels") ?? "").split(",").filter(Boolean);
      const state = url.searchParams.get("state") ?? "open";
      let list = issues.filter((i) => (state === "all" || i.state === state) && labels.every((l) => i.labels.some((x) => x.name === l)));
      list = list.sort((a, b) => (url.searchParams.get("direction") === "asc" ? a.number - b.number : b.number - a.number));
      return send(200, list.slice(0, Number(url.searchParams.get("per_page") ?? 30)).map(issueJson));
    }
    if (req.method === "POST" && path === `${repoPrefix}/issues`) {
      if (typeof body?.title !== "string" || !body.title) return invalid("title");
      if (body.body !== undefined && typeof body.body !== "string") return invalid("body");
      if (body.labels !== undefined && !(Array.isArray(body.labels) && body.labels.every((l) => typeof l === "string"))) return invalid("labels");
      const number = nextNumber++;
      const issue = {
        number,
        title: body.title,
        body: body.body ?? "",
        labels: (body.labels ?? []).map((name) => ({ name })),
        state: "open",
        assignees: [],
        created_ms: Date.now(),
        html_url: `https://github.com/${repo}/issues/${number}`,
      };
      issues.push(issue);
      return send(201, issueJson(issue), { location: issueJson(issue).url });
    }
    if ((m = new RegExp(`^${repoPrefix}/issues/(\\d+)(/comments|/assignees|/timeline)?$`).exec(path))) {
      const issue = issues.find((i) => i.number === Number(m[1]));
      if (!issue) return send(404, { message: "Not Found" });
      if (req.method === "GET" && m[2] === "/timeline") {
        const list = timeline.filter((e) => e.issue_number === issue.number).map(({ issue_number, ...e }) => e);
        return send(200, list.slice(0, Number(url.searchParams.get("per_page") ?? 30)));
      }
      if (req.method === "GET" && m[2] === "/comments") {
        const list = comments.filter((c) => c.issue_number === issue.number);
        return send(200, list.slice(0, Number(url.searchParams.get("per_page") ?? 30)));
      }
      if (req.method === "POST" && m[2] === "/comments") {
        if (typeof body?.body !== "string" || !body.body) return invalid("body");
        const c = { id: nextCommentId++, issue_number: issue.number, body: body.body, created_at: new Date().toISOString() };
        comments.push(c);
        return send(201, { ...c, html_url: `${issue.html_url}#issuecomment-${c.id}` });
      }
      if (req.method === "POST" && m[2] === "/assignees") {
        if (!Array.isArray(body?.assignees)) return invalid("assignees");
        issue.assignees.push(...body.assignees);
        issue.agent_assignment = body.agent_assignment ?? null;
        return send(201, issueJson(issue));
      }
      if (req.method === "PATCH" && !m[2]) {
        if (body.state !== undefined && !["open", "closed"].includes(body.state)) return invalid("state");
        if (body.state) issue.state = body.state;
        if (body.state_reason !== undefined) issue.state_reason = body.state_reason;
        return send(200, issueJson(issue));
      }
    }
    if (req.method === "GET" && (m = new RegExp(`^${repoPrefix}/commits/([^/]+)/check-runs$`).exec(path))) {
      const sha = decodeURIComponent(m[1]);
      if (!/^[0-9a-f]{40}$/.test(sha)) return send(422, { message: `No commit found for SHA: ${sha}` });
      const poll = (polls.get(sha) ?? 0) + 1;
      polls.set(sha, poll);
      const list = (checks.get(sha) ?? checksOf(sha, poll)).map((c) => checkRunJson(sha, c));
      const perPage = Math.min(Number(url.searchParams.get("per_page") ?? 30), 100);
      return send(200, { total_count: list.length, check_runs: list.slice(0, perPage) });
    }
    if (req.method === "GET" && (m = new RegExp(`^${repoPrefix}/pulls/(\\d+)$`).exec(path))) {
      const pr = pulls.find((p) => p.number === Number(m[1]));
      return pr ? send(200, pr) : send(404, { message: "Not Found" });
    }
    if (req.method === "GET" && path === `${repoPrefix}/pulls`) {
      const head = url.searchParams.get("head");
      const state = url.searchParams.get("state") ?? "open";
      return send(200, pulls.filter((p) => (!head || p.head.label === head) && (state === "all" || p.state === state)));
    }
    if (req.method === "POST" && path === `${repoPrefix}/pulls`) {
      for (const f of ["title", "head", "base"]) if (typeof body?.[f] !== "string" || !body[f]) return invalid(f);
      if (!branchExists(body.head)) return send(422, { message: "Validation Failed", errors: [{ resource: "PullRequest", field: "head", code: "invalid" }] });
      if (pulls.some((p) => p.head.ref === body.head && p.state === "open")) return send(422, { message: `A pull request already exists for ${owner}:${body.head}.` });
      const number = nextNumber++;
      const pr = {
        number,
        title: body.title,
        body: body.body ?? "",
        head: { ref: body.head, label: `${owner}:${body.head}` },
        base: { ref: body.base },
        draft: body.draft === true,
        state: "open",
        merged: false,
        merge_commit_sha: null,
        merged_at: null,
        user: { login: "selfheal-bot", type: "Bot" },
        html_url: `https://github.com/${repo}/pull/${number}`,
      };
      pulls.push(pr);
      return send(201, pr);
    }
    return send(404, { message: "Not Found", documentation_url: "https://docs.github.com/rest" });
  });

  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    issues,
    comments,
    pulls,
    requests,
    violations,
    /**
     * Queues `response` for the next `times` requests matching {method, path: RegExp}:
     * {status, headers, body} answers at once; {status, hangMs} answers only after hangMs (nothing
     * done); {process: true, delayMs} does the request and answers only after delayMs.
     */
    failNext(match, response, times = 1) {
      failures.push({ match, response, times });
    },
    timeline,
    /** Sets commit `sha`'s check runs: [{name, status, conclusion?, title?, summary?}]. */
    setChecks(sha, list) {
      checks.set(sha, list);
    },
    /** Check runs of commits nobody set: `fn(sha, poll)` (poll: 1, 2, … per commit) → a list. */
    onCheckRuns(fn) {
      checksOf = fn;
    },
    /**
     * What the Copilot coding agent does on an assigned issue: opens a draft PR from its own branch
     * and the issue's timeline gets a `cross-referenced` event whose `source.issue` is the PR (an
     * issue object with a `pull_request` member), as "List timeline events for an issue" documents.
     */
    openPullFromIssue(issueNumber, { head, login = "Copilot" }) {
      const number = nextNumber++;
      const pr = {
        number, title: `Fix for #${issueNumber}`, body: `Fixes #${issueNumber}`,
        head: { ref: head, label: `${owner}:${head}` }, base: { ref: "main" }, draft: true, state: "open",
        merged: false, merge_commit_sha: null, merged_at: null, user: { login, type: "Bot" },
        html_url: `https://github.com/${repo}/pull/${number}`,
      };
      pulls.push(pr);
      timeline.push({
        issue_number: issueNumber, event: "cross-referenced", created_at: new Date().toISOString(),
        actor: { login, type: "Bot" },
        source: { type: "issue", issue: {
          number, title: pr.title, state: "open", html_url: pr.html_url, user: { login, type: "Bot" },
          pull_request: { url: `https://api.github.com/repos/${repo}/pulls/${number}`, html_url: pr.html_url, merged_at: null },
        } },
      });
      return pr;
    },
    /** A person merges PR `number` in GitHub (state closed, merged, with its merge commit). */
    mergePull(number, sha) {
      const pr = pulls.find((p) => p.number === number);
      Object.assign(pr, { state: "closed", merged: true, merge_commit_sha: sha, merged_at: new Date().toISOString() });
      return pr;
    },
    /** A person closes PR `number` without merging it. */
    closePull(number) {
      const pr = pulls.find((p) => p.number === number);
      Object.assign(pr, { state: "closed", merged: false });
      return pr;
    },
    close: () => new Promise((r) => server.close(r)),
  };
}
