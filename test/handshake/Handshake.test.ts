import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as TestClock from "effect/TestClock"
import { makePatientKey } from "../../src/careagent/CareAgentKeys.js"
import {
  eventually,
  handshakeWith,
  NOW,
  OWN_ENDPOINT,
  PATIENT,
  PROVIDER,
  PROVIDER_WITH_ENDPOINT,
  PUBLIC_URL,
  startNeuron
} from "./fixture.js"

const setup = () => Effect.zipRight(TestClock.setTime(NOW), startNeuron())

describe("handshake completion", () => {
  it.scoped("the happy path via CareAgentClient: a new relationship, stored, audited, closed with 1000", () =>
    Effect.gen(function*() {
      const neuron = yield* setup()
      const key = yield* makePatientKey
      const result = yield* handshakeWith(neuron, key)
      assert.strictEqual(result.status, "new")
      assert.strictEqual(result.provider_npi, PROVIDER)
      assert.strictEqual(result.provider_endpoint, `${PUBLIC_URL}/ws/provider/${PROVIDER}`)
      const rows = yield* neuron.relationships.list()
      assert.deepStrictEqual(rows, [{
        relationship_id: result.relationship_id,
        patient_agent_id: PATIENT,
        provider_npi: PROVIDER,
        patient_public_key: key.publicKeyB64u,
        consented_actions: ["read:summary", "message:send"],
        status: "active",
        created_at: "2026-11-22T10:30:00.000Z",
        updated_at: "2026-11-22T10:30:00.000Z",
        ended_at: null,
        end_reason: null
      }])
      assert.match(result.relationship_id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
      const entries = yield* neuron.audit.list()
      assert.deepStrictEqual(entries.map((e) => e.action), ["handshake.started", "handshake.completed"])
      const completed = entries[1]!
      assert.strictEqual(completed.subject, result.relationship_id)
      assert.strictEqual(completed.actor, `patient:${PATIENT}`)
      assert.strictEqual(completed.details.status, "new")
      assert.match(String(completed.details.key_fingerprint), /^sha256:[0-9a-f]{16}$/)
      assert.isTrue((yield* neuron.audit.verify()).ok)
      // The session ends once the server's socket is gone (right after the client saw the close).
      yield* eventually(neuron.server.activeSessions, (sessions) => sessions.length === 0, "no sessions")
    }))

  it.scoped("a provider registered with its own endpoint: provider_endpoint is that endpoint", () =>
    Effect.gen(function*() {
      const neuron = yield* setup()
      const result = yield* handshakeWith(neuron, yield* makePatientKey, { provider_npi: PROVIDER_WITH_ENDPOINT })
      assert.strictEqual(result.provider_endpoint, OWN_ENDPOINT)
    }))

  it.scoped("existing on a second handshake with the same key: same id, no duplicate, latest consent kept", () =>
    Effect.gen(function*() {
      const neuron = yield* setup()
      const key = yield* makePatientKey
      const first = yield* handshakeWith(neuron, key)
      yield* TestClock.adjust("1 minute")
      const second = yield* handshakeWith(neuron, key, { consented_actions: ["read:summary"] })
      assert.strictEqual(second.status, "existing")
      assert.strictEqual(second.relationship_id, first.relationship_id)
      const rows = yield* neuron.relationships.list()
      assert.strictEqual(rows.length, 1)
      assert.deepStrictEqual(rows[0]!.consented_actions, ["read:summary"])
      assert.strictEqual(rows[0]!.updated_at, "2026-11-22T10:31:00.000Z")
      // The same patient with another provider is another relationship.
      const other = yield* handshakeWith(neuron, key, { provider_npi: PROVIDER_WITH_ENDPOINT })
      assert.strictEqual(other.status, "new")
    }))

  it.scoped("a different key for an existing relationship: CONSENT_FAILED 4003 (key mismatch), nothing written", () =>
    Effect.gen(function*() {
      const neuron = yield* setup()
      yield* handshakeWith(neuron, yield* makePatientKey)
      const error = yield* Effect.flip(handshakeWith(neuron, yield* makePatientKey))
      assert.strictEqual(error.reason, "Refused")
      assert.strictEqual(error.code, "CONSENT_FAILED")
      assert.strictEqual(error.closeCode, 4003)
      assert.include(error.message, "existing relationship")
      assert.strictEqual((yield* neuron.relationships.list()).length, 1)
      const failed = yield* neuron.audit.list({ action: "handshake.failed" })
      assert.strictEqual(failed[0]!.details.code, "CONSENT_FAILED")
    }))

  it.scoped("two racing handshakes for the same relationship create one row (one new, one existing)", () =>
    Effect.gen(function*() {
      const neuron = yield* setup()
      const key = yield* makePatientKey
      const results = yield* Effect.all(
        Array.from({ length: 6 }, () => handshakeWith(neuron, key)),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(results.map((r) => r.status).sort(), [
        "existing",
        "existing",
        "existing",
        "existing",
        "existing",
        "new"
      ])
      assert.strictEqual(new Set(results.map((r) => r.relationship_id)).size, 1)
      assert.strictEqual((yield* neuron.relationships.list()).length, 1)
    }))

  it.scoped("after a revocation a handshake creates a new relationship", () =>
    Effect.gen(function*() {
      const neuron = yield* setup()
      const key = yield* makePatientKey
      const first = yield* handshakeWith(neuron, key)
      const ended = yield* neuron.relationships.end(first.relationship_id, {
        status: "revoked",
        revoked_at: "2026-11-22T10:30:00.000Z"
      })
      assert.strictEqual(ended.outcome, "ended")
      const second = yield* handshakeWith(neuron, key)
      assert.strictEqual(second.status, "new")
      assert.notStrictEqual(second.relationship_id, first.relationship_id)
      const rows = yield* neuron.relationships.list({ patient_agent_id: PATIENT })
      assert.deepStrictEqual(rows.map((r) => r.status).sort(), ["active", "revoked"])
    }))
})
