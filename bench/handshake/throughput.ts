/**
 * The throughput mode of `pnpm bench handshake`: alternating rounds against the Neuron (in this process) and the
 * baseline (a child), from the load process; then a paced load at half the Neuron's rate. See main.ts.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { type Cpu, type Memory, PATH, type RoundResult } from "./common.js"
import { ask, base, dataDir, fmt, line, machine, median, mib, percentile, start, stop } from "./harness.js"
import { probe, startProduct, stopProduct } from "./product.js"
import { buckets, heapBytes } from "./profile.js"

const HANDSHAKES = Number(process.env.BENCH_HANDSHAKES ?? 20_000)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4)
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 64)
const PATIENTS = Number(process.env.BENCH_PATIENTS ?? 2_000)
const PROFILE = process.env.BENCH_PROFILE
/** Another checkout of the project, built (`node scripts/build.mjs`): its product runs as a third side. */
const COMPARE = process.env.BENCH_COMPARE
/**
 * BENCH_FLOOR=1: one more side, the baseline writing what the Neuron must write for each completion (the
 * relationship's upsert, two hash-chained audit entries, in one transaction): what a bare server with the
 * Neuron's obligations makes.
 */
const FLOOR = process.env.BENCH_FLOOR === "1"
/** The paced load's rate (handshakes/s): the issue's 200/s. */
const PACED_RATE = Number(process.env.BENCH_PACED_RATE ?? 200)
const WARMUP = 1_000
const PACED_WARMUP_SECONDS = 2
const PACED_SECONDS = 5
/** Handshakes per server for each partial phase of the CPU split. */
const PHASE_COUNT = Number(process.env.BENCH_PHASE_HANDSHAKES ?? 2_000)

const cpuOf = (before: Cpu, after: Cpu) => after.user + after.system - before.user - before.system

/** Runs the throughput mode and prints its table. */
export const throughput = async () => {
  console.log(`machine: ${machine()}`)
  console.log(`SQLite files in ${dataDir} (neuron.db: the Neuron's, baseline.db: the baseline's)`)
  const neuron = await startProduct(Path.join(dataDir, "product"))
  console.log(`the Neuron as \`pnpm start\` runs it (dist/main.js, embedded registry), log output in ${neuron.log}`)
  const other = COMPARE === undefined
    ? undefined
    : await startProduct(
      Path.join(dataDir, "compare"),
      {},
      COMPARE,
      (process.env.BENCH_COMPARE_FLAGS ?? "").split(" ").filter((f) => f !== "")
    )
  if (other !== undefined) console.log(`compared with the product of ${COMPARE}, log in ${other.log}`)
  const otherUrl = other === undefined ? "" : `ws://127.0.0.1:${other.port}${PATH}`
  const otherCpu = () => probe<Cpu>(other!.child, { cmd: "cpu" })
  const baseline = await start("server-baseline.ts", [Path.join(dataDir, "baseline.db"), "10000"])
  // careagent/neuron's work per handshake, as read from its source (server-reference.ts).
  const reference = await start("server-reference.ts", [Path.join(dataDir, "reference.db"), "10000"])
  const floor = FLOOR
    ? await start("server-baseline.ts", [Path.join(dataDir, "floor.db"), "10000", "obligations"])
    : undefined
  const floorUrl = floor === undefined ? "" : `ws://127.0.0.1:${floor.port}${PATH}`
  const floorCpu = () => ask<Cpu>(floor!.child, { cmd: "cpu" })
  let t = Date.now()
  const load = (await start("load.ts", [String(PATIENTS)])).child
  console.log(
    `load process ready: ${fmt(PATIENTS)} patients (keys from 32 random bytes, tokens signed) in ${
      fmt((Date.now() - t) / 1000, 1)
    } s`
  )
  const neuronUrl = `ws://127.0.0.1:${neuron.port}${PATH}`
  const baselineUrl = `ws://127.0.0.1:${baseline.port}${PATH}`
  const neuronCpu = () => probe<Cpu>(neuron.child, { cmd: "cpu" })
  const baselineCpu = () => ask<Cpu>(baseline.child, { cmd: "cpu" })
  const referenceUrl = `ws://127.0.0.1:${reference.port}${PATH}`
  const referenceCpu = () => ask<Cpu>(reference.child, { cmd: "cpu" })
  if (PROFILE !== undefined) Fs.mkdirSync(PROFILE, { recursive: true })

  const round = async (url: string, cpu: () => Promise<Cpu>, count: number, stopAt = "complete") => {
    const before = await cpu()
    const result = await ask<RoundResult>(load, { cmd: "run", url, count, concurrency: CONCURRENCY, stopAt })
    const after = await cpu()
    return { ...result, cpuUs: cpuOf(before, after) / Math.max(1, result.ok + result.errors) }
  }
  type Round = Awaited<ReturnType<typeof round>>
  const report = (name: string, r: Round) =>
    `${name} ${fmt(r.perSecond)}/s (${fmt(r.ok)} ok, ${r.errors} errors${
      r.firstError === undefined ? "" : `: ${r.firstError}`
    }; p50 ${fmt(r.p50, 1)} ms, p99 ${fmt(r.p99, 1)} ms; server CPU ${fmt(r.cpuUs)} µs, load CPU ${
      fmt(r.loadCpuUs)
    } µs per handshake)`

  t = Date.now()
  await round(baselineUrl, baselineCpu, WARMUP)
  await round(neuronUrl, neuronCpu, WARMUP)
  await round(referenceUrl, referenceCpu, WARMUP)
  if (other !== undefined) await round(otherUrl, otherCpu, WARMUP)
  if (floor !== undefined) await round(floorUrl, floorCpu, WARMUP)
  console.log(`warm-up: ${fmt(WARMUP)} handshakes each in ${fmt((Date.now() - t) / 1000, 1)} s`)

  const perRound = Math.ceil(HANDSHAKES / ROUNDS)
  const rounds: Array<{ neuron: Round; baseline: Round; reference: Round }> = []
  const compared: Array<{ ratio: number; cpuUs: number }> = []
  const floors: Array<{ floor: Round; baseline: Round; neuron: Round }> = []
  // The sides run one after another in each round, in an order that turns by one each round: a side that runs
  // right after another (the kernel still closing that side's connections, say) would otherwise always be the one
  // that pays for it. Measured: with a fixed order, the same build ran about 10 % slower as the first product than
  // as the compared one, whichever build was first.
  for (let i = 1; i <= ROUNDS; i++) {
    const last = i === ROUNDS && PROFILE !== undefined
    const measured = new Map<string, Round>()
    const sides: Array<readonly [string, () => Promise<Round>]> = [
      ["baseline", async () => {
        if (last) await ask(baseline.child, { cmd: "profile-start" })
        const b = await round(baselineUrl, baselineCpu, perRound)
        if (last) await ask(baseline.child, { cmd: "profile-stop", file: Path.join(PROFILE, "baseline.cpuprofile") })
        return b
      }],
      ["neuron", async () => {
        if (last) await probe(neuron.child, { cmd: "profile-start" })
        const n = await round(neuronUrl, neuronCpu, perRound)
        if (last) await probe(neuron.child, { cmd: "profile-stop", file: Path.join(PROFILE, "neuron.cpuprofile") })
        return n
      }],
      ["reference", () => round(referenceUrl, referenceCpu, perRound)],
      ...(other === undefined ? [] : [["compared", () => round(otherUrl, otherCpu, perRound)] as const]),
      ...(floor === undefined ? [] : [["floor", () => round(floorUrl, floorCpu, perRound)] as const])
    ]
    const turn = (i - 1) % sides.length
    for (const [name, run] of [...sides.slice(turn), ...sides.slice(0, turn)]) measured.set(name, await run())
    const b = measured.get("baseline")!
    const n = measured.get("neuron")!
    const r = measured.get("reference")!
    rounds.push({ neuron: n, baseline: b, reference: r })
    console.log(`round ${i} (first: ${sides[turn]![0]}): ${report("baseline ", b)}`)
    console.log(`round ${i}: ${report("neuron   ", n)}; ratio ${fmt(n.perSecond / b.perSecond, 2)}`)
    console.log(`round ${i}: ${report("reference", r)}; ratio ${fmt(r.perSecond / b.perSecond, 2)}`)
    const o = measured.get("compared")
    if (o !== undefined) {
      compared.push({ ratio: o.perSecond / b.perSecond, cpuUs: o.cpuUs })
      console.log(`round ${i}: ${report("compared ", o)}; ratio ${fmt(o.perSecond / b.perSecond, 2)}`)
    }
    const f = measured.get("floor")
    if (f !== undefined) {
      floors.push({ floor: f, baseline: b, neuron: n })
      console.log(`round ${i}: ${report("floor    ", f)}; ratio ${fmt(f.perSecond / b.perSecond, 2)}`)
    }
  }

  const total = (pick: (r: (typeof rounds)[number]) => Round) => {
    const rs = rounds.map(pick)
    const ok = rs.reduce((s, r) => s + r.ok, 0)
    const seconds = rs.reduce((s, r) => s + r.seconds, 0)
    const latencies = rs.flatMap((r) => r.latencies)
    return {
      ok,
      errors: rs.reduce((s, r) => s + r.errors, 0),
      created: rs.reduce((s, r) => s + r.created, 0),
      existing: rs.reduce((s, r) => s + r.existing, 0),
      perSecond: ok / seconds,
      p50: percentile(latencies, 0.5),
      p99: percentile(latencies, 0.99),
      cpuUs: rs.reduce((s, r) => s + r.cpuUs * (r.ok + r.errors), 0) / Math.max(1, ok),
      loadCpuUs: median(rs.map((r) => r.loadCpuUs))
    }
  }
  // How many completions the Neuron's transactions carried (group commit), from its own /metrics (loopback).
  for (const [name, product] of [["neuron", neuron], ["compared", other]] as const) {
    if (product === undefined) continue
    const text = await fetch(`http://127.0.0.1:${product.port}/metrics`).then((r) => r.text(), () => "")
    const sample = (metric: string) =>
      Number(new RegExp(`^${metric}\\{operation="handshake"\\} (\\S+)$`, "m").exec(text)?.[1] ?? NaN)
    const count = sample("neuron_sqlite_group_commit_size_count")
    if (Number.isFinite(count)) {
      console.log(
        `${name}: ${fmt(sample("neuron_sqlite_group_commit_size_sum") / count, 1)} completions per transaction`
      )
    }
  }
  const n = total((r) => r.neuron)
  const b = total((r) => r.baseline)
  const ratio = median(rounds.map((r) => r.neuron.perSecond / r.baseline.perSecond))
  const ref = total((r) => r.reference)
  const refRatio = median(rounds.map((r) => r.reference.perSecond / r.baseline.perSecond))

  // What each server allocates per complete handshake (BENCH_PROFILE): V8's sampling heap profile of one more
  // round, counting what was collected too, written as neuron.heapprofile and baseline.heapprofile.
  let allocated: { readonly neuron: number; readonly baseline: number } | undefined
  if (PROFILE !== undefined) {
    await probe(neuron.child, { cmd: "heap-start" })
    const a = await round(neuronUrl, neuronCpu, perRound)
    await probe(neuron.child, { cmd: "heap-stop", file: Path.join(PROFILE, "neuron.heapprofile") })
    await ask(baseline.child, { cmd: "heap-start" })
    const ab = await round(baselineUrl, baselineCpu, perRound)
    await ask(baseline.child, { cmd: "heap-stop", file: Path.join(PROFILE, "baseline.heapprofile") })
    allocated = {
      neuron: heapBytes(Path.join(PROFILE, "neuron.heapprofile")) / Math.max(1, a.ok),
      baseline: heapBytes(Path.join(PROFILE, "baseline.heapprofile")) / Math.max(1, ab.ok)
    }
  }

  // CPU by where a connection stops: the same closed loop stopped by the client (close 1000) once upgraded, and
  // once challenged, against a whole handshake. Shown as measured, not as differences: the Neuron records a
  // connection that does not complete (its handshake.failed entry, in a transaction of the audit log's group commit),
  // while a completion's entries go with its relationship, so a stopped connection can cost more than a whole one.
  const phases = []
  for (const stopAt of ["open", "challenge"] as const) {
    const b = await round(baselineUrl, baselineCpu, PHASE_COUNT, stopAt)
    const n = await round(neuronUrl, neuronCpu, PHASE_COUNT, stopAt)
    phases.push({ stopAt, neuron: n.cpuUs, baseline: b.cpuUs, errors: n.errors + b.errors })
  }

  // Below saturation, at a fixed rate offered to both servers after a warm-up at that rate (steady state, not
  // the garbage left by the saturated rounds). The Neuron's event-loop delay and GC pauses are watched while it
  // is measured (by the probe, in its process).
  const rate = PACED_RATE
  const pacedCount = Math.min(5_000, rate * PACED_SECONDS)
  const paced = (url: string, seconds: number) =>
    ask<RoundResult>(load, { cmd: "paced", url, rate, count: Math.min(5_000, Math.round(rate * seconds)) })
  await paced(neuronUrl, PACED_WARMUP_SECONDS)
  const pacedCpu = await neuronCpu()
  await probe(neuron.child, { cmd: "watch-start" })
  if (PROFILE !== undefined) await probe(neuron.child, { cmd: "profile-start" })
  const neuronPaced = await ask<RoundResult>(load, { cmd: "paced", url: neuronUrl, rate, count: pacedCount })
  if (PROFILE !== undefined) {
    await probe(neuron.child, { cmd: "profile-stop", file: Path.join(PROFILE, "neuron-paced.cpuprofile") })
  }
  const watched = await probe<
    { loopP99: number; loopMax: number; longestGc: number; gcTotal: number; gcCount: number }
  >(neuron.child, { cmd: "watch-stop" })
  const neuronPacedCpuUs = cpuOf(pacedCpu, await neuronCpu())
  await paced(baselineUrl, PACED_WARMUP_SECONDS)
  const basePaced = await ask<RoundResult>(load, { cmd: "paced", url: baselineUrl, rate, count: pacedCount })
  await paced(referenceUrl, PACED_WARMUP_SECONDS)
  const refPaced = await ask<RoundResult>(load, { cmd: "paced", url: referenceUrl, rate, count: pacedCount })

  let otherPaced: RoundResult | undefined
  if (other !== undefined) {
    await paced(otherUrl, PACED_WARMUP_SECONDS)
    otherPaced = await ask<RoundResult>(load, { cmd: "paced", url: otherUrl, rate, count: pacedCount })
    await stopProduct(other)
  }

  const neuronRss = (await probe<Memory>(neuron.child, { cmd: "memory" })).maxRss
  const baseRss = (await ask<Memory>(baseline.child, { cmd: "memory" })).maxRss
  const refRss = (await ask<Memory>(reference.child, { cmd: "memory" })).maxRss
  await stopProduct(neuron)
  await stop(baseline.child)
  await stop(reference.child)
  if (floor !== undefined) await stop(floor.child)
  await stop(load)

  console.log("")
  console.log(
    `## Consent handshake (${fmt(ROUNDS)} alternating rounds of ${
      fmt(perRound)
    } handshakes per server, concurrency ${CONCURRENCY}, ${fmt(PATIENTS)} patients, data on ${base}; ` +
      "the Neuron as `pnpm start` runs it)"
  )
  line(["measure", "neuron (`pnpm start`)", "baseline (ws + better-sqlite3)", "reference (careagent/neuron's work)"])
  line(["---", "---", "---", "---"])
  line(["handshakes/s (all rounds)", fmt(n.perSecond), fmt(b.perSecond), fmt(ref.perSecond)])
  line([
    "ratio to the baseline (median of rounds)",
    `${fmt(ratio, 2)} (target ≥ 0.8)`,
    "1",
    `${fmt(refRatio, 2)} (skips the challenge of an existing relationship)`
  ])
  line([
    "handshakes ok / errors",
    `${fmt(n.ok)} / ${n.errors}`,
    `${fmt(b.ok)} / ${b.errors}`,
    `${fmt(ref.ok)} / ${ref.errors}`
  ])
  line([
    "relationships new / existing",
    `${fmt(n.created)} / ${fmt(n.existing)}`,
    `${fmt(b.created)} / ${fmt(b.existing)}`,
    `${fmt(ref.created)} / ${fmt(ref.existing)}`
  ])
  line([
    `p50 / p99 at concurrency ${CONCURRENCY}, saturated (ms; ≈ ${CONCURRENCY} / throughput)`,
    `${fmt(n.p50, 1)} / ${fmt(n.p99, 1)}`,
    `${fmt(b.p50, 1)} / ${fmt(b.p99, 1)}`,
    `${fmt(ref.p50, 1)} / ${fmt(ref.p99, 1)}`
  ])
  line([
    `p50 / p99 paced at ${fmt(rate)}/s (ms)`,
    `${fmt(neuronPaced.p50, 1)} / ${fmt(neuronPaced.p99, 1)} (target p99 < 50; ${neuronPaced.errors} errors)`,
    `${fmt(basePaced.p50, 1)} / ${fmt(basePaced.p99, 1)} (${basePaced.errors} errors)`,
    `${fmt(refPaced.p50, 1)} / ${fmt(refPaced.p99, 1)} (${refPaced.errors} errors)`
  ])
  line([
    "neuron while paced: event-loop delay p99 / max, longest GC pause, GC total (ms, pauses)",
    `${fmt(watched.loopP99, 1)} / ${fmt(watched.loopMax, 1)}, ${fmt(watched.longestGc, 1)}, ${
      fmt(watched.gcTotal, 0)
    } (${watched.gcCount})`,
    "",
    ""
  ])
  line(["server CPU per handshake (µs), saturated", fmt(n.cpuUs), fmt(b.cpuUs), fmt(ref.cpuUs)])
  line([
    "server CPU per handshake (µs), paced",
    fmt(neuronPacedCpuUs / Math.max(1, neuronPaced.ok + neuronPaced.errors)) + " (the idle process included)",
    "",
    ""
  ])
  const [open, challenge] = phases
  line([
    "server CPU per connection by where it stops (µs): closed once upgraded / closed once challenged / complete" +
    " (the Neuron writes a handshake.failed entry for the first two)",
    `${fmt(open!.neuron)} / ${fmt(challenge!.neuron)} / ${fmt(n.cpuUs)}`,
    `${fmt(open!.baseline)} / ${fmt(challenge!.baseline)} / ${fmt(b.cpuUs)}`,
    ""
  ])
  line([
    "load process CPU per handshake (µs, median round)",
    fmt(n.loadCpuUs),
    fmt(b.loadCpuUs),
    fmt(ref.loadCpuUs)
  ])
  line(["peak RSS", mib(neuronRss), mib(baseRss), mib(refRss)])

  if (other !== undefined) {
    console.log(
      `\ncompared (${COMPARE}): ratio to the baseline, median of rounds ${
        fmt(median(compared.map((c) => c.ratio)), 2)
      }; server CPU per handshake ${fmt(median(compared.map((c) => c.cpuUs)))} µs (median round); p50 / p99 paced at ${
        fmt(rate)
      }/s ${fmt(otherPaced!.p50, 1)} / ${fmt(otherPaced!.p99, 1)} ms`
    )
  }
  if (floor !== undefined) {
    console.log(
      `\nfloor (the baseline writing the Neuron's obligations, one transaction per completion): ratio to the ` +
        `baseline, median of rounds ${
          fmt(median(floors.map((r) => r.floor.perSecond / r.baseline.perSecond)), 2)
        }; server CPU per handshake ${fmt(median(floors.map((r) => r.floor.cpuUs)))} µs (median round); the ` +
        `Neuron's ratio to the floor, median of rounds ${
          fmt(median(floors.map((r) => r.neuron.perSecond / r.floor.perSecond)), 2)
        }`
    )
  }
  if (PROFILE !== undefined) {
    const last = rounds[rounds.length - 1]!
    const nb = buckets(Path.join(PROFILE, "neuron.cpuprofile"), last.neuron.ok)
    const bb = new Map(buckets(Path.join(PROFILE, "baseline.cpuprofile"), last.baseline.ok))
    console.log(
      `\n### Where the CPU goes (last round, profiled: µs per handshake, inflated by the profiler; files in ${PROFILE})`
    )
    line(["self time in", "neuron", "baseline"])
    line(["---", "---", "---"])
    for (const [name, us] of nb) line([name, fmt(us), fmt(bb.get(name) ?? 0)])
    line(["total", fmt(nb.reduce((s, [, us]) => s + us, 0)), fmt([...bb.values()].reduce((s, us) => s + us, 0))])
    const [n, b] = [allocated!.neuron, allocated!.baseline].map((bytes) => fmt(bytes / 1024, 1))
    line(["allocated per complete handshake (KiB, sampled, one more round)", n!, b!])
  }
  console.log(
    `\ntargets: ratio ≥ 0.8 ${ratio >= 0.8 ? "met" : "NOT met"} (${fmt(ratio, 2)}; the reference ${
      fmt(refRatio, 2)
    }, the Neuron ${ratio > refRatio ? "ahead" : "behind"}); server CPU per handshake ≤ 1,040 µs ${
      n.cpuUs <= 1040 ? "met" : "NOT met"
    } (${fmt(n.cpuUs)} µs); p99 < 50 ms paced at ${fmt(rate)}/s ${neuronPaced.p99 < 50 ? "met" : "NOT met"} (${
      fmt(neuronPaced.p99, 1)
    } ms)`
  )
}
