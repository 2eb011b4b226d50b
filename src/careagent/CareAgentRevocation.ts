/**
 * The patient's revocation of a relationship (PROTOCOL.md section 8), signed by the patient's key and dated now by
 * Effect's Clock: over HTTP (`revoke`: `POST /v1/consent/revoke`, the host provides the `HttpClient`; a refusal is
 * a `CareAgentError` `HttpStatus` with the Neuron's status and error code, `CONSENT_FAILED`, `NOT_FOUND`,
 * `ALREADY_ENDED`), or over the handshake socket (`revokeOverSocket`: `consent.revoke` as the first message).
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { ConsentRevoked, RevocationMessageType } from "../protocol/ConsentRevocation.js"
import { CareAgentError, httpStatusError, openSession, protocolError } from "./CareAgentClient.js"
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

/** What the patient revokes over a handshake socket. */
export interface SocketRevocationRequest {
  /** The Neuron's handshake URL (`ws://host:port/ws/handshake`); see `handshakeUrl`. */
  readonly url: string
  readonly key: PatientKeyPair
  readonly relationship_id: string
  /** The longest it may take (30 s by default). */
  readonly timeout?: Duration.DurationInput | undefined
}

/**
 * Revokes over the handshake socket: `consent.revoke` as the first message, the Neuron's
 * `{type: "consent.revoked", relationship_id, ended_at}` back, then its close (1000). A refusal is a
 * `CareAgentError` (`Refused`) with the Neuron's code (`CONSENT_FAILED`, `INVALID_MESSAGE`) and close code.
 */
export const revokeOverSocket = Effect.fn("CareAgentClient.revokeOverSocket")(function*(
  request: SocketRevocationRequest
) {
  const timeout = Duration.decode(request.timeout ?? Duration.seconds(30))
  const fields = yield* signedRevocation(request.key, request.relationship_id)
  return yield* Effect.gen(function*() {
    const { awaitClose, nextMessage, send } = yield* openSession(request)
    send({ type: RevocationMessageType.revoke, ...fields })
    const answer = yield* nextMessage
    if (answer.type !== RevocationMessageType.revoked) return yield* protocolError("expected consent.revoked")
    yield* awaitClose
    return { relationship_id: answer.relationship_id, ended_at: answer.ended_at }
  }).pipe(
    Effect.scoped,
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () =>
        new CareAgentError({ reason: "Timeout", message: `no answer within ${Duration.format(timeout)}` })
    })
  )
})
