/**
 * The load generator, a process of its own: HTTP/1.1 keep-alive (an undici Pool per target URL), spread round
 * robin over the URLs of one run (the instances behind a load balancer). Commands from the parent:
 *
 * - `register`: `count` registrations, closed loop (as fast as the servers answer), fresh NPIs; the tokens are
 *   kept under `key` for the heartbeats;
 * - `paced`: heartbeats of the registrations kept under `key`, open loop at `rate` per second for `seconds`,
 *   latency of each request from its due time (so a stalled server cannot hide its queue).
 */
import { performance } from "node:perf_hooks"
import { withCheckDigit } from "../../src/domain/Npi.js"
import { Pool } from "./modules.js"

const CONNECTIONS = 64
let nextNpi = 1
const kept = new Map<string, Array<readonly [id: string, token: string, url: string]>>()

const pools = (urls: ReadonlyArray<string>) =>
  urls.map((url) => new Pool(url, { connections: Math.ceil(CONNECTIONS / urls.length), pipelining: 1 }))

const endpointOf = (npi: string) => `https://neuron-${npi}.bench.example.org`

const register = async (urls: ReadonlyArray<string>, key: string, count: number) => {
  const targets = pools(urls)
  const rows = kept.get(key) ?? []
  kept.set(key, rows)
  let sent = 0
  let errors = 0
  const cpu = process.cpuUsage()
  const started = performance.now()
  await Promise.all(Array.from({ length: CONNECTIONS }, async () => {
    while (sent < count) {
      const k = sent++
      const npi = withCheckDigit("1" + String(nextNpi++).padStart(8, "0"))
      const url = endpointOf(npi)
      try {
        const response = await targets[k % targets.length]!.request({
          path: "/v1/neurons",
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({
            organization_npi: npi,
            organization_name: `Bench clinic ${npi}`,
            organization_type: "practice",
            neuron_endpoint_url: url,
            heartbeat_interval_s: 60
          })
        })
        const body: any = await response.body.json()
        if (response.statusCode === 201) rows.push([body.registration_id, body.bearer_token, url])
        else errors++
      } catch {
        errors++
      }
    }
  }))
  const seconds = (performance.now() - started) / 1000
  await Promise.all(targets.map((pool) => pool.close()))
  const used = process.cpuUsage(cpu)
  return {
    ok: count - errors,
    errors,
    seconds,
    perSecond: (count - errors) / seconds,
    loadCpuUs: (used.user + used.system) / count
  }
}

const percentile = (sorted: Float64Array, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!

const paced = async (urls: ReadonlyArray<string>, key: string, rate: number, seconds: number) => {
  const rows = kept.get(key)!
  const targets = pools(urls)
  const total = Math.round(rate * seconds)
  const latencies = new Float64Array(total)
  let cursor = 0
  let dispatched = 0
  let done = 0
  let errors = 0
  const started = performance.now()
  await new Promise<void>((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * rate) + 1)
      while (dispatched < due) {
        const k = dispatched++
        const dueAt = started + (k / rate) * 1000
        // A stride through the registrations, so that consecutive requests hit different rows.
        const [id, token, url] = rows[cursor = (cursor + 7919) % rows.length]!
        targets[k % targets.length]!.request({
          path: `/v1/neurons/${id}/endpoint`,
          method: "PUT",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: JSON.stringify({ neuron_endpoint_url: url })
        }).then(
          async (response: any) => (await response.body.text(), response.statusCode === 200),
          () => false
        ).then((ok: boolean) => {
          latencies[k] = performance.now() - dueAt
          if (!ok) errors++
          if (++done === total) resolve()
        })
      }
      if (dispatched < total) setTimeout(tick, 1)
    }
    tick()
  })
  const elapsed = (performance.now() - started) / 1000
  await Promise.all(targets.map((pool) => pool.close()))
  latencies.sort()
  return {
    count: total,
    errors,
    perSecond: (total - errors) / elapsed,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    max: latencies[latencies.length - 1]!
  }
}

process.on("message", async (message: any) => {
  if (message.cmd === "register") process.send!(await register(message.urls, message.key, message.count))
  if (message.cmd === "paced") {
    process.send!(await paced(message.urls, message.key, message.rate, message.seconds))
  }
  if (message.cmd === "stop") process.exit(0)
})
process.send!({ ready: true })
