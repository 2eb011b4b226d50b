/**
 * The load generator, a separate process: heartbeats over HTTP/1.1 keep-alive (undici Pool, 64 connections)
 * to the seeded registrations. `max`: closed loop, as fast as the server answers, bounded in time and count.
 * `paced`: open loop at a fixed rate, latency of each request from its dispatch.
 */
import * as Fs from "node:fs"
import { performance } from "node:perf_hooks"
import { Pool } from "./modules.js"
import { endpointOf, type Seeded } from "./seed.js"

const rows: ReadonlyArray<Seeded> = JSON.parse(Fs.readFileSync(process.argv[2]!, "utf8"))
const CONNECTIONS = 64
let cursor = 0

const beat = async (pool: any): Promise<boolean> => {
  // A stride through the registrations, so that consecutive requests hit different neurons.
  const i = (cursor = (cursor + 7919) % rows.length)
  const [id, token] = rows[i]!
  const response = await pool.request({
    path: `/v1/neurons/${id}/endpoint`,
    method: "PUT",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ neuron_endpoint_url: endpointOf(i) })
  })
  await response.body.text()
  return response.statusCode === 200
}

const percentile = (sorted: Float64Array, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!

const max = async (url: string, seconds: number, maxCount: number) => {
  const pool = new Pool(url, { connections: CONNECTIONS, pipelining: 1 })
  let ok = 0
  let errors = 0
  let sent = 0
  const started = performance.now()
  const end = started + seconds * 1000
  await Promise.all(Array.from({ length: CONNECTIONS }, async () => {
    while (performance.now() < end && sent < maxCount) {
      sent++
      if (await beat(pool).catch(() => false)) ok++
      else errors++
    }
  }))
  const elapsed = (performance.now() - started) / 1000
  await pool.close()
  return { ok, errors, seconds: elapsed, perSecond: ok / elapsed }
}

const paced = async (url: string, rate: number, seconds: number) => {
  const pool = new Pool(url, { connections: CONNECTIONS, pipelining: 1 })
  const total = rate * seconds
  const latencies = new Float64Array(total)
  let dispatched = 0
  let done = 0
  let errors = 0
  const started = performance.now()
  await new Promise<void>((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * rate) + 1)
      while (dispatched < due) {
        const k = dispatched++
        const t0 = performance.now()
        beat(pool).then((ok) => ok, () => false).then((ok) => {
          latencies[k] = performance.now() - t0
          if (!ok) errors++
          if (++done === total) resolve()
        })
      }
      if (dispatched < total) setTimeout(tick, 1)
    }
    tick()
  })
  const elapsed = (performance.now() - started) / 1000
  await pool.close()
  latencies.sort()
  return {
    count: total,
    errors,
    perSecond: total / elapsed,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    max: latencies[latencies.length - 1]
  }
}

process.on("message", async (message: any) => {
  if (message.cmd === "max") process.send!(await max(message.url, message.seconds, message.maxCount))
  if (message.cmd === "paced") process.send!(await paced(message.url, message.rate, message.seconds))
  if (message.cmd === "stop") process.exit(0)
})
process.send!({ ready: true })
