/**
 * `pnpm bench herd`: 10 000 simulated Neurons lose the registry at the same moment and regain it at the same
 * moment. The registry runs as the product runs it (`node dist/axon.js`, what `pnpm start:axon` runs) over a data
 * folder seeded with their registrations; the Neurons run in a process of their own (neurons.ts). The registry is
 * killed (SIGKILL), every Neuron's beat fails at once, and after the outage the registry starts again on the same
 * port and data. Measured while they come back, with the Neuron's own backoff (full jitter) and with the same
 * schedule without jitter: the registry's error rate, p99, the largest number of requests in any one second, and
 * how long until every Neuron is back. The registry's capacity (heartbeats/s at saturation, fresh connections as
 * in the herd) is measured in the same run, before and after the herds.
 *
 * Environment: BENCH_NEURONS (10000), BENCH_OUTAGE_S (10), BENCH_WINDOW_S after the return (60),
 * BENCH_CAPACITY_S per capacity round (5), BENCH_SEED (1). Loopback only; every phase bounded in time.
 */
import { type ChildProcess, execFileSync, fork, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { makeRegistrations, seedRegistry, setAllLastBeats } from "../axon-component/seed.js"

const NEURONS = Number(process.env.BENCH_NEURONS ?? 10_000)
const OUTAGE_S = Number(process.env.BENCH_OUTAGE_S ?? 10)
const WINDOW_S = Number(process.env.BENCH_WINDOW_S ?? 60)
const CAPACITY_S = Number(process.env.BENCH_CAPACITY_S ?? 5)
const SEED = Number(process.env.BENCH_SEED ?? 1)
const CAPACITY_WORKERS = 64
/** A hard limit on the whole run: a phase that hangs ends the bench instead of the machine's afternoon. */
const HARD_LIMIT_MS = (4 * (OUTAGE_S + WINDOW_S) + 4 * CAPACITY_S + 240) * 1000

const here = Path.dirname(fileURLToPath(import.meta.url))
const root = Path.resolve(here, "../..")
const base = Fs.existsSync("/dev/shm") ? "/dev/shm" : Os.tmpdir()
const dataDir = Fs.mkdtempSync(Path.join(base, "herd-bench-"))
const children = new Set<ChildProcess>()

const fmt = (n: number, digits = 0) => n.toLocaleString("en-US", { maximumFractionDigits: digits })
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = Net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as Net.AddressInfo
      server.close(() => resolve(port))
    })
  })

/** Starts `node dist/axon.js` on `port` over the seeded folder and resolves once `/health` answers. */
const startRegistry = async (port: number) => {
  const spawnedAt = Date.now()
  const child = spawn(process.execPath, ["--enable-source-maps", "dist/axon.js"], {
    cwd: root,
    env: { PATH: process.env.PATH ?? "", AXON_HOST: "127.0.0.1", AXON_PORT: String(port), AXON_DATA_DIR: dataDir },
    stdio: ["ignore", "ignore", "inherit"]
  })
  children.add(child)
  child.once("exit", () => children.delete(child))
  for (let i = 0; i < 1500; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(1000) }).then(
      (r) => r.ok,
      () => false
    )
    if (ok) return { child, spawnedAt, healthyAt: Date.now() }
    await sleep(20)
  }
  throw new Error("the registry did not answer /health within 30 s")
}

const kill = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once("exit", () => resolve())
    child.kill("SIGKILL")
  })

const ask = <A>(child: ChildProcess, message: object, key?: string): Promise<A> =>
  new Promise((resolve) => {
    const listener = (answer: any) => {
      if (key !== undefined && !(key in answer)) return
      child.off("message", listener)
      resolve(key === undefined ? answer : answer[key])
    }
    child.on("message", listener)
    child.send(message)
  })

interface Capacity {
  readonly perSecond: number
  readonly errors: number
  readonly p99: number
}

interface Herd {
  readonly outageMs: number
  readonly attemptsDuringOutage: number
  readonly requests: number
  readonly errorCount: number
  readonly errors: Record<string, number>
  readonly p50: number
  readonly p99: number
  readonly max: number
  readonly peak: number
  readonly peakSecond: number
  readonly perSecond: ReadonlyArray<number>
  readonly recovered: number
  readonly allBackAfterMs: number
}

const hardLimit = setTimeout(() => {
  console.error(`herd bench: over its hard limit of ${HARD_LIMIT_MS / 1000} s, stopping`)
  for (const child of children) child.kill("SIGKILL")
  process.exit(1)
}, HARD_LIMIT_MS)

try {
  execFileSync(process.execPath, ["scripts/build.mjs"], { cwd: root, stdio: "inherit" })
  const t = Date.now()
  const tokensFile = Path.join(dataDir, "bench-tokens.json")
  const rows = makeRegistrations(NEURONS, tokensFile)
  await seedRegistry(dataDir, rows, Date.now())
  console.log(`seeded ${fmt(NEURONS)} registrations in ${fmt((Date.now() - t) / 1000, 1)} s, data in ${dataDir}`)
  const port = await freePort()
  let registry = await startRegistry(port)
  const neurons = fork(Path.join(here, "neurons.ts"), [tokensFile], {
    execArgv: ["--import", "tsx"],
    stdio: "inherit"
  })
  children.add(neurons)
  await new Promise((resolve) => neurons.once("message", resolve))

  const measureCapacity = async (label: string) => {
    await ask<Capacity>(neurons, { cmd: "capacity", port, seconds: 1, workers: CAPACITY_WORKERS }) // warm-up
    const c = await ask<Capacity>(neurons, { cmd: "capacity", port, seconds: CAPACITY_S, workers: CAPACITY_WORKERS })
    console.log(
      `capacity ${label}: ${fmt(c.perSecond)} heartbeats/s at saturation (${CAPACITY_WORKERS} at a time, a fresh ` +
        `connection each), p99 ${fmt(c.p99, 1)} ms, errors ${c.errors}`
    )
    return c
  }

  const runHerd = async (jitter: boolean): Promise<Herd> => {
    const name = jitter ? "full jitter (the Neuron's backoff)" : "no jitter (same schedule, jitter removed)"
    // Every registration fresh, so no sweep marks a Neuron down while the bench runs: each comes back on the fast
    // path, as after a short outage.
    await kill(registry.child)
    setAllLastBeats(dataDir, Date.now())
    const done = ask<Herd>(
      neurons,
      { cmd: "herd", port, jitter, seed: SEED * 1_000_000, windowMs: WINDOW_S * 1000 },
      "result"
    )
    await sleep(OUTAGE_S * 1000)
    registry = await startRegistry(port)
    neurons.send({ cmd: "back", at: registry.healthyAt })
    const herd = await done
    console.log(
      `${name}: outage ${fmt(herd.outageMs / 1000, 1)} s (${fmt(herd.attemptsDuringOutage)} beats refused meanwhile, ` +
        `registry up ${fmt((registry.healthyAt - registry.spawnedAt) / 1000, 2)} s after its start); then ` +
        `${fmt(herd.requests)} requests, ${fmt(herd.errorCount)} errors ${JSON.stringify(herd.errors)}, ` +
        `p50 ${fmt(herd.p50)} ms, p99 ${fmt(herd.p99)} ms, max ${fmt(herd.max)} ms, ` +
        `peak ${fmt(herd.peak)} requests in one second (second ${herd.peakSecond}), ` +
        `${fmt(herd.recovered)} of ${fmt(NEURONS)} back, the last ${
          fmt(herd.allBackAfterMs / 1000, 1)
        } s after the return`
    )
    console.log(`  requests per second after the return: ${herd.perSecond.join(" ")}`)
    return herd
  }

  // Alternated, as the machine is shared: capacity, herd without jitter, herd with jitter, capacity again.
  const capacityBefore = await measureCapacity("before")
  const plain = await runHerd(false)
  const jittered = await runHerd(true)
  const capacityAfter = await measureCapacity("after")
  const capacity = Math.min(capacityBefore.perSecond, capacityAfter.perSecond)

  const errorRate = (h: Herd) => `${fmt((100 * h.errorCount) / Math.max(1, h.requests), 2)} %`
  const row = (label: string, h: Herd) =>
    `| ${label} | ${fmt(h.peak)} | ${errorRate(h)} (${fmt(h.errorCount)} of ${fmt(h.requests)}) | ${fmt(h.p99)} | ${
      fmt(h.recovered)
    } | ${fmt(h.allBackAfterMs / 1000, 1)} |`
  console.log(
    `\n${fmt(NEURONS)} Neurons, outage ${OUTAGE_S} s, window ${WINDOW_S} s after the return, registry = node ` +
      `dist/axon.js, data on ${base}, ${Os.cpus().length} CPUs, load ${Os.loadavg().map((x) => x.toFixed(1)).join(" ")}`
  )
  console.log(
    `registry capacity: ${fmt(capacityBefore.perSecond)} / ${
      fmt(capacityAfter.perSecond)
    } heartbeats/s (before / after the herds)\n`
  )
  console.log(
    "| backoff | peak requests in one second | error rate after the return | p99 (ms) | Neurons back | last back after (s) |"
  )
  console.log("| --- | --- | --- | --- | --- | --- |")
  console.log(row("no jitter", plain))
  console.log(row("full jitter (the Neuron's)", jittered))
  console.log(
    `\njitter keeps the peak under the registry's capacity: ${fmt(jittered.peak)} < ${fmt(capacity)}: ${
      jittered.peak < capacity ? "yes" : "NO"
    }; without jitter: ${fmt(plain.peak)} (${fmt(plain.peak / capacity, 1)}× capacity)`
  )
  neurons.send({ cmd: "stop" })
} finally {
  clearTimeout(hardLimit)
  for (const child of children) await kill(child)
  Fs.rmSync(dataDir, { recursive: true, force: true })
}
