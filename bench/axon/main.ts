/**
 * `pnpm bench axon [--store sqlite|pg|both] [--instances 1,2,3]`: the Axon registry as `pnpm start:axon` runs it,
 * against a bare node:http server doing the same work on the same schema, alternately in the same run:
 *
 * - registrations per second (closed loop, 64 connections, fresh NPIs), registry / bare, round by round;
 * - heartbeats at a fixed offered rate (paced, below saturation): the rate achieved, p50 and p99 latency;
 *
 * for one SQLite instance and for 1, 2, 3 instances on one PostgreSQL (a throwaway PostgreSQL 15 server from
 * `test/support/postgresServer.ts`; with N instances the bare baseline runs N processes too, and the load is
 * spread round robin, as a load balancer would); then the sweep over 100 000 neurons on PostgreSQL (`sweep.ts`).
 *
 * Flags: --rate (heartbeats/s offered, 500), --seconds per paced round (5), --rounds (3), --registrations per
 * round (2000), --neurons for the sweep (100000), --no-sweep, --profile <dir> (CPU profiles of the registry).
 */
import { type ChildProcess, fork } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { parseArgs } from "node:util"
import { build } from "../../scripts/build.mjs"
import { createDatabase, startPostgresServer } from "../../test/support/postgresServer.js"
import {
  cpuMs,
  killAll,
  migratePg,
  migrateSqlite,
  root,
  type Server,
  startBare,
  startRegistry,
  stop
} from "./processes.js"
import { measureSweep } from "./sweep.js"

const { values: flags } = parseArgs({
  options: {
    store: { type: "string", default: "both" },
    instances: { type: "string", default: "1,2,3" },
    rate: { type: "string", default: "500" },
    seconds: { type: "string", default: "5" },
    rounds: { type: "string", default: "3" },
    registrations: { type: "string", default: "2000" },
    neurons: { type: "string", default: "100000" },
    "no-sweep": { type: "boolean", default: false },
    profile: { type: "string" }
  }
})
const stores = flags.store === "both" ? ["sqlite", "pg"] : [flags.store!]
if (!stores.every((s) => s === "sqlite" || s === "pg")) throw new Error("--store must be sqlite, pg or both")
const instanceCounts = flags.instances!.split(",").map(Number)
const RATE = Number(flags.rate)
const SECONDS = Number(flags.seconds)
const ROUNDS = Number(flags.rounds)
const REGISTRATIONS = Number(flags.registrations)

const base = Fs.existsSync("/dev/shm") ? "/dev/shm" : Os.tmpdir()
const work = Fs.mkdtempSync(Path.join(base, "axon-product-bench-"))
const fmt = (n: number, digits = 0) => n.toLocaleString("en-US", { maximumFractionDigits: digits })
const median = (xs: ReadonlyArray<number>) => {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

const load: ChildProcess = fork(Path.join(root, "bench/axon/load.ts"), [], { execArgv: ["--import", "tsx"] })
await new Promise((resolve) => load.once("message", resolve))
const ask = <A>(message: object): Promise<A> =>
  new Promise((resolve) => {
    load.once("message", (answer: any) => resolve(answer))
    load.send(message)
  })

type Registered = { ok: number; errors: number; seconds: number; perSecond: number; loadCpuUs: number }
type Paced = { count: number; errors: number; perSecond: number; p50: number; p99: number; max: number }

/** One side's figures: registrations/s and server CPU µs per registration by round, paced heartbeat rounds. */
interface Side {
  readonly reg: Array<number>
  readonly cpu: Array<number>
  readonly beats: Array<Paced>
}

/** One configuration's figures. */
interface Figures {
  readonly label: string
  readonly registry: Side
  readonly bare: Side
  readonly ratios: Array<number>
  errors: number
}

const run = async (store: "sqlite" | "pg", instances: number, pgUrl?: () => Promise<string>): Promise<Figures> => {
  const label = store === "sqlite"
    ? "SQLite, 1 instance"
    : `PostgreSQL, ${instances} instance${instances > 1 ? "s" : ""}`
  const dir = Fs.mkdtempSync(Path.join(work, `${store}-${instances}-`))
  let registryServers: Array<Server>
  let bareServers: Array<Server>
  if (store === "sqlite") {
    registryServers = [await startRegistry({ dataDir: Path.join(dir, "axon"), profileDir: flags.profile })]
    const bareFile = Path.join(dir, "bare.db")
    await migrateSqlite(bareFile)
    bareServers = [await startBare("sqlite", bareFile)]
  } else {
    const registryDb = await pgUrl!()
    const bareDb = await pgUrl!()
    await migratePg(bareDb)
    registryServers = []
    bareServers = []
    for (let i = 0; i < instances; i++) {
      registryServers.push(
        await startRegistry({
          dataDir: Path.join(dir, `axon-${i}`),
          databaseUrl: registryDb,
          profileDir: flags.profile
        })
      )
      bareServers.push(await startBare("pg", bareDb))
    }
  }
  // The load keeps each configuration's registrations apart: its heartbeats beat only what it registered.
  const registryKey = `${label}: registry`
  const bareKey = `${label}: bare`
  const registryUrls = registryServers.map((s) => s.url)
  const bareUrls = bareServers.map((s) => s.url)
  const figures: Figures = {
    label,
    registry: { reg: [], cpu: [], beats: [] },
    bare: { reg: [], cpu: [], beats: [] },
    ratios: [],
    errors: 0
  }
  // Warm-up: JIT, prepared statements, pool connections.
  await ask({ cmd: "register", urls: registryUrls, key: registryKey, count: 300 })
  await ask({ cmd: "register", urls: bareUrls, key: bareKey, count: 300 })
  for (let round = 1; round <= ROUNDS; round++) {
    let cpu = cpuMs(registryServers)
    const a = await ask<Registered>({ cmd: "register", urls: registryUrls, key: registryKey, count: REGISTRATIONS })
    const cpuA = ((cpuMs(registryServers) - cpu) * 1000) / REGISTRATIONS
    cpu = cpuMs(bareServers)
    const b = await ask<Registered>({ cmd: "register", urls: bareUrls, key: bareKey, count: REGISTRATIONS })
    const cpuB = ((cpuMs(bareServers) - cpu) * 1000) / REGISTRATIONS
    figures.registry.cpu.push(cpuA)
    figures.bare.cpu.push(cpuB)
    figures.registry.reg.push(a.perSecond)
    figures.bare.reg.push(b.perSecond)
    figures.ratios.push(a.perSecond / b.perSecond)
    figures.errors += a.errors + b.errors
    console.log(
      `  ${label}, registrations round ${round}: registry ${fmt(a.perSecond)}/s, bare ${fmt(b.perSecond)}/s, ratio ${
        fmt(a.perSecond / b.perSecond, 2)
      }; server CPU per registration ${fmt(cpuA)} / ${fmt(cpuB)} µs (load generator ${fmt(a.loadCpuUs)} / ${
        fmt(b.loadCpuUs)
      }, busy ${fmt((a.loadCpuUs * REGISTRATIONS) / 10_000 / a.seconds)}% / ${
        fmt((b.loadCpuUs * REGISTRATIONS) / 10_000 / b.seconds)
      }%); busy ${fmt((cpuA * REGISTRATIONS) / 10_000 / a.seconds)}% / ${
        fmt((cpuB * REGISTRATIONS) / 10_000 / b.seconds)
      }% of a core${a.errors + b.errors > 0 ? ` (errors ${a.errors} / ${b.errors})` : ""}`
    )
  }
  for (let round = 1; round <= ROUNDS; round++) {
    const a = await ask<Paced>({ cmd: "paced", urls: registryUrls, key: registryKey, rate: RATE, seconds: SECONDS })
    const b = await ask<Paced>({ cmd: "paced", urls: bareUrls, key: bareKey, rate: RATE, seconds: SECONDS })
    figures.registry.beats.push(a)
    figures.bare.beats.push(b)
    figures.errors += a.errors + b.errors
    console.log(
      `  ${label}, heartbeats at ${fmt(RATE)}/s round ${round}: registry ${fmt(a.perSecond)}/s p50 ${
        fmt(a.p50, 2)
      } p99 ${fmt(a.p99, 1)} ms; bare ${fmt(b.perSecond)}/s p50 ${fmt(b.p50, 2)} p99 ${fmt(b.p99, 1)} ms${
        a.errors + b.errors > 0 ? ` (errors ${a.errors} / ${b.errors})` : ""
      }`
    )
  }
  await Promise.all([...registryServers, ...bareServers].map(stop))
  return figures
}

try {
  await build()
  const results: Array<Figures> = []
  let sweep: Awaited<ReturnType<typeof measureSweep>> | undefined
  const pg = stores.includes("pg") ? await startPostgresServer() : undefined
  try {
    for (const store of stores as Array<"sqlite" | "pg">) {
      for (const instances of store === "sqlite" ? [1] : instanceCounts) {
        results.push(await run(store, instances, () => createDatabase(pg!)))
      }
    }
    if (pg !== undefined && !flags["no-sweep"]) {
      sweep = await measureSweep(await createDatabase(pg), Number(flags.neurons), [], await createDatabase(pg))
    }
  } finally {
    await pg?.destroy()
  }

  console.log(
    `\n${Os.cpus().length} CPUs, load average ${Os.loadavg().map((x) => x.toFixed(1)).join(" ")} at the end; ` +
      `SQLite on ${base} (synchronous = FULL); PostgreSQL 15 throwaway server (fsync = off) on ${Os.tmpdir()}`
  )
  console.log(
    `| configuration | registrations/s registry / bare (median of ${ROUNDS} × ${fmt(REGISTRATIONS)}) | ratio ` +
      `(median of rounds) | heartbeats/s at ${fmt(RATE)}/s offered, registry / bare | p50 / p99 ms registry | ` +
      `p50 / p99 ms bare | errors |`
  )
  console.log("| --- | --- | --- | --- | --- | --- | --- |")
  for (const f of results) {
    const beats = (side: { beats: Array<Paced> }) => ({
      rate: median(side.beats.map((b) => b.perSecond)),
      p50: median(side.beats.map((b) => b.p50)),
      p99: median(side.beats.map((b) => b.p99))
    })
    const a = beats(f.registry)
    const b = beats(f.bare)
    console.log(
      `| ${f.label} | ${fmt(median(f.registry.reg))} / ${fmt(median(f.bare.reg))} | ${fmt(median(f.ratios), 2)} (${
        f.ratios.map((r) => fmt(r, 2)).join(", ")
      }) | ${fmt(a.rate)} / ${fmt(b.rate)} | ${fmt(a.p50, 2)} / ${fmt(a.p99, 1)} | ${fmt(b.p50, 2)} / ${
        fmt(b.p99, 1)
      } | ${f.errors} |`
    )
  }
  if (sweep !== undefined) {
    console.log(`\nsweep over ${fmt(sweep.neurons)} neurons on PostgreSQL (target < 200 ms):`)
    for (const line of sweep.lines) console.log(`  ${line}`)
  }
  const ratios = results.map((f) => median(f.ratios))
  console.log(
    `\ntargets: registrations ratio ≥ 0.5 on every configuration: ${
      ratios.every((r) => r >= 0.5) ? "met" : "NOT met"
    } (${ratios.map((r) => fmt(r, 2)).join(", ")})${
      sweep === undefined
        ? ""
        : `; sweep < 200 ms: ${sweep.worstMs < 200 ? "met" : "NOT met"} (worst ${fmt(sweep.worstMs, 1)} ms)`
    }`
  )
} finally {
  load.send({ cmd: "stop" })
  killAll()
  Fs.rmSync(work, { recursive: true, force: true })
}
