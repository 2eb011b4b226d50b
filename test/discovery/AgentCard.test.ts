/**
 * PROTOCOL.md section 9, the agent card: `GET /.well-known/agent.json` on a real Neuron (public even with an admin
 * token), built from live state, a provider added or removed showing in the next answer; and the card kept built,
 * rebuilt only when the providers change.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { AgentCard } from "../../src/discovery/AgentCard.js"
import { NEURON_VERSION, PROTOCOL_VERSION } from "../../src/protocol/Version.js"
import { RegistrationStore } from "../../src/store/RegistrationStore.js"
import { call, CLINIC, neuronWithToken, npiOf, untilHealthy } from "../support/neuron.js"

const ADMIN = "clinic-admin-0c4e8a2f6b1d9375"

describe("agent card (section 9)", () => {
  it.scopedLive(
    "GET /.well-known/agent.json is public and built from live state: name, description, url, version, capabilities, default modes, one skill per provider (id provider:<npi>, name, tags = its types), careagent {organization_npi, handshake_endpoint, protocol_version}; a provider added or removed shows in the next answer",
    () =>
      Effect.gen(function*() {
        // Asked for before the Neuron has registered: the card does not wait for the registry.
        const { neuron } = yield* neuronWithToken({ token: ADMIN, healthy: false })
        const empty = yield* call(neuron.url, "GET", "/.well-known/agent.json")
        assert.strictEqual(empty.status, 200)
        assert.include(empty.contentType, "application/json")
        assert.deepStrictEqual(empty.body, {
          id: `neuron-${CLINIC.npi}`,
          name: CLINIC.name,
          description: empty.body.description,
          url: "https://neuron.riverside.test",
          version: NEURON_VERSION,
          provider: { organization: CLINIC.name, url: "https://neuron.riverside.test" },
          capabilities: { streaming: false, pushNotifications: false, stateTransitionHistory: false },
          defaultInputModes: ["application/json"],
          defaultOutputModes: ["application/json"],
          skills: [],
          careagent: {
            organization_npi: CLINIC.npi,
            handshake_endpoint: "wss://neuron.riverside.test/ws/handshake",
            protocol_version: PROTOCOL_VERSION,
            revocation_endpoint: "https://neuron.riverside.test/v1/consent/revoke",
            practice_npi: CLINIC.npi,
            organization: CLINIC.name,
            consent_required: true
          }
        })
        assert.include(empty.body.description, CLINIC.name)

        const admin = { token: ADMIN }
        yield* untilHealthy(neuron.url)
        const add = (n: number, body: Record<string, unknown>) =>
          call(neuron.url, "POST", "/v1/providers", { ...admin, body: { provider_npi: npiOf(n), ...body } })
        assert.strictEqual(
          (yield* add(141, {
            provider_name: "Dr. Ada Lovelace",
            provider_types: ["physician"],
            specialty: "cardiology"
          }))
            .status,
          201
        )
        const one = (yield* call(neuron.url, "GET", "/.well-known/agent.json")).body
        assert.deepStrictEqual(one.skills.map((s: any) => [s.id, s.name, s.tags]), [
          [`provider:${npiOf(141)}`, "Dr. Ada Lovelace", ["physician"]]
        ])
        assert.include(one.skills[0].description, "cardiology")

        assert.strictEqual((yield* add(142, { provider_types: ["nurse", "physician"] })).status, 201)
        const two = (yield* call(neuron.url, "GET", "/.well-known/agent.json")).body
        assert.deepStrictEqual(two.skills.map((s: any) => [s.id, s.name, s.tags]), [
          [`provider:${npiOf(141)}`, "Dr. Ada Lovelace", ["physician"]],
          [`provider:${npiOf(142)}`, `Provider ${npiOf(142)}`, ["nurse", "physician"]]
        ])

        const removed = yield* call(neuron.url, "DELETE", `/v1/providers/${npiOf(141)}`, admin)
        assert.strictEqual(removed.status, 204)
        const after = (yield* call(neuron.url, "GET", "/.well-known/agent.json")).body
        assert.deepStrictEqual(after.skills.map((s: any) => s.id), [`provider:${npiOf(142)}`])
      })
  )

  it.effect("the card is kept built: repeated requests build it once; it is rebuilt after a provider change only", () =>
    Effect.gen(function*() {
      const card = yield* AgentCard
      const store = yield* RegistrationStore
      const first = yield* card.get
      yield* card.get
      yield* card.get
      assert.strictEqual(yield* card.builds, 1)
      assert.deepStrictEqual(first.skills, [])
      yield* store.addProvider({ npi: npiOf(151), name: "Dr. Grace Hopper" })
      const second = yield* card.get
      yield* card.get
      assert.strictEqual(yield* card.builds, 2)
      assert.deepStrictEqual(second.skills.map((s) => s.name), ["Dr. Grace Hopper"])
      // The same details again change nothing: no rebuild.
      yield* store.addProvider({ npi: npiOf(151), name: "Dr. Grace Hopper" })
      yield* card.get
      assert.strictEqual(yield* card.builds, 2)
      yield* store.requestProviderRemoval(npiOf(151))
      assert.deepStrictEqual((yield* card.get).skills, [])
      assert.strictEqual(yield* card.builds, 3)
    }).pipe(
      Effect.provide(
        AgentCard.layer({ organization_npi: CLINIC.npi, organization_name: CLINIC.name, publicUrl: "http://n.test/" })
          .pipe(Layer.provideMerge(RegistrationStore.layerMemory))
      )
    ))

  it("NEURON_VERSION is package.json's version", () => {
    const pkg = JSON.parse(Fs.readFileSync(Path.resolve(import.meta.dirname, "../../package.json"), "utf8"))
    assert.strictEqual(NEURON_VERSION, pkg.version)
  })
})
