/**
 * PROTOCOL.md section 8 against a real Neuron (real registry, real HTTP, real `ws` client, real SQLite): the
 * patient's revocation over HTTP, row by row, the relationship's status, and what is written for it.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { makePatientKey } from "../../src/careagent/CareAgentKeys.js"
import { revoke } from "../../src/careagent/CareAgentRevocation.js"
import { call, readRecords } from "../support/neuron.js"
import {
  makePatient,
  malformedRevocations,
  MINUTE,
  PROVIDER,
  refusedRevocations,
  revocationBody,
  revocationScene,
  shakeHands,
  startClinic
} from "./support.js"

describe("consent revocation (section 8)", () => {
  it.scopedLive(
    "POST /v1/consent/revoke by the CareAgent client (a refusal reported with its status and code): 200 {relationship_id, status: revoked, ended_at}; the same request again 200 with the same answer; GET /v1/relationships/{id} and the listing show status, ended_at, end_reason; one audit entry (chain intact) and one lifecycle event",
    () =>
      Effect.gen(function*() {
        const neuron = yield* startClinic()
        const patient = yield* makePatient()
        const made = yield* shakeHands(neuron.url, patient)
        const before = yield* call(neuron.url, "GET", `/v1/relationships/${made.relationship_id}`)
        assert.strictEqual(before.status, 200)
        assert.deepInclude(before.body, {
          relationship_id: made.relationship_id,
          patient_agent_id: patient.patient_agent_id,
          provider_npi: PROVIDER,
          consented_actions: ["read:summary", "message:send"],
          status: "active",
          ended_at: null,
          end_reason: null
        })
        assert.notProperty(before.body, "patient_public_key")

        const answer = yield* revoke({ neuronUrl: neuron.url, key: patient.key, relationship_id: made.relationship_id })
          .pipe(Effect.provide(NodeHttpClient.layerUndici))
        assert.strictEqual(answer.relationship_id, made.relationship_id)
        assert.strictEqual(answer.status, "revoked")
        assert.isTrue(Number.isFinite(Date.parse(answer.ended_at)))

        // The client reports a refusal with the Neuron's status and code: another key is CONSENT_FAILED.
        const refused = yield* Effect.flip(
          revoke({ neuronUrl: neuron.url, key: yield* makePatientKey, relationship_id: made.relationship_id }).pipe(
            Effect.provide(NodeHttpClient.layerUndici)
          )
        )
        assert.deepStrictEqual([refused.reason, refused.status, refused.code], ["HttpStatus", 403, "CONSENT_FAILED"])

        // The same request, byte for byte, again: the same answer, nothing written twice.
        const body = revocationBody(patient.key, made.relationship_id)
        const first = yield* call(neuron.url, "POST", "/v1/consent/revoke", { body })
        const again = yield* call(neuron.url, "POST", "/v1/consent/revoke", { body })
        assert.strictEqual(first.status, 200)
        assert.deepStrictEqual(first.body, {
          relationship_id: made.relationship_id,
          status: "revoked",
          ended_at: answer.ended_at
        })
        assert.deepStrictEqual(again.body, first.body)
        assert.strictEqual(again.status, 200)

        const after = yield* call(neuron.url, "GET", `/v1/relationships/${made.relationship_id}`)
        assert.deepInclude(after.body, {
          status: "revoked",
          ended_at: answer.ended_at,
          end_reason: "revoked by the patient",
          updated_at: answer.ended_at
        })
        const listed = yield* call(neuron.url, "GET", `/v1/relationships?provider_npi=${PROVIDER}`)
        assert.deepStrictEqual(listed.body.relationships, [after.body])

        const records = yield* readRecords(neuron.dataDir)
        assert.isTrue(records.verification.ok)
        const ends = records.auditRows.filter((r) => r.action === "relationship.revoked")
        assert.strictEqual(ends.length, 1)
        assert.strictEqual(ends[0]!.subject, made.relationship_id)
        assert.strictEqual(ends[0]!.actor, `patient:${patient.patient_agent_id}`)
        const details = JSON.parse(ends[0]!.details as string)
        assert.deepInclude(details, { provider_npi: PROVIDER, from: "active", to: "revoked" })
        assert.match(details.key_fingerprint, /^sha256:[0-9a-f]{16}$/)
        const events = records.eventRows.filter((r) => r.stream === `relationship:${made.relationship_id}`)
        assert.deepStrictEqual(events.map((e) => [e.type, e.version]), [["RelationshipRevoked", 1]])
      })
  )

  it.scopedLive(
    "refusals change nothing: a bad signature, another key, a signature over another id, revoked_at more than 5 minutes past or ahead are 403 CONSENT_FAILED; an unknown id 404; a malformed body 400 naming the field",
    () =>
      Effect.gen(function*() {
        const { good, id, neuron, now, patient, stranger } = yield* revocationScene()
        const refused = refusedRevocations(patient.key, stranger, id, now).map(([, body]) => body)
        for (const body of refused) {
          const answer = yield* call(neuron.url, "POST", "/v1/consent/revoke", { body })
          assert.strictEqual(answer.status, 403, answer.text)
          assert.strictEqual(answer.body.error.code, "CONSENT_FAILED")
        }
        // An unknown id, even with a well-formed body.
        assert.strictEqual(
          (yield* call(neuron.url, "POST", "/v1/consent/revoke", {
            body: revocationBody(stranger, "00000000-0000-4000-8000-000000000000")
          })).status,
          404
        )
        const malformed = malformedRevocations(good)
        for (const [body, field] of malformed) {
          const answer = yield* call(neuron.url, "POST", "/v1/consent/revoke", { body })
          assert.strictEqual(answer.status, 400, answer.text)
          assert.strictEqual(answer.body.error.code, "INVALID_REQUEST")
          assert.include(answer.body.error.message, field)
        }
        const still = yield* call(neuron.url, "GET", `/v1/relationships/${id}`)
        assert.strictEqual(still.body.status, "active")
        const records = yield* readRecords(neuron.dataDir)
        assert.isFalse(records.auditRows.some((r) => String(r.action).startsWith("relationship.")))
        assert.isFalse(records.eventRows.some((r) => String(r.stream).startsWith("relationship:")))
        // And the right one, 4 minutes old, still works.
        const late = yield* call(neuron.url, "POST", "/v1/consent/revoke", {
          body: revocationBody(patient.key, id, new Date(Date.now() - 4 * MINUTE))
        })
        assert.strictEqual(late.status, 200, late.text)
      })
  )
})
