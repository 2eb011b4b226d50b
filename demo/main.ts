/**
 * `pnpm demo`: the whole flow on one machine, each step printed. An Axon registry, a Neuron registered with it,
 * one provider, and a simulated patient's CareAgent completing the consent handshake (twice: the second finds
 * the existing relationship), revoking its consent over HTTP, shaking hands again (a new relationship) and revoking
 * that one over the handshake socket (`consent.revoke` as the first message). Everything lives in a temporary
 * folder and on free loopback ports.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpServer from "@effect/platform/HttpServer"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import { join } from "node:path"
import { handshake, handshakeUrl } from "../src/careagent/CareAgentClient.js"
import { makePatientKey } from "../src/careagent/CareAgentKeys.js"
import { revoke, revokeOverSocket } from "../src/careagent/CareAgentRevocation.js"
import { defaults, NeuronConfig } from "../src/config/NeuronConfig.js"
import type { Npi } from "../src/domain/Npi.js"
import * as NodeServer from "../src/http/NodeServer.js"
import * as Neuron from "../src/Neuron.js"
import * as AxonRegistry from "../src/registry/AxonRegistry.js"
import * as Sqlite from "../src/sql/Sqlite.js"

const ORGANIZATION = { npi: "1234567893" as Npi, name: "Riverside Family Practice (demo)" }
const PROVIDER = { npi: "1558598797" as Npi, name: "Dr. Ada Lovelace" }

let n = 0
const step = (text: string) => Effect.sync(() => console.log(`\n${++n}. ${text}`))
const show = (label: string, value: unknown) =>
  Effect.sync(() => console.log(`   ${label}: ${typeof value === "string" ? value : JSON.stringify(value)}`))

const demo = Effect.gen(function*() {
  const dataDir = yield* Sqlite.makeTempDir("neuron-demo-")

  yield* step("Starting an Axon registry on a free loopback port")
  const registry = yield* Layer.build(
    AxonRegistry.layer({ dataDir: join(dataDir, "axon"), enrollmentToken: Option.none() }).pipe(
      Layer.provideMerge(NodeServer.layer({ host: "127.0.0.1", port: 0 }))
    )
  )
  const registryUrl = NodeServer.urlOf(Context.get(registry, HttpServer.HttpServer))
  yield* show("registry", registryUrl)

  yield* step("Starting a Neuron for the organization, pointed at that registry")
  const server = yield* Layer.build(NodeServer.layer({ host: "127.0.0.1", port: 0 }))
  const neuronUrl = NodeServer.urlOf(Context.get(server, HttpServer.HttpServer))
  const settings = {
    ...defaults(),
    organization: Option.some(ORGANIZATION),
    registryUrls: [registryUrl],
    dataDir: join(dataDir, "neuron"),
    publicUrl: neuronUrl,
    heartbeatInterval: Duration.seconds(5)
  }
  const context = yield* Layer.build(
    Neuron.layer.pipe(
      Layer.provide([Neuron.layerSqlite, NodeHttpClient.layerUndici, Layer.succeedContext(server)]),
      Layer.provide(NeuronConfig.layer(settings)),
      Layer.provide(NodeContext.layer)
    )
  )
  const neuron = Context.get(context, Neuron.Neuron)
  yield* show("neuron", neuronUrl)
  yield* show("organization", `${ORGANIZATION.name}, NPI ${ORGANIZATION.npi}`)

  yield* step("Waiting for the Neuron to register with the registry")
  const registered = yield* neuron.registration.pipe(
    Effect.filterOrFail((r) => r.state === "registered"),
    Effect.retry(Schedule.spaced(Duration.millis(100)).pipe(Schedule.upTo(Duration.seconds(20))))
  )
  yield* show("registration_id", registered.registration_id)
  yield* show("health", yield* neuron.health)

  yield* step("Adding a provider (stored first, then registered with the registry)")
  const provider = yield* neuron.addProvider({
    provider_npi: PROVIDER.npi,
    provider_name: PROVIDER.name,
    provider_types: ["physician"]
  })
  yield* show("provider", { npi: provider.npi, name: provider.name, status: provider.status })
  const client = yield* HttpClient.HttpClient
  const entry = yield* client.get(`${registryUrl}/v1/registry/${PROVIDER.npi}`).pipe(Effect.flatMap((r) => r.json))
  yield* show("the registry's discovery answer", entry)

  yield* step("A patient's CareAgent makes a key pair and signs a consent token")
  const key = yield* makePatientKey
  yield* show("patient public key", key.publicKeyB64u)
  const request = {
    url: handshakeUrl(neuronUrl),
    key,
    patient_agent_id: "patient-agent-demo-0001",
    provider_npi: PROVIDER.npi,
    consented_actions: ["chart.read", "message.send"],
    organization_npi: ORGANIZATION.npi,
    patient_endpoint: "https://patient-agent.example/demo"
  }

  yield* step("Handshake: auth -> challenge -> signed nonce -> complete")
  const first = yield* handshake(request).pipe(Logger.withMinimumLogLevel(LogLevel.Debug))
  yield* show("result", first)

  yield* step("The same patient again: the existing relationship, no duplicate")
  const second = yield* handshake(request)
  yield* show("result", second)

  yield* step("The patient revokes its consent: POST /v1/consent/revoke, signed with its key")
  const revoked = yield* revoke({ neuronUrl, key, relationship_id: first.relationship_id })
  yield* show("revoked", revoked)
  const status = yield* client.get(`${neuronUrl}/v1/relationships/${first.relationship_id}`).pipe(
    Effect.flatMap((r) => r.json)
  )
  yield* show("the relationship now", status)

  yield* step("A handshake after the revocation makes a new relationship")
  const third = yield* handshake(request)
  yield* show("result", third)

  yield* step("The patient revokes that one over the handshake socket: consent.revoke as the first message")
  const overSocket = yield* revokeOverSocket({ url: request.url, key, relationship_id: third.relationship_id })
  yield* show("revoked over the socket", overSocket)

  yield* step("Stopping (handshake sockets close with 1001, the health file says stopped)")
}).pipe(Effect.scoped)

demo.pipe(
  Effect.provide([NodeHttpClient.layerUndici, Logger.pretty]),
  Effect.tapErrorCause((cause) => Effect.logError("the demo failed", cause)),
  NodeRuntime.runMain({ disablePrettyLogger: true })
)
