/**
 * PROTOCOL.md section 8, the handshake socket's half: a patient's `consent.revoke` as the first message of a
 * socket on `/ws/handshake`, against a real Neuron (real registry, real HTTP, real SQLite) with the real `ws`
 * client, both the CareAgent client's and a raw one. It is the revocation of `POST /v1/consent/revoke`: the same
 * checks, the same answer again, one end written however many ask, and the errors of section 2 on the socket.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { handshakeUrl } from "../../src/careagent/CareAgentClient.js"
import { makePatientKey } from "../../src/careagent/CareAgentKeys.js"
import { revokeOverSocket } from "../../src/careagent/CareAgentRevocation.js"
import { call, readRecords } from "../support/neuron.js"
import { clientFrame, connect, opened, rawSession } from "../support/ws.js"
import {
  authMessage,
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

/** `consent.revoke` with the fields of `revocationBody`. */
const revokeMessage = (body: Record<string, unknown>) => ({ type: "consent.revoke", ...body })

/** Sends `message` as the first frame of a raw `ws` socket; what came back and the close code. */
const firstMessage = (neuronUrl: string, message: unknown) =>
  Effect.scoped(Effect.gen(function*() {
    const client = yield* connect(handshakeUrl(neuronUrl))
    yield* opened(client)
    yield* client.sendJson(message)
    const answer = yield* client.message
    const { code } = yield* client.closed
    return { answer, code }
  }))

/** The relationship as the admin API shows it. */
const relationship = (neuronUrl: string, id: string) =>
  Effect.map(call(neuronUrl, "GET", `/v1/relationships/${id}`), (r) => r.body)

describe("consent.revoke as the first message of a handshake socket (section 8)", () => {
  it.scopedLive(
    "consent.revoke as the first message after a handshake: consent.revoked {relationship_id, ended_at} and close 1000; GET /v1/relationships/{id} shows revoked, when and why; one audit entry naming the socket (chain intact) and one lifecycle event; a new handshake afterwards makes a new relationship, not existing",
    () =>
      Effect.gen(function*() {
        const neuron = yield* startClinic()
        const patient = yield* makePatient()
        const made = yield* shakeHands(neuron.url, patient)
        assert.strictEqual(made.status, "new")

        const { answer, code } = yield* firstMessage(
          neuron.url,
          revokeMessage(revocationBody(patient.key, made.relationship_id))
        )
        assert.strictEqual(code, 1000)
        assert.deepStrictEqual(Object.keys(answer).sort(), ["ended_at", "relationship_id", "type"])
        assert.deepInclude(answer, { type: "consent.revoked", relationship_id: made.relationship_id })
        assert.isTrue(Number.isFinite(Date.parse(answer.ended_at)))

        const after = yield* relationship(neuron.url, made.relationship_id)
        assert.deepInclude(after, {
          relationship_id: made.relationship_id,
          status: "revoked",
          ended_at: answer.ended_at,
          end_reason: "revoked by the patient"
        })

        const records = yield* readRecords(neuron.dataDir)
        assert.isTrue(records.verification.ok)
        const ends = records.auditRows.filter((r) => r.action === "relationship.revoked")
        assert.strictEqual(ends.length, 1)
        assert.strictEqual(ends[0]!.subject, made.relationship_id)
        assert.strictEqual(ends[0]!.actor, `patient:${patient.patient_agent_id}`)
        const details = JSON.parse(ends[0]!.details as string)
        assert.deepInclude(details, { provider_npi: PROVIDER, from: "active", to: "revoked" })
        assert.strictEqual(details.via, "handshake_socket")
        assert.match(details.connection_id, /^[0-9a-f-]{36}$/)
        assert.match(details.key_fingerprint, /^sha256:[0-9a-f]{16}$/)
        // The revocation's socket is no failed handshake.
        assert.isFalse(records.auditRows.some((r) => r.action === "handshake.failed"))
        const events = records.eventRows.filter((r) => r.stream === `relationship:${made.relationship_id}`)
        assert.deepStrictEqual(events.map((e) => [e.type, e.version]), [["RelationshipRevoked", 1]])

        const again = yield* shakeHands(neuron.url, patient)
        assert.strictEqual(again.status, "new")
        assert.notStrictEqual(again.relationship_id, made.relationship_id)
        assert.strictEqual((yield* relationship(neuron.url, again.relationship_id)).status, "active")
        const metrics = yield* call(neuron.url, "GET", "/metrics")
        assert.match(metrics.text, /neuron_handshake_duration_seconds_count\{outcome="revoked"\} 1\b/)
      })
  )

  it.scopedLive(
    "consent.revoke first message by the CareAgent client (revokeOverSocket): the Neuron's consent.revoked; a refusal is Refused with its code and close code (another key: CONSENT_FAILED 4003)",
    () =>
      Effect.gen(function*() {
        const neuron = yield* startClinic()
        const patient = yield* makePatient()
        const made = yield* shakeHands(neuron.url, patient)
        const url = handshakeUrl(neuron.url)
        const refused = yield* Effect.flip(
          revokeOverSocket({ url, key: yield* makePatientKey, relationship_id: made.relationship_id })
        )
        assert.deepStrictEqual([refused.reason, refused.code, refused.closeCode], ["Refused", "CONSENT_FAILED", 4003])
        const revoked = yield* revokeOverSocket({ url, key: patient.key, relationship_id: made.relationship_id })
        assert.strictEqual(revoked.relationship_id, made.relationship_id)
        assert.strictEqual((yield* relationship(neuron.url, made.relationship_id)).ended_at, revoked.ended_at)
      })
  )

  it.scopedLive(
    "consent.revoke first message refusals change nothing: another key's signature, a signature over another id or time, revoked_at 6 minutes stale or ahead, an unknown relationship are CONSENT_FAILED 4003; a malformed consent.revoke is INVALID_MESSAGE 4002 naming the field",
    () =>
      Effect.gen(function*() {
        const { good, id, neuron, now, patient, stranger } = yield* revocationScene()
        const refused = [
          ...refusedRevocations(patient.key, stranger, id, now),
          [
            "an unknown relationship",
            revocationBody(stranger, "00000000-0000-4000-8000-000000000000"),
            "no relationship"
          ] as const
        ]
        for (const [label, body, words] of refused) {
          const { answer, code } = yield* firstMessage(neuron.url, revokeMessage(body))
          assert.strictEqual(code, 4003, label)
          assert.deepInclude(answer, { type: "handshake.error", code: "CONSENT_FAILED" }, label)
          assert.include(answer.message, words, label)
        }
        const malformed = [...malformedRevocations(good), [{ ...good, signature: 42 }, "signature"] as const]
        for (const [body, field] of malformed) {
          const { answer, code } = yield* firstMessage(neuron.url, revokeMessage(body))
          assert.strictEqual(code, 4002, JSON.stringify(body))
          assert.deepInclude(answer, { type: "handshake.error", code: "INVALID_MESSAGE" })
          assert.include(answer.message, field)
        }
        // A first message of neither type names both.
        const neither = yield* firstMessage(neuron.url, { ...revokeMessage(good), type: "consent.revoked" })
        assert.strictEqual(neither.code, 4002)
        assert.include(neither.answer.message, `type: expected "handshake.auth" or "consent.revoke"`)

        assert.strictEqual((yield* relationship(neuron.url, id)).status, "active")
        const records = yield* readRecords(neuron.dataDir)
        assert.isTrue(records.verification.ok)
        assert.isFalse(records.auditRows.some((r) => String(r.action).startsWith("relationship.")))
        assert.isFalse(records.eventRows.some((r) => String(r.stream).startsWith("relationship:")))
        // Each refused socket is recorded as the handshake socket's refusals are: handshake.failed with its code.
        const failed = records.auditRows.filter((r) => r.action === "handshake.failed").map((r) =>
          JSON.parse(r.details as string).code
        )
        assert.deepStrictEqual(failed.filter((c) => c === "CONSENT_FAILED").length, refused.length)
        assert.deepStrictEqual(failed.filter((c) => c === "INVALID_MESSAGE").length, malformed.length + 1)
        // And the right one, 4 minutes old, still works.
        const late = yield* firstMessage(
          neuron.url,
          revokeMessage(revocationBody(patient.key, id, new Date(Date.now() - 4 * MINUTE)))
        )
        assert.strictEqual(late.code, 1000)
        assert.strictEqual(late.answer.type, "consent.revoked")
      })
  )

  it.scopedLive(
    "consent.revoke first message is idempotent as the HTTP route: the same message again and another valid one later answer consent.revoked with the same ended_at, over HTTP 200 the same; one end written. A terminated relationship's consent.revoke is CONSENT_FAILED 4003 (after its signature verified)",
    () =>
      Effect.gen(function*() {
        const neuron = yield* startClinic()
        const patient = yield* makePatient()
        const made = yield* shakeHands(neuron.url, patient)
        const body = revocationBody(patient.key, made.relationship_id)
        const first = yield* firstMessage(neuron.url, revokeMessage(body))
        const same = yield* firstMessage(neuron.url, revokeMessage(body))
        const later = yield* firstMessage(
          neuron.url,
          revokeMessage(revocationBody(patient.key, made.relationship_id, new Date(Date.now() + 1000)))
        )
        for (const again of [same, later]) {
          assert.strictEqual(again.code, 1000)
          assert.deepStrictEqual(again.answer, first.answer)
        }
        const overHttp = yield* call(neuron.url, "POST", "/v1/consent/revoke", { body })
        assert.strictEqual(overHttp.status, 200)
        assert.deepStrictEqual(overHttp.body, {
          relationship_id: made.relationship_id,
          status: "revoked",
          ended_at: first.answer.ended_at
        })

        // A terminated relationship: only the key holder learns it, and it stays terminated.
        const other = yield* shakeHands(neuron.url, patient)
        const ended = yield* call(neuron.url, "POST", `/v1/relationships/${other.relationship_id}/terminate`, {
          body: { reason: "the practice closes" }
        })
        assert.strictEqual(ended.status, 200)
        const stranger = yield* firstMessage(
          neuron.url,
          revokeMessage(revocationBody(yield* makePatientKey, other.relationship_id))
        )
        assert.strictEqual(stranger.code, 4003)
        assert.notInclude(stranger.answer.message, "terminated")
        const owner = yield* firstMessage(neuron.url, revokeMessage(revocationBody(patient.key, other.relationship_id)))
        assert.strictEqual(owner.code, 4003)
        assert.deepInclude(owner.answer, { type: "handshake.error", code: "CONSENT_FAILED" })
        assert.include(owner.answer.message, "terminated")
        assert.strictEqual((yield* relationship(neuron.url, other.relationship_id)).status, "terminated")

        const records = yield* readRecords(neuron.dataDir)
        assert.isTrue(records.verification.ok)
        assert.deepStrictEqual(
          records.auditRows.filter((r) => String(r.action).startsWith("relationship.")).map((
            r
          ) => [r.action, r.subject]),
          [["relationship.revoked", made.relationship_id], ["relationship.terminated", other.relationship_id]]
        )
      })
  )

  it.scopedLive(
    "consent.revoke out of order: after a handshake.auth on the same socket it is INVALID_MESSAGE 4002 and nothing is revoked; a frame sent together with a first-message consent.revoke is INVALID_MESSAGE 4002 (nothing after the last expected message)",
    () =>
      Effect.gen(function*() {
        const neuron = yield* startClinic()
        const patient = yield* makePatient()
        const made = yield* shakeHands(neuron.url, patient)
        const revoke = JSON.stringify(revokeMessage(revocationBody(patient.key, made.relationship_id)))
        const text = (payload: string) => clientFrame({ opcode: 0x1, payload })
        const url = handshakeUrl(neuron.url)

        // A handshake.auth (of another patient, so that a challenge comes), then the revocation.
        const other = yield* makePatient("patient-bea")
        const auth = yield* authMessage(other)
        const afterAuth = yield* rawSession(url, async (send, received) => {
          send(text(JSON.stringify(auth)))
          while (received().length === 0) await new Promise((resolve) => setTimeout(resolve, 5))
          send(text(revoke))
        })
        assert.strictEqual(JSON.parse(afterAuth.messages[0]!).type, "handshake.challenge")
        assert.strictEqual(afterAuth.closeCode, 4002, JSON.stringify(afterAuth))
        assert.deepInclude(JSON.parse(afterAuth.messages.at(-1)!), { code: "INVALID_MESSAGE" })
        assert.include(JSON.parse(afterAuth.messages.at(-1)!).message, "handshake.challenge_response")

        // Two frames in one write: the revocation and one more.
        const extra = yield* rawSession(url, (send) => {
          send(Buffer.concat([text(revoke), text("{\"type\":\"consent.revoke\"}")]))
        })
        assert.strictEqual(extra.closeCode, 4002, JSON.stringify(extra))
        assert.deepInclude(JSON.parse(extra.messages.at(-1)!), { code: "INVALID_MESSAGE" })
        assert.include(JSON.parse(extra.messages.at(-1)!).message, "after consent.revoke")
        assert.strictEqual((yield* relationship(neuron.url, made.relationship_id)).status, "active")
      })
  )

  it.scopedLive(
    "consent.revoke first message racing POST /v1/consent/revoke for the same relationship: both answer the same ended_at, one end is written, the audit chain verifies",
    () =>
      Effect.gen(function*() {
        const neuron = yield* startClinic()
        const patient = yield* makePatient()
        for (let round = 0; round < 5; round++) {
          const made = yield* shakeHands(neuron.url, patient)
          const [socket, http] = yield* Effect.all([
            firstMessage(neuron.url, revokeMessage(revocationBody(patient.key, made.relationship_id))),
            call(neuron.url, "POST", "/v1/consent/revoke", { body: revocationBody(patient.key, made.relationship_id) })
          ], { concurrency: "unbounded" })
          assert.strictEqual(socket.code, 1000, JSON.stringify(socket))
          assert.strictEqual(http.status, 200, http.text)
          assert.strictEqual(socket.answer.ended_at, http.body.ended_at)
          assert.strictEqual((yield* relationship(neuron.url, made.relationship_id)).ended_at, http.body.ended_at)
        }
        const records = yield* readRecords(neuron.dataDir)
        assert.isTrue(records.verification.ok)
        const ends = records.auditRows.filter((r) => r.action === "relationship.revoked").map((r) => r.subject)
        assert.strictEqual(ends.length, 5)
        assert.strictEqual(new Set(ends).size, 5)
        const streams = records.eventRows.filter((r) => String(r.stream).startsWith("relationship:"))
        assert.strictEqual(streams.length, 5)
      })
  )
})
