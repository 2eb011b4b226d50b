/**
 * No secret leaves the Neuron: after a life with a registration, providers, a registration lost to the registry's
 * TTL and registered again (so two bearer tokens), under an enrollment token and an admin token, with an API key
 * made, used, revoked and used again, none of them appears in any log line (every level), audit entry, event row,
 * the health file, the database file (the API key only as its hash), or any response of the local API, error
 * bodies included.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { createHash } from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { HEALTH_FILE } from "../../src/health/NeuronHealth.js"
import {
  assertNoSecret,
  call,
  captureLogs,
  CLINIC,
  npiOf,
  readRecords,
  startNeuron,
  waitFor,
  waitUntil
} from "../support/neuron.js"
import { expireByTtl, startRegistryWithServices } from "../support/registry.js"

const ENROLLMENT = "enroll-4b1d9e7f2a6c8e03"
const ADMIN = "admin-9d2f7c4e1a8b6053"

describe("Neuron secrets", () => {
  it.scopedLive(
    "no bearer token (nor the enrollment token, admin token or API key) in any log line at level All, audit entry, event row, health file, database file, or response (/health, /v1/status, /v1/providers, /v1/api-keys, /metrics, the agent card /.well-known/agent.json, relationship and revocation routes, error bodies)",
    () => {
      const logs = captureLogs()
      return Effect.gen(function*() {
        const registry = yield* startRegistryWithServices({ enrollmentToken: ENROLLMENT })
        const neuron = yield* startNeuron({
          registryUrls: [registry.url],
          overrides: {
            heartbeatInterval: "1 second",
            backoffBase: "50 millis",
            backoffCeiling: "200 millis",
            enrollmentToken: Option.some(Redacted.make(ENROLLMENT)),
            adminToken: Option.some(Redacted.make(ADMIN))
          }
        })
        const admin = { token: ADMIN }
        yield* waitUntil("healthy", Effect.map(call(neuron.url, "GET", "/health"), (a) => a.body?.status === "healthy"))
        const added = yield* call(neuron.url, "POST", "/v1/providers", { ...admin, body: { provider_npi: npiOf(81) } })
        assert.strictEqual(added.status, 201)
        const firstToken = (yield* readRecords(neuron.dataDir)).bearerToken!
        const firstId = (yield* call(neuron.url, "GET", "/v1/status", admin)).body.registration_id as string

        // The registry deregisters it (TTL): the Neuron registers again and gets a second token.
        yield* expireByTtl(registry, firstId)
        const records = yield* waitFor(
          "the second registration with its provider",
          Effect.map(
            readRecords(neuron.dataDir),
            (r) =>
              r.bearerToken !== null && r.bearerToken !== firstToken && r.events.at(-1) === "ProviderRegistered"
                ? Option.some(r)
                : Option.none()
          )
        )
        const secondToken = records.bearerToken!

        // An API key: made, used in both headers (a success, a refusal, a bad body), revoked, used again.
        const made = yield* call(neuron.url, "POST", "/v1/api-keys", {
          ...admin,
          body: { name: "secret-scan key", scope: "admin" }
        })
        assert.strictEqual(made.status, 201)
        const apiKey: string = made.body.key
        const keyed = [
          yield* call(neuron.url, "GET", "/v1/status", { headers: { "x-api-key": apiKey } }),
          yield* call(neuron.url, "GET", "/v1/api-keys", { token: apiKey }),
          yield* call(neuron.url, "POST", "/v1/providers", { token: apiKey, raw: "{not json" }),
          yield* call(neuron.url, "POST", "/v1/api-keys", { token: apiKey, body: { name: "", scope: "root" } }),
          yield* call(neuron.url, "DELETE", `/v1/api-keys/${made.body.id}`, { token: apiKey }),
          yield* call(neuron.url, "GET", "/v1/status", { headers: { "x-api-key": apiKey } }),
          yield* call(neuron.url, "GET", "/v1/status", { token: apiKey })
        ]
        assert.deepStrictEqual(keyed.map((a) => a.status), [200, 200, 400, 400, 204, 401, 401])

        // Every answer the local API gives, errors included.
        const answers = [
          yield* call(neuron.url, "GET", "/health"),
          yield* call(neuron.url, "GET", "/v1/status", admin),
          yield* call(neuron.url, "GET", "/v1/providers", admin),
          yield* call(neuron.url, "GET", "/v1/relationships", admin),
          yield* call(neuron.url, "GET", "/metrics"),
          yield* call(neuron.url, "GET", "/openapi.json"),
          yield* call(neuron.url, "GET", "/docs"),
          yield* call(neuron.url, "GET", "/v1/status"),
          yield* call(neuron.url, "GET", "/v1/status", { token: firstToken }),
          yield* call(neuron.url, "GET", "/v1/status", { token: secondToken }),
          yield* call(neuron.url, "POST", "/v1/providers", { ...admin, body: { provider_npi: "1234567898" } }),
          yield* call(neuron.url, "POST", "/v1/providers", { ...admin, raw: "{not json" }),
          yield* call(neuron.url, "DELETE", `/v1/providers/${npiOf(89)}`, admin),
          yield* call(neuron.url, "GET", "/nowhere"),
          // Section 8 and 9: the agent card (public), a relationship and the revocation's refusals.
          yield* call(neuron.url, "GET", "/.well-known/agent.json"),
          yield* call(neuron.url, "GET", "/v1/relationships/no-such-relationship", admin),
          yield* call(neuron.url, "POST", "/v1/relationships/no-such-relationship/terminate", {
            ...admin,
            body: { reason: "closing" }
          }),
          yield* call(neuron.url, "POST", "/v1/consent/revoke", {
            body: {
              relationship_id: "no-such-relationship",
              revoked_at: new Date().toISOString(),
              signature: "A".repeat(86)
            }
          }),
          yield* call(neuron.url, "POST", "/v1/consent/revoke", { body: { relationship_id: "x" } })
        ]
        assert.deepStrictEqual(answers.map((a) => a.status), [
          200,
          200,
          200,
          200,
          200,
          200,
          200,
          401,
          401,
          401,
          400,
          400,
          404,
          404,
          200,
          404,
          404,
          404,
          400
        ])
        const text = Fs.readFileSync(Path.join(neuron.dataDir, HEALTH_FILE), "utf8")
        // The database as bytes, its write-ahead log included: the key's hash is there, the key is not.
        const database = ["neuron.db", "neuron.db-wal"].map((file) => Path.join(neuron.dataDir, file))
          .filter((file) => Fs.existsSync(file)).map((file) => Fs.readFileSync(file).toString("latin1")).join("\n")
        assert.include(database, createHash("sha256").update(apiKey).digest("hex"), "the scan reads the stored hash")
        assert.include(database, "secret-scan key")
        const lines = logs.lines()
        assert.isAbove(lines.length, 10)
        assert.isTrue(lines.some((l) => l.includes("registering again")))
        assert.isTrue(records.verification.ok)

        assertNoSecret(
          [
            ["first bearer token", firstToken],
            ["second bearer token", secondToken],
            ["enrollment token", ENROLLMENT],
            ["admin token", ADMIN],
            ["API key", apiKey]
          ],
          [
            ...lines.map((l, i) => [`log line ${i}: ${l.slice(0, 120)}`, l] as const),
            ...records.auditRows.map((r) => [`audit entry ${r.seq}`, JSON.stringify(r)] as const),
            ...records.eventRows.map((r) => [`event row ${r.seq}`, JSON.stringify(r)] as const),
            ["the health file", text],
            ["the registration row's other columns", JSON.stringify(records.registration)],
            ...answers.map((a, i) => [`answer ${i} (${a.status})`, a.text] as const),
            ...keyed.map((a, i) => [`answer ${i} to the API key (${a.status})`, a.text] as const),
            ["the API key list", (yield* call(neuron.url, "GET", "/v1/api-keys", admin)).text]
          ]
        )
        // The registry's bearer token must be in the database (the Neuron heartbeats with it); the API key must not.
        assertNoSecret([["API key", apiKey]], [["the database file and its WAL, as bytes", database]])
        // Two registrations, two tokens: both were searched for.
        assert.notStrictEqual(firstToken, secondToken)
        assert.notStrictEqual(records.registration.registration_id, firstId)
        assert.strictEqual(records.registration.organization_npi, CLINIC.npi)
      }).pipe(
        Effect.provide(Logger.replace(Logger.defaultLogger, logs.logger)),
        Logger.withMinimumLogLevel(LogLevel.All)
      )
    }
  )
})
