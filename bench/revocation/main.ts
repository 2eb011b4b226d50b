/**
 * `pnpm bench revocation`: revocations per second against handshakes per second, on the same machine, the same
 * Neuron and the same database. The whole Neuron runs in this process as a host embeds it (Neuron.layer with its
 * HTTP API, an Axon registry beside it, SQLite on /dev/shm when there is one, logs into /dev/null); patients are
 * real clients: the `ws` handshake client and `fetch` for `POST /v1/consent/revoke`.
 *
 * Rounds alternate: a round makes `PER_ROUND` relationships by handshake, then revokes every one of them, both
 * with `CONCURRENCY` patients at once, so that both phases see the same machine load and the same database size.
 * Client work (signing) is inside both timings. Prints each round and the medians.
 * Environment: BENCH_ROUNDS (5), BENCH_PER_ROUND (300), BENCH_CONCURRENCY (16), BENCH_DIR (/dev/shm or the tmp dir).
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpServer from "@effect/platform/HttpServer"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as CareAgentClient from "../../src/careagent/CareAgentClient.js"
import { makePatientKey, type PatientKeyPair, signRevocation } from "../../src/careagent/CareAgentKeys.js"
import { defaults, NeuronConfig } from "../../src/config/NeuronConfig.js"
import { Npi } from "../../src/domain/Npi.js"
import * as NodeServer from "../../src/http/NodeServer.js"
import * as Neuron from "../../src/Neuron.js"
import * as AxonRegistry from "../../src/registry/AxonRegistry.js"

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)
const PER_ROUND = Number(process.env.BENCH_PER_ROUND ?? 300)
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16)
const BASE = process.env.BENCH_DIR ?? (Fs.existsSync("/dev/shm") ? "/dev/shm" : Os.tmpdir())
const ORG = Npi.make("1234567893")
const PROVIDER = Npi.make("1558598797")

const dir = Fs.mkdtempSync(Path.join(BASE, "bench-revocation-"))
const devNull = Fs.openSync("/dev/null", "w")
const logger = Logger.replace(
  Logger.defaultLogger,
  Logger.map(Logger.logfmtLogger, (line) => void Fs.writeSync(devNull, line + "\n"))
)

const scope = Effect.runSync(Scope.make())
const registryContext = await Effect.runPromise(
  Layer.buildWithScope(
    AxonRegistry.layer({ dataDir: Path.join(dir, "axon"), enrollmentToken: Option.none() }).pipe(
      Layer.provideMerge(NodeServer.layer({ host: "127.0.0.1", port: 0 })),
      Layer.provide(logger)
    ),
    scope
  )
)
const registryUrl = NodeServer.urlOf(Context.get(registryContext, HttpServer.HttpServer))
const settings = {
  ...defaults(),
  organization: Option.some({ npi: ORG, name: "Bench Clinic" }),
  dataDir: dir,
  registryUrls: [registryUrl],
  publicUrl: "http://127.0.0.1"
}
const neuronContext = await Effect.runPromise(
  Layer.buildWithScope(
    Neuron.layer.pipe(
      Layer.provideMerge(NodeServer.layer({ host: "127.0.0.1", port: 0 })),
      Layer.provide([Neuron.layerSqlite, NodeHttpClient.layerUndici]),
      Layer.provide(NeuronConfig.layer(settings)),
      Layer.provide(NodeContext.layer),
      Layer.provide(logger)
    ),
    scope
  )
)
const url = NodeServer.urlOf(Context.get(neuronContext, HttpServer.HttpServer))
await Effect.runPromise(
  Context.get(neuronContext, Neuron.Neuron).addProvider({ provider_npi: PROVIDER, provider_name: "Dr. Bench" }).pipe(
    Effect.provide(logger)
  )
)

/** Runs `task(i)` for i in 0..n-1 with `CONCURRENCY` at once; resolves with the seconds it took. */
const timed = async (n: number, task: (i: number) => Promise<void>) => {
  let next = 0
  const started = performance.now()
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < n) await task(next++)
  }))
  return (performance.now() - started) / 1000
}

const handshake = (key: PatientKeyPair, i: number) =>
  Effect.runPromise(CareAgentClient.handshake({
    url: CareAgentClient.handshakeUrl(url),
    key,
    patient_agent_id: `bench-patient-${i}`,
    provider_npi: PROVIDER,
    consented_actions: ["read:summary"],
    patient_endpoint: "https://patient.example.org/agent"
  }))

const revoke = async (key: PatientKeyPair, relationship_id: string) => {
  const revoked_at = new Date().toISOString()
  const response = await fetch(`${url}/v1/consent/revoke`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ relationship_id, revoked_at, signature: signRevocation(key, relationship_id, revoked_at) })
  })
  if (response.status !== 200) throw new Error(`revocation answered ${response.status}: ${await response.text()}`)
  await response.arrayBuffer()
}

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

process.stdout.write(
  `revocation bench: ${ROUNDS} rounds of ${PER_ROUND} handshakes then ${PER_ROUND} revocations, ` +
    `${CONCURRENCY} at once; data in ${dir}\n`
)
const handshakeRates: Array<number> = []
const revocationRates: Array<number> = []
let patient = 0
for (let round = 1; round <= ROUNDS; round++) {
  const keys = await Promise.all(Array.from({ length: PER_ROUND }, () => Effect.runPromise(makePatientKey)))
  const made: Array<string> = []
  const first = patient
  const handshakeSeconds = await timed(PER_ROUND, async (i) => {
    made[i] = (await handshake(keys[i]!, first + i)).relationship_id
  })
  patient += PER_ROUND
  const revocationSeconds = await timed(PER_ROUND, (i) => revoke(keys[i]!, made[i]!))
  handshakeRates.push(PER_ROUND / handshakeSeconds)
  revocationRates.push(PER_ROUND / revocationSeconds)
  process.stdout.write(
    `round ${round}: handshakes ${(PER_ROUND / handshakeSeconds).toFixed(0)}/s, ` +
      `revocations ${(PER_ROUND / revocationSeconds).toFixed(0)}/s\n`
  )
}
const h = median(handshakeRates)
const r = median(revocationRates)
process.stdout.write(
  `median: handshakes ${h.toFixed(0)}/s, revocations ${r.toFixed(0)}/s, ratio revocations/handshakes ${
    (r / h).toFixed(2)
  }\n`
)
await Effect.runPromise(Scope.close(scope, Exit.void))
Fs.rmSync(dir, { recursive: true, force: true })
process.exit(0)
