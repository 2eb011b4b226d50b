/**
 * The Neuron embedded in a larger Effect program: the host provides the platform pieces (its own HTTP server on
 * port 0, Node's HTTP client, SQLite through `Neuron.layerSqlite`) and its config, then uses the `Neuron` service
 * from its own code. Closing the host's scope stops the Neuron cleanly.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpServer from "@effect/platform/HttpServer"
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { createServer } from "node:http"
import * as CareAgentClient from "../../src/careagent/CareAgentClient.js"
import { makePatientKey } from "../../src/careagent/CareAgentKeys.js"
import { NeuronConfig } from "../../src/config/NeuronConfig.js"
import * as Neuron from "../../src/Neuron.js"
import * as Sqlite from "../../src/sql/Sqlite.js"
import type { StorageUnavailable } from "../../src/sql/StorageUnavailable.js"
import {
  call,
  childScope,
  CLINIC,
  npiOf,
  readHealthFile,
  readRecords,
  testSettings,
  waitFor
} from "../support/neuron.js"
import { startRegistry } from "../support/registry.js"

/** The host's own service: the clinic's scheduling system, which onboards a provider through the Neuron. */
class Scheduling extends Context.Tag("host/Scheduling")<Scheduling, {
  readonly onboard: (npi: string, name: string) => Effect.Effect<string, Neuron.InvalidProvider | StorageUnavailable>
}>() {}

const SchedulingLive = Layer.effect(
  Scheduling,
  Effect.map(Neuron.Neuron, (neuron) =>
    Scheduling.of({
      onboard: (npi, name) =>
        neuron.addProvider({ provider_npi: npi, provider_name: name, provider_types: ["physician"] }).pipe(
          Effect.map((p) => p.status)
        )
    }))
)

describe("Neuron embedded in a host program", () => {
  it.scopedLive(
    "a host program provides the Neuron's layer (its own NodeHttpServer on port 0, NodeHttpClient, Neuron.layerSqlite), adds a provider from its own code, sees it in the registry, completes a handshake on its server (counted in /metrics), and closing its scope stops the Neuron (health file stopped)",
    () =>
      Effect.gen(function*() {
        const registry = yield* startRegistry()
        const dataDir = yield* Sqlite.makeTempDir("host-")
        const settings = testSettings({ dataDir, registryUrls: [registry.url] })

        // The host's application layer, as its own main would compose it.
        const HostLive = SchedulingLive.pipe(
          Layer.provideMerge(Neuron.layer),
          Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" })),
          Layer.provide([Neuron.layerSqlite, NodeHttpClient.layerUndici]),
          Layer.provide(NeuronConfig.layer(settings)),
          Layer.provide(NodeContext.layer)
        )
        const host = yield* childScope
        const context = yield* Layer.build(HostLive).pipe(Scope.extend(host))
        const neuron = Context.get(context, Neuron.Neuron)
        const scheduling = Context.get(context, Scheduling)
        const address = Context.get(context, HttpServer.HttpServer).address
        const url = address._tag === "TcpAddress" ? `http://127.0.0.1:${address.port}` : ""

        // The host follows the Neuron's health until it is registered.
        const healthy = yield* neuron.healthChanges.pipe(
          Stream.filter((h) => h.status === "healthy"),
          Stream.runHead,
          Effect.timeout("10 seconds")
        )
        assert.deepInclude(Option.getOrThrow(healthy), { registration: "registered" })
        assert.deepStrictEqual(neuron.identity.organization_npi, CLINIC.npi)

        assert.strictEqual(yield* scheduling.onboard(npiOf(91), "Dr. Mei Tanaka"), "registered")
        // The host's bad input is refused with the field named, and nothing is stored.
        const badInput = yield* Effect.flip(scheduling.onboard("1234567898", "Dr. Wrong Digit"))
        assert.strictEqual(badInput._tag, "InvalidProvider")
        assert.match(badInput.message, /^provider_npi: must be a valid NPI/)
        const remote = yield* waitFor(
          "the registry to know the provider",
          Effect.map(call(registry.url, "GET", `/v1/registry/${npiOf(91)}`), (a) =>
            a.status === 200 ? Option.some(a.body) : Option.none())
        )
        assert.deepInclude(remote, { npi: npiOf(91), name: "Dr. Mei Tanaka", organization_npi: CLINIC.npi })
        // The same Neuron answers on the host's server.
        const listed = (yield* call(url, "GET", "/v1/providers")).body.providers
        assert.deepStrictEqual(listed.map((p: any) => [p.provider_npi, p.status]), [[npiOf(91), "registered"]])
        assert.strictEqual((yield* neuron.registration).state, "registered")
        assert.deepStrictEqual(
          (yield* neuron.listProviders).map((p) =>
            p.npi
          ),
          [npiOf(91)]
        )
        const sync = yield* neuron.syncProviders
        assert.deepStrictEqual(sync, { mode: "diff", added: [], removed: [], refused: [] })

        // The handshake on the host's own NodeHttpServer: its upgrades are taken from that Node server (found
        // by its address), and /metrics counts the completion.
        const completed = yield* CareAgentClient.handshake({
          url: url.replace("http:", "ws:") + "/ws/handshake",
          key: yield* makePatientKey,
          patient_agent_id: "host-patient-1",
          provider_npi: npiOf(91),
          organization_npi: CLINIC.npi,
          consented_actions: ["read:summary"],
          patient_endpoint: "https://patient.example.org/agent"
        })
        assert.strictEqual(completed.status, "new")
        const metrics = yield* Effect.promise(() => fetch(url + "/metrics").then((r) => r.text()))
        assert.include(metrics, "neuron_handshakes_total{outcome=\"completed\"} 1")

        yield* Scope.close(host, Exit.void)
        const file = yield* readHealthFile(dataDir)
        assert.deepInclude(file, { status: "stopped", registration: "registered", next_attempt_at: null })
        // Stopped: the server is closed.
        const refused = yield* Effect.promise(() => fetch(url + "/health").then(() => "answered", () => "refused"))
        assert.strictEqual(refused, "refused")
        const records = yield* readRecords(dataDir)
        assert.deepStrictEqual(records.events, [
          "RegistrationStarted",
          "Registered",
          "ProviderAdded",
          "ProviderRegistered"
        ])
        assert.isTrue(records.verification.ok)
      })
  )
})
