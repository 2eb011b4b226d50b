/**
 * The patient's revocation of a relationship (PROTOCOL.md section 8) over HTTP: `POST /v1/consent/revoke` with a
 * signature by the patient's key, dated now by Effect's Clock. The host provides the `HttpClient`. A refusal is a
 * `CareAgentError` (`HttpStatus`) with the Neuron's status and error code (`CONSENT_FAILED`, `NOT_FOUND`,
 * `ALREADY_ENDED`).
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import { ConsentRevoked } from "../protocol/ConsentRevocation.js"
import { CareAgentError, httpStatusError } from "./CareAgentClient.js"
import { type PatientKeyPair, signRevocation } from "./CareAgentKeys.js"

/** What the patient revokes. */
export interface RevocationRequest {
  /** The Neuron's base URL (`http://host:port`, the `url` of its agent card). */
  readonly neuronUrl: string
  readonly key: PatientKeyPair
  readonly relationship_id: string
}

/** The revocation message's fields, signed now: for `POST /v1/consent/revoke` or `consent.revoke`. */
export const signedRevocation = (key: PatientKeyPair, relationship_id: string) =>
  Effect.map(Clock.currentTimeMillis, (now) => {
    const revoked_at = new Date(now).toISOString()
    return { relationship_id, revoked_at, signature: signRevocation(key, relationship_id, revoked_at) }
  })

/** Revokes the relationship; the answer is the Neuron's `{relationship_id, status: "revoked", ended_at}`. */
export const revoke = Effect.fn("CareAgentClient.revoke")(function*(request: RevocationRequest) {
  const client = yield* HttpClient.HttpClient
  const body = yield* signedRevocation(request.key, request.relationship_id)
  const url = new URL("v1/consent/revoke", request.neuronUrl.replace(/\/*$/, "/")).toString()
  const response = yield* HttpClientRequest.post(url).pipe(
    HttpClientRequest.bodyJson(body),
    Effect.flatMap(client.execute),
    Effect.mapError((cause) =>
      new CareAgentError({ reason: "Connect", message: `could not reach the neuron at ${url}`, cause })
    )
  )
  if (response.status === 200) {
    return yield* HttpClientResponse.schemaBodyJson(ConsentRevoked)(response).pipe(
      Effect.mapError(() => new CareAgentError({ reason: "Protocol", message: "the neuron's answer is undecodable" }))
    )
  }
  return yield* httpStatusError(response.status, yield* Effect.orElseSucceed(response.text, () => ""))
})
