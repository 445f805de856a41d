// Prints the opt-level table of scripts/bench-workerd.sh --opt-levels from its results folder:
// sizes.tsv (level, Worker, raw bytes, gzip -9 bytes) and pass<N>.json (bench.mjs, every level
// measured side by side). Passes are pooled: median of their medians and IQR bounds, widest range.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

const [dir, ...levels] = process.argv.slice(2);
const sizes = {};
for (const line of readFileSync(join(dir, "sizes.tsv"), "utf8").trim().split("\n")) {
  const [level, worker, raw, gz] = line.split("\t");
  (sizes[level] ??= {})[worker] = { raw: Number(raw), gz: Number(gz) };
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const pooled = (runs, pick) => {
  const st = runs.map(pick).filter(Boolean);
  if (!st.length) return "n/a";
  return { median: median(st.map((s) => s.median)), min: Math.min(...st.map((s) => s.min)), max: Math.max(...st.map((s) => s.max)), p25: median(st.map((s) => s.p25)), p75: median(st.map((s) => s.p75)) };
};
const cell = (s, d) => (typeof s === "string" ? s : `${s.median.toFixed(d)} (IQR ${s.p25.toFixed(d)}–${s.p75.toFixed(d)}; ${s.min.toFixed(d)}–${s.max.toFixed(d)})`);
const kb = (w) => (w ? `${w.raw} / ${w.gz}` : "n/a");

console.log(`\n| opt-level | tail-worker raw / gzip B | scheduled raw / gzip B | agent-runner raw / gzip B | tail warm ms/item, D1 stubbed | warm vs ${levels[0]}, same round | tail warm ms/item, local D1 | fresh: startup ms | fresh: 1st invocation ms, 100 items (all threads) | same, main thread | 1st invocation, 1 item, main thread | passes |`);
console.log("|---|---|---|---|---|---|---|---|---|---|---|---|");
const runs = readdirSync(dir)
  .filter((f) => /^pass\d+\.json$/.test(f))
  .map((f) => JSON.parse(readFileSync(join(dir, f), "utf8")));
for (const l of levels) {
  const s = sizes[l] ?? {};
  console.log(
    `| ${l} | ${kb(s["tail-worker"])} | ${kb(s.scheduled)} | ${kb(s["agent-runner"])} | ${cell(pooled(runs, (r) => r.warm[`NOD1_${l}`]), 4)} | ${l === levels[0] ? "1" : cell(pooled(runs, (r) => r.warm[`ratio_${l}`]), 2)} | ${cell(pooled(runs, (r) => r.warm[`TAIL_${l}`]), 4)} | ${cell(pooled(runs, (r) => r.cold?.startup[l]), 1)} | ${cell(pooled(runs, (r) => r.cold?.first[`NOD1_${l}`]), 1)} | ${cell(pooled(runs, (r) => r.cold?.firstMain[`NOD1_${l}`]), 1)} | ${cell(pooled(runs, (r) => r.cold?.firstMain[`NOD1_one_${l}`]), 1)} | ${runs.length} |`,
  );
}
