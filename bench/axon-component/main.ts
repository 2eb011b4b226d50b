/**
 * `pnpm bench axon`: the Axon registry's heartbeat throughput against a bare node:http + better-sqlite3
 * baseline, in the same run, from a separate load process on loopback; p50/p99 at a paced 2 000/s; the sweep
 * over 100 000 neurons; peak memory. Data lives on /dev/shm when there is one (the work disk is noisy).
 *
 * Environment: BENCH_NEURONS (100000), BENCH_SECONDS per throughput round (5), BENCH_ROUNDS (3),
 * BENCH_PROFILE=<folder> to write a CPU profile of the registry process.
 */
import { type ChildProcess, fork } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { makeRegistrations, seedBaseline, seedRegistry, setAllLastBeats } from "./seed.js"

const NEURONS = Number(process.env.BENCH_NEURONS ?? 100_000)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const MAX_COUNT = 400_000
const PACED_RATE = 2_000
const PACED_SECONDS = 5

const here = Path.dirname(fileURLToPath(import.meta.url))
const base = Fs.existsSync("/dev/shm") ? "/dev/shm" : Os.tmpdir()
const dataDir = Fs.mkdtempSync(Path.join(base, "axon-bench-"))
const children: Array<ChildProcess> = []

const start = (file: string, args: Array<string>): Promise<{ child: ChildProcess; port?: number }> =>
  new Promise((resolve, reject) => {
    const profile = file !== "server-axon.ts" ? [] : [
      ...(process.env.BENCH_PROFILE === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_PROFILE}`]),
      ...(process.env.BENCH_NODE_FLAGS === undefined ? [] : process.env.BENCH_NODE_FLAGS.split(" "))
    ]
    const child = fork(Path.join(here, file), args, { execArgv: ["--import", "tsx", ...profile], stdio: "inherit" })
    children.push(child)
    child.once("message", (message: any) => resolve({ child, port: message.port }))
    child.once("exit", (code) => reject(new Error(`${file} exited with ${code}`)))
  })

const ask = <A>(child: ChildProcess, message: object): Promise<A> =>
  new Promise((resolve) => {
    child.once("message", (answer: any) => resolve(answer))
    child.send(message)
  })

const stop = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    child.removeAllListeners("exit")
    child.once("exit", () => resolve())
    child.send({ cmd: "stop" })
  })

const fmt = (n: number, digits = 0) => n.toLocaleString("en-US", { maximumFractionDigits: digits })
const median = (xs: Array<number>) => {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

try {
  let t = Date.now()
  const tokensFile = Path.join(dataDir, "bench-tokens.json")
  const rows = makeRegistrations(NEURONS, tokensFile)
  await seedRegistry(dataDir, rows, Date.now())
  seedBaseline(dataDir, rows)
  console.log(`seeded ${fmt(NEURONS)} registrations in ${fmt((Date.now() - t) / 1000, 1)} s, data in ${dataDir}`)

  t = Date.now()
  const axon = await start("server-axon.ts", [dataDir])
  console.log(`registry up in ${fmt((Date.now() - t) / 1000, 1)} s (loads the index from SQLite)`)
  const baseline = await start("server-baseline.ts", [dataDir])
  const load = (await start("load.ts", [tokensFile])).child
  const axonUrl = `http://127.0.0.1:${axon.port}`
  const baselineUrl = `http://127.0.0.1:${baseline.port}`

  type Max = { ok: number; errors: number; seconds: number; perSecond: number }
  type Paced = { count: number; errors: number; perSecond: number; p50: number; p99: number; max: number }
  type Cpu = { user: number; system: number }
  // CPU time the server spent per answered heartbeat: unlike the rate, it holds on a busy machine.
  const maxRun = async (server: ChildProcess, url: string, seconds = SECONDS) => {
    const before = await ask<Cpu>(server, { cmd: "cpu" })
    const result = await ask<Max>(load, { cmd: "max", url, seconds, maxCount: MAX_COUNT })
    const after = await ask<Cpu>(server, { cmd: "cpu" })
    const cpuUs = (after.user + after.system - before.user - before.system) / Math.max(1, result.ok)
    const userUs = (after.user - before.user) / Math.max(1, result.ok)
    return { ...result, cpuUs, userUs }
  }

  await maxRun(axon.child, axonUrl, 2) // warm-up: JIT, prepared statements, connections
  await maxRun(baseline.child, baselineUrl, 2)
  const axonRounds: Array<{ cpuUs: number }> = []
  const baselineRounds: Array<{ cpuUs: number }> = []
  const axonRates: Array<number> = []
  const baselineRates: Array<number> = []
  const ratios: Array<number> = []
  for (let round = 1; round <= ROUNDS; round++) {
    const a = await maxRun(axon.child, axonUrl)
    const b = await maxRun(baseline.child, baselineUrl)
    if (a.errors > 0 || b.errors > 0) console.log(`  errors: registry ${a.errors}, baseline ${b.errors}`)
    axonRounds.push(a)
    baselineRounds.push(b)
    axonRates.push(a.perSecond)
    baselineRates.push(b.perSecond)
    ratios.push(a.perSecond / b.perSecond)
    console.log(
      `round ${round}: registry ${fmt(a.perSecond)}/s, baseline ${fmt(b.perSecond)}/s, ratio ${
        fmt(a.perSecond / b.perSecond, 2)
      }; server CPU per heartbeat: registry ${fmt(a.cpuUs)} µs (user ${fmt(a.userUs)}), baseline ${
        fmt(b.cpuUs)
      } µs (user ${fmt(b.userUs)})`
    )
  }
  await ask(axon.child, { cmd: "delay-reset" })
  const axonPaced = await ask<Paced>(load, { cmd: "paced", url: axonUrl, rate: PACED_RATE, seconds: PACED_SECONDS })
  const loopDelay = await ask<{ p99: number; max: number }>(axon.child, { cmd: "delay" })
  await ask(baseline.child, { cmd: "delay-reset" })
  const basePaced = await ask<Paced>(load, {
    cmd: "paced",
    url: baselineUrl,
    rate: PACED_RATE,
    seconds: PACED_SECONDS
  })
  const baseDelay = await ask<{ p99: number; max: number }>(baseline.child, { cmd: "delay" })

  const steady = await ask<{ ms: number; transitions: number }>(axon.child, { cmd: "sweep" })
  const axonRss = await ask<{ maxRssKb: number }>(axon.child, { cmd: "rss" })
  const baseRss = await ask<{ maxRssKb: number }>(baseline.child, { cmd: "rss" })
  await stop(axon.child)
  await stop(baseline.child)
  await stop(load)

  // A mass outage: every neuron silent for 2.5 intervals, so one sweep marks all of them down.
  setAllLastBeats(dataDir, Date.now() - 150_000)
  const outage = await start("server-axon.ts", [dataDir])
  const mass = await ask<{ ms: number; transitions: number }>(outage.child, { cmd: "sweep" })
  await stop(outage.child)

  const ratio = median(ratios)
  const cpu = (xs: Array<{ cpuUs: number }>) => fmt(median(xs.map((x) => x.cpuUs)))
  const table: Array<readonly [string, string, string]> = [
    [
      `heartbeats/s at saturation (median of ${ROUNDS} × ${SECONDS} s)`,
      fmt(median(axonRates)),
      fmt(median(baselineRates))
    ],
    ["ratio registry / baseline (median of the rounds' ratios)", `${fmt(ratio, 2)} (target ≥ 0.5)`, ""],
    ["server CPU per heartbeat (µs, user + system)", cpu(axonRounds), cpu(baselineRounds)],
    [
      `p50 / p99 latency at ${fmt(PACED_RATE)}/s paced (ms)`,
      `${fmt(axonPaced.p50, 2)} / ${fmt(axonPaced.p99, 2)} (target p99 < 10)`,
      `${fmt(basePaced.p50, 2)} / ${fmt(basePaced.p99, 2)}`
    ],
    ["errors while paced", String(axonPaced.errors), String(basePaced.errors)],
    [
      "event-loop delay while paced, p99 / max (ms)",
      `${fmt(loopDelay.p99, 2)} / ${fmt(loopDelay.max, 2)}`,
      `${fmt(baseDelay.p99, 2)} / ${fmt(baseDelay.max, 2)}`
    ],
    [`sweep over ${fmt(NEURONS)} neurons, steady (ms)`, `${fmt(steady.ms, 1)} (${steady.transitions} transitions)`, ""],
    [
      `sweep, mass outage: all ${fmt(NEURONS)} go down at once (ms)`,
      `${fmt(mass.ms, 1)} (${fmt(mass.transitions)} transitions)`,
      ""
    ],
    ["peak RSS (MiB)", fmt(axonRss.maxRssKb / 1024), fmt(baseRss.maxRssKb / 1024)]
  ]
  console.log(
    `\n${fmt(NEURONS)} neurons, 64 connections, data on ${base}, ${Os.cpus().length} CPUs, load ${
      Os.loadavg().map((x) => x.toFixed(1)).join(" ")
    }`
  )
  console.log("| measure | registry | baseline (node:http + better-sqlite3) |")
  console.log("| --- | --- | --- |")
  for (const [measure, registry, baselineValue] of table) console.log(`| ${measure} | ${registry} | ${baselineValue} |`)
  const check = (ok: boolean) => (ok ? "met" : "NOT met")
  console.log(
    `\ntargets: ratio ${fmt(ratio, 2)} ≥ 0.5 ${check(ratio >= 0.5)}; p99 ${fmt(axonPaced.p99, 1)} ms < 10 ms ${
      check(axonPaced.p99 < 10)
    } (baseline's p99 in the same run: ${fmt(basePaced.p99, 1)} ms); steady sweep ${fmt(steady.ms, 1)} ms < 100 ms ${
      check(steady.ms < 100)
    }`
  )
} finally {
  for (const child of children) if (child.exitCode === null) child.kill()
  Fs.rmSync(dataDir, { recursive: true, force: true })
}
