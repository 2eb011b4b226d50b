/**
 * Crash recovery of in-flight provider operations, with the real registry: a provider left `pending` or `removing`
 * (a registry that was away, or a crash in the middle of the call) reaches the registry as soon as it answers
 * (PROTOCOL.md section 3), within seconds of a restart and at a recovery, not at the periodic anti-entropy (5
 * minutes, left at its default here so that it cannot be what sends them).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Sqlite from "../../src/sql/Sqlite.js"
import {
  call,
  childScope,
  freePort,
  npiOf,
  readRecords,
  startNeuron,
  startRegistryOn,
  waitFor
} from "../support/neuron.js"
import { healthy } from "../support/process.js"

/** The real registry on a port of its own, in a scope the test closes to take it away (same port and data back). */
const registryToStop = Effect.gen(function*() {
  const port = yield* freePort
  const dataDir = yield* Sqlite.makeTempDir("axon-")
  const scope = yield* childScope
  const registry = yield* startRegistryOn(port, { dataDir }).pipe(Scope.extend(scope))
  return { registry, scope, restart: startRegistryOn(port, { dataDir }) }
})

/** The NPIs the registry lists for the Neuron's registration (its own token, read from the Neuron's file). */
const registryProviders = (registryUrl: string, dataDir: string) =>
  Effect.gen(function*() {
    const records = yield* readRecords(dataDir)
    const id = records.registration.registration_id as string
    const answer = yield* call(registryUrl, "GET", `/v1/neurons/${id}/providers`, { token: records.bearerToken! })
    return (answer.body.providers as ReadonlyArray<{ provider_npi: string }>).map((p) => p.provider_npi).sort()
  })

/** Waits (at most `ms`) until the registry lists exactly `npis`. */
const registryListsWithin = (registryUrl: string, dataDir: string, npis: ReadonlyArray<string>, ms: number) =>
  waitFor(
    `the registry to list exactly ${npis.join(", ")}`,
    Effect.map(registryProviders(registryUrl, dataDir), (listed) =>
      JSON.stringify(listed) === JSON.stringify([...npis].sort()) ? Option.some(listed) : Option.none()),
    ms
  )

describe("in-flight provider operations resume as soon as the registry answers (crash recovery)", () => {
  it.scopedLive(
    "a Neuron restarted on a data folder holding a pending and a removing provider sends both within a few seconds of the restart, not at the periodic anti-entropy",
    () =>
      Effect.gen(function*() {
        const { registry, restart, scope: registryScope } = yield* registryToStop
        const neuronScope = yield* childScope
        const dataDir = yield* Sqlite.makeTempDir("neuron-")
        const first = yield* startNeuron({
          registryUrls: [registry.url],
          dataDir,
          overrides: { backoffCeiling: "1 second" }
        })
          .pipe(Scope.extend(neuronScope))
        yield* healthy(first.url)
        const kept = npiOf(81)
        const leaving = npiOf(82)
        const arriving = npiOf(83)
        for (const npi of [kept, leaving]) {
          assert.strictEqual(
            (yield* call(first.url, "POST", "/v1/providers", { body: { provider_npi: npi } })).status,
            201
          )
        }
        // The registry goes away: the removal and the addition are kept, in flight.
        yield* Scope.close(registryScope, Exit.void)
        assert.strictEqual((yield* call(first.url, "DELETE", `/v1/providers/${leaving}`)).status, 202)
        assert.strictEqual(
          (yield* call(first.url, "POST", "/v1/providers", { body: { provider_npi: arriving } })).status,
          202
        )
        // The Neuron stops with both in flight (the state a kill in the middle of the calls leaves).
        yield* Scope.close(neuronScope, Exit.void)
        const left = yield* readRecords(first.dataDir)
        assert.deepStrictEqual(left.providers.map((p) => [p.npi, p.status]), [
          [kept, "registered"],
          [leaving, "removing"],
          [arriving, "pending"]
        ])

        // The registry is back, on the same data; the registry still has the old list.
        const again = yield* restart
        assert.deepStrictEqual(yield* registryProviders(again.url, first.dataDir), [kept, leaving].sort())
        // Restarted, the Neuron's first heartbeat succeeds and both operations follow within seconds.
        const second = yield* startNeuron({ registryUrls: [again.url], dataDir: first.dataDir })
        yield* healthy(second.url)
        yield* registryListsWithin(again.url, second.dataDir, [kept, arriving], 5_000)
        const records = yield* waitFor(
          "both providers settled locally",
          Effect.map(readRecords(second.dataDir), (r) =>
            r.providers.every((p) =>
                p.status === "registered" || p.status === "removed"
              )
              ? Option.some(r)
              : Option.none())
        )
        assert.deepStrictEqual(records.providers.map((p) => [p.npi, p.status]), [
          [kept, "registered"],
          [leaving, "removed"],
          [arriving, "registered"]
        ])
        assert.deepStrictEqual(records.events.slice(-2).sort(), ["ProviderRegistered", "ProviderRemoved"])
        assert.isTrue(records.verification.ok)
      })
  )

  it.scopedLive(
    "the registry away then back: a provider added while it was away (pending) reaches it at the recovery, without a restart",
    () =>
      Effect.gen(function*() {
        const { registry, restart, scope: registryScope } = yield* registryToStop
        const neuron = yield* startNeuron({
          registryUrls: [registry.url],
          overrides: { heartbeatInterval: "1 second", backoffBase: "100 millis", backoffCeiling: "500 millis" }
        })
        yield* healthy(neuron.url)
        yield* Scope.close(registryScope, Exit.void)
        const arriving = npiOf(84)
        const added = yield* call(neuron.url, "POST", "/v1/providers", { body: { provider_npi: arriving } })
        assert.strictEqual(added.status, 202)
        yield* waitFor(
          "the Neuron to notice the registry is away",
          Effect.map(call(neuron.url, "GET", "/health"), (a) =>
            a.body?.status === "degraded" ? Option.some(true) : Option.none())
        )
        const back = yield* restart
        yield* healthy(neuron.url)
        yield* registryListsWithin(back.url, neuron.dataDir, [arriving], 5_000)
        const provider = yield* waitFor(
          "the provider recorded as registered",
          Effect.map(call(neuron.url, "GET", "/v1/providers"), (a) =>
            Option.fromNullable(a.body.providers.find((p: any) =>
              p.provider_npi === arriving && p.status === "registered"
            )))
        )
        assert.isString(provider.provider_id)
      })
  )
})
