/**
 * The `--hold` mode of `pnpm bench handshake`: connections left in the auth step (never sending
 * `handshake.auth`), against the Neuron and the baseline, and their memory. The Neuron is the product as
 * `pnpm start` runs it (product.ts: dist/main.js with the embedded registry, its log in a file); the baseline a
 * child process run by plain `node` from a bundle (scripts/build.mjs, into dist/bench).
 */
import { execSync } from "node:child_process"
import * as Path from "node:path"
import { build } from "../../scripts/build.mjs"
import { type Memory, PATH } from "./common.js"
import { ask, base, dataDir, fmt, line, machine, mib, start, stop } from "./harness.js"
import { probe, startProduct, stopProduct } from "./product.js"

const HOLD = Number(process.env.BENCH_HOLD ?? 10_000)

/** Runs the hold mode and prints its table. */
export const hold = async () => {
  console.log(`machine: ${machine()}`)
  const limit = execSync("ulimit -n", { shell: "/bin/sh" }).toString().trim()
  console.log(`open-file limit (ulimit -n) of this process and its children: ${limit}`)
  if (limit !== "unlimited" && Number(limit) < HOLD + 256) {
    console.error(
      `${HOLD} connections need ulimit -n ≥ ${HOLD + 256} in both processes: run \`ulimit -n ${HOLD + 1024}\` first`
    )
    process.exitCode = 1
    return
  }
  const AUTH_TIMEOUT_MS = 10 * 60_000
  const built = Date.now()
  const bundles = await build({
    entryPoints: {
      "server-baseline": "bench/handshake/server-baseline.ts"
    },
    outdir: "dist/bench"
  })
  console.log(`servers bundled into ${bundles} in ${Date.now() - built} ms; run by plain node`)
  const neuron = await startProduct(Path.join(dataDir, "product"), {
    NEURON_AUTH_TIMEOUT_MS: String(AUTH_TIMEOUT_MS),
    NEURON_MAX_CONCURRENT_HANDSHAKES: String(HOLD)
  })
  const baseline = await start(
    Path.join(bundles, "server-baseline.js"),
    [Path.join(dataDir, "baseline.db"), String(AUTH_TIMEOUT_MS)],
    { bundled: true }
  )
  const load = (await start("load.ts", ["1"])).child
  console.log(
    `the Neuron as \`pnpm start\` runs it, log in ${neuron.log}; auth timeout ${
      AUTH_TIMEOUT_MS / 60_000
    } min, maxConcurrentHandshakes ${HOLD}`
  )

  const measure = async (
    name: string,
    url: string,
    mem: (gc: boolean) => Promise<Memory>,
    extra: () => Promise<string>
  ) => {
    const idle = await mem(true)
    const held = await ask<{ opened: number; failed: number; firstError?: string; seconds: number }>(load, {
      cmd: "hold",
      url,
      count: HOLD,
      batch: 500
    })
    await new Promise((resolve) => setTimeout(resolve, 1_000))
    const loaded = await mem(false)
    const collected = await mem(true)
    const note = await extra()
    await ask(load, { cmd: "release" })
    return { name, idle, held, loaded, collected, note }
  }
  const n = await measure(
    "neuron (`pnpm start`)",
    `ws://127.0.0.1:${neuron.port}${PATH}`,
    (collect) => probe<Memory>(neuron.child, { cmd: "memory", gc: collect }),
    async () => {
      const status = await fetch(`http://127.0.0.1:${neuron.port}/v1/status`).then((r) => r.json()) as {
        active_handshakes: ReadonlyArray<{ state: string }>
      }
      const sessions = status.active_handshakes
      return `${fmt(sessions.length)} sessions, ${
        fmt(sessions.filter((s) => s.state === "awaiting_auth").length)
      } awaiting_auth`
    }
  )
  const b = await measure(
    "baseline (ws)",
    `ws://127.0.0.1:${baseline.port}${PATH}`,
    (collect) => ask<Memory>(baseline.child, { cmd: "memory", gc: collect }),
    async () => ""
  )
  await stopProduct(neuron)
  await stop(baseline.child)
  await stop(load)

  const perConnection = (m: typeof n) =>
    `${fmt((m.collected.heapUsed - m.idle.heapUsed) / HOLD / 1024, 1)} KiB heap, ${
      fmt((m.loaded.rss - m.idle.rss) / HOLD / 1024, 1)
    } KiB RSS`
  console.log("")
  console.log(
    `## Consent handshake: ${fmt(HOLD)} connections waiting in the auth step (batches of 500, data on ${base}; ` +
      "the Neuron as `pnpm start` runs it, the baseline bundled under plain node)"
  )
  line(["measure", n.name, b.name])
  line(["---", "---", "---"])
  line([
    "connections opened / failed",
    `${fmt(n.held.opened)} / ${n.held.failed}${n.held.firstError ? ` (${n.held.firstError})` : ""}`,
    `${fmt(b.held.opened)} / ${b.held.failed}`
  ])
  line(["time to open them", `${fmt(n.held.seconds, 1)} s`, `${fmt(b.held.seconds, 1)} s`])
  line(["server state", n.note, ""])
  line(["RSS idle, before (bundle under plain node, modules loaded)", mib(n.idle.rss), mib(b.idle.rss)])
  line(["RSS with them held", mib(n.loaded.rss), mib(b.loaded.rss)])
  line(["RSS with them held, after a full GC", mib(n.collected.rss), mib(b.collected.rss)])
  line([
    "RSS growth for the held connections",
    `${mib(n.loaded.rss - n.idle.rss)} (target < 300 MiB)`,
    mib(b.loaded.rss - b.idle.rss)
  ])
  line([
    "heap used held / after a full GC",
    `${mib(n.loaded.heapUsed)} / ${mib(n.collected.heapUsed)}`,
    `${mib(b.loaded.heapUsed)} / ${mib(b.collected.heapUsed)}`
  ])
  line(["per held connection (heap after GC, RSS, over idle)", perConnection(n), perConnection(b)])
  line(["peak RSS", mib(n.collected.maxRss), mib(b.collected.maxRss)])
  const opened = n.held.opened === HOLD
  console.log(
    `\ntarget: ${fmt(HOLD)} waiting connections < 300 MiB: growth ${
      opened && n.loaded.rss - n.idle.rss < 300 * 1024 * 1024 ? "met" : "NOT met"
    } (${mib(n.loaded.rss - n.idle.rss)}); whole process ${
      opened && n.loaded.rss < 300 * 1024 * 1024 ? "met" : "NOT met"
    } (${mib(n.loaded.rss)})`
  )
}
