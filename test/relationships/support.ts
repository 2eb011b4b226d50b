/**
 * A real Neuron (real registry, real HTTP, real SQLite) with one provider, and a patient who shakes hands with it
 * through the real `ws` client: what the tests of PROTOCOL.md section 8 start from.
 */
import * as Effect from "effect/Effect"
import * as CareAgentClient from "../../src/careagent/CareAgentClient.js"
import {
  makeConsentClaims,
  makePatientKey,
  type PatientKeyPair,
  signConsentToken,
  signRevocation
} from "../../src/careagent/CareAgentKeys.js"
import { call, neuronWithToken, npiOf, startNeuron } from "../support/neuron.js"
import { startRegistry } from "../support/registry.js"

/** The provider every test's patient consents to. */
export const PROVIDER = npiOf(131)

/** A running Neuron with its provider added; `adminToken` guards its admin routes when given. */
export const startClinic = (options?: { readonly adminToken?: string }) =>
  Effect.gen(function*() {
    const neuron = options?.adminToken === undefined
      ? yield* startNeuron({ registryUrls: [(yield* startRegistry()).url] })
      : (yield* neuronWithToken({ token: options.adminToken, healthy: false })).neuron
    const auth = options?.adminToken === undefined ? {} : { token: options.adminToken }
    const added = yield* call(neuron.url, "POST", "/v1/providers", {
      ...auth,
      body: { provider_npi: PROVIDER, provider_name: "Dr. Ada Lovelace", provider_types: ["physician"] }
    })
    if (added.status !== 201 && added.status !== 202) {
      return yield* Effect.dieMessage(`provider not added: ${added.text}`)
    }
    return neuron
  })

/** A patient: a key and an agent id. */
export const makePatient = (patient_agent_id = "patient-ada") =>
  Effect.map(makePatientKey, (key) => ({ key, patient_agent_id }))

/** A handshake of `patient` with the clinic's provider over the real `ws` client. */
export const shakeHands = (
  neuronUrl: string,
  patient: { readonly key: PatientKeyPair; readonly patient_agent_id: string }
) =>
  CareAgentClient.handshake({
    url: CareAgentClient.handshakeUrl(neuronUrl),
    key: patient.key,
    patient_agent_id: patient.patient_agent_id,
    provider_npi: PROVIDER,
    consented_actions: ["read:summary", "message:send"],
    patient_endpoint: "https://patient.example.org/agent"
  })

/**
 * The scene of the refused-revocation tests: a clinic, a patient with a relationship from a real handshake, a
 * stranger's key, the patient's own valid revocation body, and the time the refusals are dated from.
 */
export const revocationScene = () =>
  Effect.gen(function*() {
    const neuron = yield* startClinic()
    const patient = yield* makePatient()
    const made = yield* shakeHands(neuron.url, patient)
    const id = made.relationship_id
    return {
      neuron,
      patient,
      made,
      id,
      stranger: yield* makePatientKey,
      good: revocationBody(patient.key, id),
      now: Date.now()
    }
  })

/** A revocation body signed by `key`, dated `at` (now by default). */
export const revocationBody = (key: PatientKeyPair, relationship_id: string, at = new Date()) => {
  const revoked_at = at.toISOString()
  return { relationship_id, revoked_at, signature: signRevocation(key, relationship_id, revoked_at) }
}

export const MINUTE = 60_000

/**
 * Well-formed revocations of `relationship_id` that verification refuses, each with a label and the words its
 * refusal says: another key, a signature over another time or id, `revoked_at` 6 minutes stale or ahead. The same
 * cases for `POST /v1/consent/revoke` and for `consent.revoke` on the handshake socket.
 */
export const refusedRevocations = (
  key: PatientKeyPair,
  stranger: PatientKeyPair,
  relationship_id: string,
  now = Date.now()
): ReadonlyArray<readonly [label: string, body: Record<string, unknown>, words: string]> => {
  const good = revocationBody(key, relationship_id, new Date(now))
  return [
    ["another key", revocationBody(stranger, relationship_id, new Date(now)), "signature"],
    ["signed for another time", {
      ...good,
      signature: signRevocation(key, relationship_id, new Date(now - 1000).toISOString())
    }, "signature"],
    ["signed for another id", {
      ...good,
      signature: signRevocation(key, "another-relationship", good.revoked_at)
    }, "signature"],
    ["6 minutes stale", revocationBody(key, relationship_id, new Date(now - 6 * MINUTE)), "5 minutes"],
    ["6 minutes ahead", revocationBody(key, relationship_id, new Date(now + 6 * MINUTE)), "5 minutes"]
  ]
}

/** Malformed variants of a good revocation body, each with the field its refusal names. */
export const malformedRevocations = (
  good: ReturnType<typeof revocationBody>
): ReadonlyArray<readonly [body: Record<string, unknown>, field: string]> => [
  [{ ...good, signature: good.signature.slice(1) }, "signature"],
  [{ ...good, signature: good.signature + "=" }, "signature"],
  [{ ...good, revoked_at: "yesterday" }, "revoked_at"],
  [{ revoked_at: good.revoked_at, signature: good.signature }, "relationship_id"],
  [{ ...good, relationship_id: "a/b" }, "relationship_id"]
]

/** A `handshake.auth` message of `patient` for the clinic's provider, for raw sockets. */
export const authMessage = (patient: { readonly key: PatientKeyPair; readonly patient_agent_id: string }) =>
  Effect.map(
    makeConsentClaims({
      patient_agent_id: patient.patient_agent_id,
      provider_npi: PROVIDER,
      consented_actions: ["read"]
    }),
    (claims) => ({
      type: "handshake.auth",
      ...signConsentToken(patient.key, claims),
      patient_agent_id: patient.patient_agent_id,
      patient_public_key: patient.key.publicKeyB64u,
      patient_endpoint: "https://patient.example.org/agent"
    })
  )
