/**
 * The simulated Neurons, a process of their own: each one heartbeats (`PUT /v1/neurons/{id}/endpoint`, its own
 * registration and token) on the schedule the Neuron uses, `heartbeatSchedule` of src/heartbeat/Backoff.ts with the
 * Neuron's default settings: after a failure the next backoff delay (capped exponential, full jitter; or the same
 * without its jitter, the baseline), after a success the steady interval. Each attempt opens a fresh connection
 * (a Neuron's keep-alive connection does not outlive a registry restart, nor the seconds between retries) and has
 * the Neuron's time limit. Commands from the parent: `capacity` (closed loop at saturation) and `herd`.
 */
import * as Duration from "effect/Duration"
import * as Schedule from "effect/Schedule"
import * as Fs from "node:fs"
import * as Http from "node:http"
import { performance } from "node:perf_hooks"
import { defaults } from "../../src/config/NeuronConfig.js"
import { backoff, delays } from "../../src/heartbeat/Backoff.js"
import { endpointOf, type Seeded } from "../axon-component/seed.js"

const rows: ReadonlyArray<Seeded> = JSON.parse(Fs.readFileSync(process.argv[2]!, "utf8"))
const settings = defaults()
const BASE = Duration.toMillis(settings.backoffBase)
const CEILING = Duration.toMillis(settings.backoffCeiling)
const INTERVAL = Duration.toMillis(settings.heartbeatInterval)
const TIMEOUT = Duration.toMillis(settings.axonTimeout)
/** Enough backoff steps for any window this bench runs (5 s · 2^12 is far past the ceiling). */
const STEPS = 16

/** How one attempt ended. */
type Outcome = "ok" | "refused" | "reset" | "timeout" | `http ${number}` | "other"

interface Attempt {
  readonly start: number
  readonly end: number
  readonly outcome: Outcome
}

// Many loopback source addresses: 10 000 connections at once, and again seconds later, would otherwise wear out
// the ephemeral ports of one address (TIME_WAIT).
let sourceCursor = 0
const sourceAddress = () => `127.0.0.${2 + (sourceCursor++ % 200)}`

/** One heartbeat on a fresh connection, with the Neuron's time limit. */
const beat = (port: number, i: number): Promise<Attempt> =>
  new Promise((resolve) => {
    const [id, token] = rows[i]!
    const body = JSON.stringify({ neuron_endpoint_url: endpointOf(i) })
    const start = Date.now()
    let done = false
    const finish = (outcome: Outcome) => {
      if (done) return
      done = true
      clearTimeout(timer)
      request.destroy()
      resolve({ start, end: Date.now(), outcome })
    }
    const request = Http.request({
      host: "127.0.0.1",
      port,
      localAddress: sourceAddress(),
      agent: false,
      method: "PUT",
      path: `/v1/neurons/${id}/endpoint`,
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/json",
        "content-length": Buffer.byteLength(body),
        connection: "close"
      }
    }, (response) => {
      response.resume()
      response.on("end", () => finish(response.statusCode === 200 ? "ok" : `http ${response.statusCode ?? 0}`))
      response.on("error", () => finish("reset"))
    })
    const timer = setTimeout(() => finish("timeout"), TIMEOUT)
    request.on("error", (error: NodeJS.ErrnoException) =>
      finish(error.code === "ECONNREFUSED" ? "refused" : error.code === "ECONNRESET" ? "reset" : "other"))
    request.end(body)
  })

/** Closed loop, `workers` at a time, for `seconds`: heartbeats answered per second at saturation. */
const capacity = async (port: number, seconds: number, workers: number) => {
  const latencies: Array<number> = []
  let errors = 0
  let cursor = 0
  const started = performance.now()
  const end = started + seconds * 1000
  await Promise.all(Array.from({ length: workers }, async () => {
    while (performance.now() < end) {
      const attempt = await beat(port, cursor = (cursor + 7919) % rows.length)
      if (attempt.outcome === "ok") latencies.push(attempt.end - attempt.start)
      else errors++
    }
  }))
  const elapsed = (performance.now() - started) / 1000
  latencies.sort((a, b) => a - b)
  return { perSecond: latencies.length / elapsed, errors, p99: percentile(latencies, 0.99) }
}

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!

/** The backoff delays of Neuron `i`: the Neuron's schedule (seeded per Neuron), or the same without jitter. */
const backoffDelays = (jitter: boolean, seed: number): (i: number) => ReadonlyArray<number> => {
  if (jitter) {
    const schedule = backoff({ base: BASE, ceiling: CEILING })
    return (i) => delays(schedule, STEPS, seed + i)
  }
  const fixed = delays(Schedule.exponential(BASE, 2).pipe(Schedule.union(Schedule.spaced(CEILING))), STEPS, 0)
  return () => fixed
}

let backAt: number | undefined

/**
 * Every Neuron beats at `lostAt` (the registry is gone: each beat fails), then follows its schedule until
 * `windowMs` after the registry is back. Attempts still in flight at the end are waited for (bounded by the
 * time limit).
 */
const herd = async (port: number, jitter: boolean, seed: number, windowMs: number) => {
  backAt = undefined
  const delaysOf = backoffDelays(jitter, seed)
  const attempts: Array<Attempt> = []
  const firstSuccess = new Float64Array(rows.length).fill(NaN)
  const lostAt = Date.now()
  const windowEnd = () => (backAt === undefined ? Infinity : backAt + windowMs)
  const sleepUntil = (t: number) => new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, t - Date.now())))
  const run = async (i: number) => {
    const ds = delaysOf(i)
    let failures = 0
    let next = lostAt
    while (next < windowEnd()) {
      await sleepUntil(next)
      if (Date.now() >= windowEnd()) break
      const attempt = await beat(port, i)
      attempts.push(attempt)
      if (attempt.outcome === "ok") {
        if (Number.isNaN(firstSuccess[i]!)) firstSuccess[i] = attempt.end
        failures = 0
        next = attempt.end + INTERVAL
      } else {
        // The Neuron waits from the end of the failed attempt.
        next = attempt.end + ds[Math.min(failures++, ds.length - 1)]!
      }
    }
  }
  await Promise.all(rows.map((_, i) => run(i)))
  return summarize(attempts, firstSuccess, lostAt, backAt!, windowMs)
}

const summarize = (
  attempts: ReadonlyArray<Attempt>,
  firstSuccess: Float64Array,
  lostAt: number,
  back: number,
  windowMs: number
) => {
  // Refused while the registry was away; everything else reached it (a few just before its first /health answer).
  const during = attempts.filter((a) => a.start < back && a.outcome === "refused")
  const after = attempts.filter((a) => a.start >= back || a.outcome !== "refused")
  const perSecond = new Array<number>(Math.ceil(windowMs / 1000) + 1).fill(0)
  for (const a of after) {
    perSecond[Math.max(0, Math.min(perSecond.length - 1, Math.floor((a.start - back) / 1000)))]!++
  }
  const peak = Math.max(...perSecond)
  const errors: Record<string, number> = {}
  for (const a of after) if (a.outcome !== "ok") errors[a.outcome] = (errors[a.outcome] ?? 0) + 1
  const latencies = after.filter((a) => a.outcome === "ok").map((a) => a.end - a.start).sort((a, b) => a - b)
  const recovered = Array.from(firstSuccess).filter((t) => !Number.isNaN(t))
  return {
    outageMs: back - lostAt,
    attemptsDuringOutage: during.length,
    requests: after.length,
    errorCount: after.length - latencies.length,
    errors,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    max: latencies.at(-1) ?? 0,
    peak,
    peakSecond: perSecond.indexOf(peak),
    perSecond,
    recovered: recovered.length,
    allBackAfterMs: recovered.length === 0 ? NaN : Math.max(...recovered) - back
  }
}

process.on("message", async (message: any) => {
  if (message.cmd === "capacity") {
    process.send!(await capacity(message.port, message.seconds, message.workers))
  }
  if (message.cmd === "herd") {
    process.send!({ started: true })
    process.send!({ result: await herd(message.port, message.jitter, message.seed, message.windowMs) })
  }
  if (message.cmd === "back") {
    backAt = message.at
  }
  if (message.cmd === "stop") process.exit(0)
})
process.send!({ ready: true })
