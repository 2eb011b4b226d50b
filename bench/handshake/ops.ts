/**
 * `pnpm bench handshake-ops`: Effect operations and fibers per handshake, counted (not timed), so that a change
 * to the handshake's path can be judged on a noisy machine. The HandshakeServer runs in this process on its test
 * fixture (real SQLite file, Node HTTP on port 0) under a `Supervisor` with the `OpSupervision` runtime flag; a
 * plain `ws` client (no Effect) makes BENCH_OPS_HANDSHAKES (2 000) complete handshakes one after another, then as
 * many BENCH_OPS_CONCURRENCY (16) at a time, then as many connections that close right after the upgrade. Prints operations and fibers per handshake.
 */
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as RuntimeFlags from "effect/RuntimeFlags"
import * as RuntimeFlagsPatch from "effect/RuntimeFlagsPatch"
import * as Supervisor from "effect/Supervisor"
import { createPrivateKey, createPublicKey, randomBytes, sign } from "node:crypto"
import { WebSocket } from "ws"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { fromContext, neuronLayer, ORG, PROVIDER } from "../../test/handshake/fixture.js"

const COUNT = Number(process.env.BENCH_OPS_HANDSHAKES ?? 2_000)
const CONCURRENT = Number(process.env.BENCH_OPS_CONCURRENCY ?? 16)
const PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex")

class Counter extends Supervisor.AbstractSupervisor<void> {
  ops = 0
  fibers = 0
  readonly value = Effect.void
  override onStart(): void {
    this.fibers++
  }
  override onEffect<A, E>(_fiber: Fiber.RuntimeFiber<A, E>, _effect: Effect.Effect<any, any, any>): void {
    this.ops++
  }
}

const patient = (i: number) => {
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, randomBytes(32)]), format: "der", type: "pkcs8" })
  const iat = Math.floor(Date.now() / 1000)
  const patient_agent_id = `ops-patient-${i}`
  const payload = Buffer.from(JSON.stringify({
    patient_agent_id,
    provider_npi: PROVIDER,
    organization_npi: ORG,
    consented_actions: ["read:summary"],
    iat,
    exp: iat + 3600
  }))
  return {
    key,
    auth: JSON.stringify({
      type: "handshake.auth",
      consent_token_payload: payload.toString("base64url"),
      consent_token_signature: sign(null, payload, key).toString("base64url"),
      patient_agent_id,
      patient_public_key: createPublicKey(key).export({ format: "jwk" }).x!,
      patient_endpoint: "https://patient.example.org/agent"
    })
  }
}

/** One handshake to `handshake.complete` (or only the upgrade), resolved once the socket has closed. */
const once = (url: string, p: ReturnType<typeof patient>, full: boolean) =>
  new Promise<string>((resolve) => {
    const ws = new WebSocket(url, { perMessageDeflate: false })
    let status = "closed"
    ws.on("open", () => (full ? ws.send(p.auth) : ws.close(1000)))
    ws.on("message", (data) => {
      const m = JSON.parse(data.toString())
      if (m.type === "handshake.challenge") {
        const signed = sign(null, Buffer.from(m.nonce, "hex"), p.key).toString("base64url")
        ws.send(JSON.stringify({ type: "handshake.challenge_response", signed_nonce: signed }))
      } else status = m.type === "handshake.complete" ? "complete" : `${m.code}`
    })
    ws.on("close", () => resolve(status))
  })

const counter = new Counter()
const patients = Array.from({ length: 200 }, (_, i) => patient(i))

const program = Effect.gen(function*() {
  const dir = yield* Sqlite.makeTempDir("handshake-ops-")
  const context = yield* Layer.build(neuronLayer(dir)).pipe(Effect.orDie)
  const neuron = fromContext(context)
  const phase = (name: string, full: boolean, concurrency = 1) =>
    Effect.promise(async () => {
      for (let i = 0; i < 50; i++) await once(neuron.url, patients[i % patients.length]!, full)
      const ops = counter.ops
      const fibers = counter.fibers
      const cpu = process.cpuUsage()
      let next = 0
      await Promise.all(Array.from({ length: concurrency }, async () => {
        while (next < COUNT) {
          const i = next++
          const status = await once(neuron.url, patients[i % patients.length]!, full)
          if (status !== (full ? "complete" : "closed")) throw new Error(`handshake ${i}: ${status}`)
        }
      }))
      const used = process.cpuUsage(cpu)
      console.log(
        `${name}: ${((counter.ops - ops) / COUNT).toFixed(1)} Effect operations, ${
          ((counter.fibers - fibers) / COUNT).toFixed(2)
        } fibers per handshake; CPU of server and client together ${
          ((used.user + used.system) / COUNT).toFixed(0)
        } µs (noisy)`
      )
    })
  yield* phase("complete handshake", true)
  // Concurrent completions share transactions (group commit): the count per handshake depends on how many do.
  yield* phase(`complete handshake, ${CONCURRENT} at a time`, true, CONCURRENT)
  yield* phase("upgrade, then the client closes", false)
})

await Effect.runPromise(
  program.pipe(
    Effect.scoped,
    Effect.supervised(counter),
    Effect.withRuntimeFlagsPatch(RuntimeFlagsPatch.enable(RuntimeFlags.OpSupervision))
  )
)
