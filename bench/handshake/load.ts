/**
 * The load generator of `pnpm bench handshake`, a separate process (forked by main.ts), on loopback.
 *
 * Before anything is timed it makes the patients: keys from 32 random bytes imported as PKCS#8 (never
 * `generateKeyPairSync`, which hung under load: TRAPS.md) and one signed consent token each, kept as the ready
 * `handshake.auth` text. Each handshake: connect, send auth, sign the nonce of the challenge, read
 * `handshake.complete`, see the close (1000). A patient seen before by a server is an `existing` relationship.
 *
 * Commands (IPC): `run` (closed loop, N handshakes at concurrency C), `paced` (open loop at a fixed rate,
 * latency from each handshake's scheduled start), `hold` / `release` (connections that stay in the auth step).
 */
import { createPrivateKey, createPublicKey, type KeyObject, randomBytes, sign } from "node:crypto"
import { performance } from "node:perf_hooks"
import { WebSocket } from "ws"
import { ORG, PROVIDER, type RoundResult } from "./common.js"

const PATIENTS = Number(process.argv[2] ?? 2000)
const PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex")

interface Patient {
  readonly key: KeyObject
  /** The whole `handshake.auth` frame. */
  readonly auth: string
}

const makePatient = (i: number): Patient => {
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, randomBytes(32)]), format: "der", type: "pkcs8" })
  const x = createPublicKey(key).export({ format: "jwk" }).x!
  const iat = Math.floor(Date.now() / 1000)
  const patient_agent_id = `bench-patient-${i}-${randomBytes(4).toString("hex")}`
  const payload = Buffer.from(JSON.stringify({
    patient_agent_id,
    provider_npi: PROVIDER,
    organization_npi: ORG,
    consented_actions: ["read:summary", "message:send"],
    iat,
    exp: iat + 3600
  }))
  const auth = JSON.stringify({
    type: "handshake.auth",
    consent_token_payload: payload.toString("base64url"),
    consent_token_signature: sign(null, payload, key).toString("base64url"),
    patient_agent_id,
    patient_public_key: x,
    patient_endpoint: "https://patient.example.org/agent"
  })
  return { key, auth }
}

const patients: Array<Patient> = Array.from({ length: PATIENTS }, (_, i) => makePatient(i))

interface Outcome {
  readonly ok: boolean
  readonly status?: string
  readonly error?: string
  /** ms from the start to `handshake.complete`. */
  readonly latency: number
}

/**
 * Where a handshake stops: `complete` (the whole handshake), or the client closes (1000) once the socket is
 * `open` or once the `challenge` has arrived: the phases of the CPU split.
 */
type StopAt = "complete" | "open" | "challenge"

/** One handshake (to `stopAt`); resolves once the socket has closed. */
const handshake = (url: string, patient: Patient, started: number, stopAt: StopAt = "complete"): Promise<Outcome> =>
  new Promise((resolve) => {
    let status: string | undefined
    let error: string | undefined
    let latency = 0
    const ws = new WebSocket(url, { perMessageDeflate: false })
    ws.on("open", () => {
      if (stopAt !== "open") return ws.send(patient.auth)
      status = "open"
      ws.close(1000)
    })
    ws.on("message", (data, isBinary) => {
      const message = isBinary ? undefined : JSON.parse(data.toString())
      if (message?.type === "handshake.challenge" && stopAt === "challenge") {
        status = "challenge"
        ws.close(1000)
      } else if (message?.type === "handshake.challenge") {
        const signed = sign(null, Buffer.from(message.nonce, "hex"), patient.key).toString("base64url")
        ws.send(`{"type":"handshake.challenge_response","signed_nonce":"${signed}"}`)
      } else if (message?.type === "handshake.complete") {
        latency = performance.now() - started
        status = message.status
      } else {
        error ??= message?.type === "handshake.error" ? `${message.code}: ${message.message}` : "unexpected frame"
      }
    })
    ws.on("unexpected-response", (_req, res) => {
      error ??= `HTTP ${res.statusCode}`
      ws.terminate()
    })
    ws.on("error", (e) => {
      error ??= e.message
    })
    ws.on("close", (code) => {
      if (code !== 1000) error ??= `closed with ${code}`
      const ok = error === undefined && status !== undefined
      resolve(ok ? { ok, status: status!, latency } : { ok, error: error ?? "no complete", latency })
    })
  })

// Each server has its own database: a cursor per URL, so that both see the same sequence of patients.
const cursors = new Map<string, number>()
const nextPatient = (url: string) => {
  const i = cursors.get(url) ?? 0
  cursors.set(url, i + 1)
  return patients[i % patients.length]!
}

const percentile = (sorted: Float64Array, p: number) =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!

const summarize = (outcomes: Array<Outcome>, seconds: number, cpuBefore: NodeJS.CpuUsage): RoundResult => {
  const cpu = process.cpuUsage(cpuBefore)
  const ok = outcomes.filter((o) => o.ok)
  const latencies = Float64Array.from(ok.map((o) => o.latency)).sort()
  return {
    ok: ok.length,
    errors: outcomes.length - ok.length,
    firstError: outcomes.find((o) => !o.ok)?.error,
    created: ok.filter((o) => o.status === "new").length,
    existing: ok.filter((o) => o.status === "existing").length,
    seconds,
    perSecond: ok.length / seconds,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    max: latencies.length === 0 ? 0 : latencies[latencies.length - 1]!,
    loadCpuUs: (cpu.user + cpu.system) / Math.max(1, outcomes.length),
    latencies: Array.from(latencies, (ms) => Math.round(ms * 1000) / 1000)
  }
}

/** Closed loop: `count` handshakes, `concurrency` at a time. */
const run = async (url: string, count: number, concurrency: number, stopAt?: StopAt): Promise<RoundResult> => {
  const outcomes: Array<Outcome> = []
  let issued = 0
  const cpu = process.cpuUsage()
  const t0 = performance.now()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (issued < count) {
      issued++
      outcomes.push(await handshake(url, nextPatient(url), performance.now(), stopAt))
    }
  }))
  return summarize(outcomes, (performance.now() - t0) / 1000, cpu)
}

/** Open loop: `count` handshakes started at `rate` per second, each timed from its scheduled start. */
const paced = async (url: string, rate: number, count: number): Promise<RoundResult> => {
  const outcomes: Array<Promise<Outcome>> = []
  const cpu = process.cpuUsage()
  const t0 = performance.now()
  await new Promise<void>((resolve) => {
    const tick = () => {
      const due = Math.min(count, Math.floor(((performance.now() - t0) / 1000) * rate) + 1)
      while (outcomes.length < due) {
        outcomes.push(handshake(url, nextPatient(url), t0 + (outcomes.length * 1000) / rate))
      }
      if (outcomes.length < count) setTimeout(tick, 1)
      else resolve()
    }
    tick()
  })
  const settled = await Promise.all(outcomes)
  return summarize(settled, (performance.now() - t0) / 1000, cpu)
}

const held: Array<WebSocket> = []

/** Opens `count` connections, `batch` at a time, that never send `handshake.auth`. */
const hold = async (url: string, count: number, batch: number) => {
  const t0 = performance.now()
  let failed = 0
  let firstError: string | undefined
  while (held.length + failed < count) {
    const size = Math.min(batch, count - held.length - failed)
    const opened = await Promise.all(
      Array.from({ length: size }, () =>
        new Promise<WebSocket | undefined>((resolve) => {
          const ws = new WebSocket(url, { perMessageDeflate: false })
          ws.once("open", () => resolve(ws))
          ws.on("error", (e) => {
            firstError ??= e.message
            resolve(undefined)
          })
          ws.on("unexpected-response", (_req, res) => {
            firstError ??= `HTTP ${res.statusCode}`
            ws.terminate()
            resolve(undefined)
          })
        }))
    )
    for (const ws of opened) {
      if (ws === undefined) failed++
      else held.push(ws)
    }
  }
  return { opened: held.length, failed, firstError, seconds: (performance.now() - t0) / 1000 }
}

/** Drops every held connection and waits until each socket has closed. */
const release = async () => {
  const closed = held.map((ws) =>
    new Promise<void>((resolve) => {
      if (ws.readyState === WebSocket.CLOSED) return resolve()
      ws.once("close", () => resolve())
      ws.terminate()
    })
  )
  await Promise.all(closed)
  held.length = 0
  return { released: closed.length }
}

process.on("message", async (message: any) => {
  switch (message.cmd) {
    case "run":
      return process.send!(await run(message.url, message.count, message.concurrency, message.stopAt))
    case "paced":
      return process.send!(await paced(message.url, message.rate, message.count))
    case "hold":
      return process.send!(await hold(message.url, message.count, message.batch))
    case "release":
      return process.send!(await release())
    case "stop":
      return process.exit(0)
  }
})
process.send!({ ready: true, patients: patients.length })
