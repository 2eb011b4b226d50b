/**
 * `pnpm bench handshake --calls`: the calls each connection makes into Node's sockets, streams, events and
 * timers, counted (calls-preload.mjs, preloaded into both servers), for the Neuron as `pnpm start` runs it and the
 * bare baseline (bundled, run by plain node), after the same closed loop of complete handshakes. Counts, not
 * times: they do not move with the machine's load, and they say whether the Neuron asks more of `ws` and Node per
 * connection than the bare server does, or the same calls cost it more (BENCHMARKS.md, issue 11). The Neuron's
 * `upgrade` event shows as 0: the HandshakeServer takes it where the Node server emits it (its own `emit`).
 *
 * Environment: BENCH_HANDSHAKES (4000 per server), BENCH_CONCURRENCY (64), BENCH_PATIENTS (2000).
 */
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { build } from "../../scripts/build.mjs"
import { PATH, type RoundResult } from "./common.js"
import { ask, dataDir, fmt, line, machine, start, stop } from "./harness.js"
import { probe, startProduct, stopProduct } from "./product.js"

const HANDSHAKES = Number(process.env.BENCH_HANDSHAKES ?? 4_000)
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 64)
const PATIENTS = Number(process.env.BENCH_PATIENTS ?? 2_000)
const preload = ["--import", Path.join(Path.dirname(fileURLToPath(import.meta.url)), "calls-preload.mjs")]

type Counts = Record<string, number>

/** Runs the mode and prints its table. */
export const calls = async () => {
  console.log(`machine: ${machine()}`)
  const bundles = await build({
    entryPoints: { "server-baseline": "bench/handshake/server-baseline.ts" },
    outdir: "dist/bench"
  })
  const neuron = await startProduct(Path.join(dataDir, "product"), {}, undefined, preload)
  const baseline = await start(
    Path.join(bundles, "server-baseline.js"),
    [Path.join(dataDir, "baseline.db"), "10000"],
    { bundled: true, nodeFlags: preload }
  )
  const load = (await start("load.ts", [String(PATIENTS)])).child

  const measure = async (url: string, child: Parameters<typeof probe>[0]) => {
    const before = (await probe<{ counts: Counts }>(child, { cmd: "calls" })).counts
    const result = await ask<RoundResult>(load, { cmd: "run", url, count: HANDSHAKES, concurrency: CONCURRENCY })
    const after = (await probe<{ counts: Counts }>(child, { cmd: "calls" })).counts
    if (result.errors > 0) throw new Error(`${result.errors} handshakes failed against ${url}: ${result.firstError}`)
    const connections = (after["emit Server.connection"] ?? 0) - (before["emit Server.connection"] ?? 0)
    const per: Counts = {}
    for (const key of Object.keys(after)) per[key] = (after[key]! - (before[key] ?? 0)) / Math.max(1, connections)
    return { per, ok: result.ok }
  }
  const n = await measure(`ws://127.0.0.1:${neuron.port}${PATH}`, neuron.child)
  const b = await measure(`ws://127.0.0.1:${baseline.port}${PATH}`, baseline.child)
  await stop(load)
  await stop(baseline.child)
  await stopProduct(neuron)

  console.log(
    `\n## Calls into Node and ws per connection (${fmt(n.ok)} and ${fmt(b.ok)} complete handshakes, ` +
      `concurrency ${CONCURRENCY}, ${PATIENTS} patients; counted, not timed)`
  )
  line(["call", "neuron (`pnpm start`)", "baseline (ws + better-sqlite3)", "difference"])
  line(["---", "---", "---", "---"])
  const keys = [...new Set([...Object.keys(n.per), ...Object.keys(b.per)])]
    .map((key) => ({ key, neuron: n.per[key] ?? 0, baseline: b.per[key] ?? 0 }))
    .filter((row) => row.neuron >= 0.05 || row.baseline >= 0.05)
    .sort((x, y) => Math.abs(y.neuron - y.baseline) - Math.abs(x.neuron - x.baseline) || y.neuron - x.neuron)
  let same = 0
  for (const row of keys) {
    const difference = row.neuron - row.baseline
    if (Math.abs(difference) < 0.05) same++
    line([
      `\`${row.key}\``,
      fmt(row.neuron, 2),
      fmt(row.baseline, 2),
      Math.abs(difference) < 0.005 ? "0" : fmt(difference, 2)
    ])
  }
  const total = (per: Counts) => Object.values(per).reduce((s, v) => s + v, 0)
  console.log(
    `\n${same} of ${keys.length} kinds of call made equally often; all counted calls per connection: neuron ${
      fmt(total(n.per), 1)
    }, baseline ${fmt(total(b.per), 1)}`
  )
}
