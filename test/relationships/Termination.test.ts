/**
 * PROTOCOL.md section 8 against a real Neuron: the organization's termination through the admin API, both ends
 * permanent, a handshake after an end, and the races (two revocations, a revocation and a handshake, a revocation
 * and a termination) each leaving one consistent answer.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { call, readRecords } from "../support/neuron.js"
import { makePatient, revocationBody, shakeHands, startClinic } from "./support.js"

const ADMIN = "clinic-admin-5e1f0c9a7b3d2468"

describe("relationship termination and races (section 8)", () => {
  it.scopedLive(
    "POST /v1/relationships/{id}/terminate {reason}: 200 the relationship now terminated with ended_at and end_reason; again 409 ALREADY_ENDED; 404 unknown; 400 without a reason or over 500 characters; a revocation of it 409 ALREADY_ENDED; admin token required (401) for GET and terminate, a read API key may GET but not terminate (403)",
    () =>
      Effect.gen(function*() {
        const neuron = yield* startClinic({ adminToken: ADMIN })
        const admin = { token: ADMIN }
        const patient = yield* makePatient()
        const made = yield* shakeHands(neuron.url, patient)
        const path = `/v1/relationships/${made.relationship_id}`
        assert.strictEqual((yield* call(neuron.url, "GET", path)).status, 401)
        const noAuth = yield* call(neuron.url, "POST", `${path}/terminate`, { body: { reason: "moved away" } })
        assert.strictEqual(noAuth.status, 401)

        for (const body of [{}, { reason: "" }, { reason: "x".repeat(501) }, { reason: 5 }]) {
          const bad = yield* call(neuron.url, "POST", `${path}/terminate`, { ...admin, body })
          assert.strictEqual(bad.status, 400, JSON.stringify(body))
          assert.include(bad.body.error.message, "reason")
        }
        assert.strictEqual((yield* call(neuron.url, "GET", path, admin)).body.status, "active")
        // An API key of scope `read` may read the relationship (section 7), not end it.
        const key =
          (yield* call(neuron.url, "POST", "/v1/api-keys", { ...admin, body: { name: "auditor", scope: "read" } }))
            .body.key as string
        assert.strictEqual((yield* call(neuron.url, "GET", path, { headers: { "x-api-key": key } })).status, 200)
        const readOnly = yield* call(neuron.url, "POST", `${path}/terminate`, { token: key, body: { reason: "no" } })
        assert.strictEqual(readOnly.status, 403)

        const ended = yield* call(neuron.url, "POST", `${path}/terminate`, {
          ...admin,
          body: { reason: "the patient moved to another practice" }
        })
        assert.strictEqual(ended.status, 200, ended.text)
        assert.deepInclude(ended.body, {
          relationship_id: made.relationship_id,
          status: "terminated",
          end_reason: "the patient moved to another practice"
        })
        assert.isString(ended.body.ended_at)
        assert.deepStrictEqual((yield* call(neuron.url, "GET", path, admin)).body, ended.body)

        const twice = yield* call(neuron.url, "POST", `${path}/terminate`, { ...admin, body: { reason: "again" } })
        assert.strictEqual(twice.status, 409)
        assert.strictEqual(twice.body.error.code, "ALREADY_ENDED")
        const revoked = yield* call(neuron.url, "POST", "/v1/consent/revoke", {
          body: revocationBody(patient.key, made.relationship_id)
        })
        assert.strictEqual(revoked.status, 409)
        assert.strictEqual(revoked.body.error.code, "ALREADY_ENDED")
        const unknown = yield* call(neuron.url, "POST", "/v1/relationships/no-such-id/terminate", {
          ...admin,
          body: { reason: "r" }
        })
        assert.strictEqual(unknown.status, 404)
        assert.strictEqual((yield* call(neuron.url, "GET", "/v1/relationships/no-such-id", admin)).status, 404)

        const records = yield* readRecords(neuron.dataDir)
        assert.isTrue(records.verification.ok)
        const entries = records.auditRows.filter((r) => String(r.action).startsWith("relationship."))
        assert.deepStrictEqual(entries.map((r) => [r.action, r.actor, r.subject]), [
          ["relationship.terminated", "operator", made.relationship_id]
        ])
        assert.include(entries[0]!.details as string, "the patient moved to another practice")
        assert.deepStrictEqual(
          records.eventRows.filter((r) => String(r.stream).startsWith("relationship:")).map((r) => r.type),
          ["RelationshipTerminated"]
        )
      })
  )

  it.scopedLive(
    "a handshake after a revocation or a termination makes a new relationship (status new, a new id); only an active one answers existing; a revoked one cannot be terminated (409)",
    () =>
      Effect.gen(function*() {
        const neuron = yield* startClinic()
        const patient = yield* makePatient()
        const first = yield* shakeHands(neuron.url, patient)
        assert.strictEqual((yield* shakeHands(neuron.url, patient)).status, "existing")
        const revoked = yield* call(neuron.url, "POST", "/v1/consent/revoke", {
          body: revocationBody(patient.key, first.relationship_id)
        })
        assert.strictEqual(revoked.status, 200)
        const terminate = yield* call(neuron.url, "POST", `/v1/relationships/${first.relationship_id}/terminate`, {
          body: { reason: "too late" }
        })
        assert.strictEqual(terminate.status, 409)
        assert.strictEqual(terminate.body.error.code, "ALREADY_ENDED")

        const second = yield* shakeHands(neuron.url, patient)
        assert.strictEqual(second.status, "new")
        assert.notStrictEqual(second.relationship_id, first.relationship_id)
        assert.deepStrictEqual(yield* shakeHands(neuron.url, patient), { ...second, status: "existing" })
        const terminated = yield* call(neuron.url, "POST", `/v1/relationships/${second.relationship_id}/terminate`, {
          body: { reason: "closing the practice" }
        })
        assert.strictEqual(terminated.status, 200)
        const third = yield* shakeHands(neuron.url, patient)
        assert.strictEqual(third.status, "new")
        assert.notInclude([first.relationship_id, second.relationship_id], third.relationship_id)

        const listed = (yield* call(neuron.url, "GET", "/v1/relationships")).body.relationships as Array<any>
        assert.deepStrictEqual(listed.map((r) => [r.relationship_id, r.status]), [
          [first.relationship_id, "revoked"],
          [second.relationship_id, "terminated"],
          [third.relationship_id, "active"]
        ])
      })
  )

  it.scopedLive(
    "races: two revocations of one relationship both answer 200 with the same ended_at and write one end; a revocation racing a handshake of the same patient and provider leaves one consistent answer; a revocation racing a termination, exactly one wins",
    () =>
      Effect.gen(function*() {
        const neuron = yield* startClinic()
        const patient = yield* makePatient()
        const revokeCall = (relationship_id: string) =>
          call(neuron.url, "POST", "/v1/consent/revoke", { body: revocationBody(patient.key, relationship_id) })

        // Two revocations at once.
        const made = yield* shakeHands(neuron.url, patient)
        const [a, b] = yield* Effect.all([revokeCall(made.relationship_id), revokeCall(made.relationship_id)], {
          concurrency: "unbounded"
        })
        assert.deepStrictEqual([a.status, b.status], [200, 200])
        assert.deepStrictEqual(a.body, b.body)

        // A revocation racing a handshake: the handshake either came first (it answered `existing` with the id
        // that is then revoked, and nothing is active) or second (a new relationship, the only active one).
        for (let round = 0; round < 6; round++) {
          const current = yield* shakeHands(neuron.url, patient)
          assert.strictEqual(current.status, "new")
          const [revoked, again] = yield* Effect.all(
            [revokeCall(current.relationship_id), shakeHands(neuron.url, patient)],
            { concurrency: "unbounded" }
          )
          assert.strictEqual(revoked.status, 200, revoked.text)
          const rows = (yield* call(neuron.url, "GET", "/v1/relationships")).body.relationships as Array<any>
          const active = rows.filter((r) => r.status === "active").map((r) => r.relationship_id)
          const ended = rows.find((r) => r.relationship_id === current.relationship_id)
          assert.strictEqual(ended.status, "revoked")
          if (again.status === "existing") {
            assert.strictEqual(again.relationship_id, current.relationship_id)
            assert.deepStrictEqual(active, [])
          } else {
            assert.notStrictEqual(again.relationship_id, current.relationship_id)
            assert.deepStrictEqual(active, [again.relationship_id])
            const end = yield* revokeCall(again.relationship_id)
            assert.strictEqual(end.status, 200)
          }
        }

        // A revocation racing a termination.
        const last = yield* shakeHands(neuron.url, patient)
        const [revoked, terminated] = yield* Effect.all([
          revokeCall(last.relationship_id),
          call(neuron.url, "POST", `/v1/relationships/${last.relationship_id}/terminate`, { body: { reason: "race" } })
        ], { concurrency: "unbounded" })
        assert.sameMembers([revoked.status, terminated.status], [200, 409])
        const final = (yield* call(neuron.url, "GET", `/v1/relationships/${last.relationship_id}`)).body
        assert.strictEqual(final.status, revoked.status === 200 ? "revoked" : "terminated")

        const records = yield* readRecords(neuron.dataDir)
        assert.isTrue(records.verification.ok)
        // One end per relationship, in the audit chain and in the event log.
        const subjects = records.auditRows.filter((r) => String(r.action).startsWith("relationship.")).map((r) =>
          r.subject
        )
        assert.strictEqual(new Set(subjects).size, subjects.length)
        const streams = records.eventRows.filter((r) => String(r.stream).startsWith("relationship:")).map((r) =>
          r.stream
        )
        assert.deepStrictEqual(streams.map((s) => String(s).slice("relationship:".length)).sort(), [...subjects].sort())
      })
  )
})
