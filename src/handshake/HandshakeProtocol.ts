/**
 * The per-connection state machine of the consent handshake (PROTOCOL.md section 2), independent of the
 * socket: auth → challenge → challenge_response → complete; or, when the first message is a patient's
 * `consent.revoke` (section 8), the revocation and its `consent.revoked` answer. Every refusal is a
 * `HandshakeFailure` whose code and close code come from one table; the transport (HandshakeServer) sends it
 * and closes.
 */
import * as Clock from "effect/Clock"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { createHash } from "node:crypto"
import { ConsentError, toWire } from "../consent/ConsentError.js"
import type { ConsentVerifier } from "../consent/ConsentVerifier.js"
import {
  type ConsentRevokedMessage,
  type ConsentRevokeMessage,
  RevocationMessageType
} from "../protocol/ConsentRevocation.js"
import {
  decodeFirstMessage,
  decodeFrame,
  encodeServerMessage,
  HandshakeChallengeResponse,
  type HandshakeComplete,
  HandshakeFailure,
  invalidMessage,
  MessageType
} from "../protocol/HandshakeMessages.js"
import type { Relationships } from "../relationships/Relationships.js"
import type { AuditLog } from "../store/AuditLog.js"
import { ServerStopping, startedEntry } from "./HandshakeOutcome.js"
import type { ProviderLookup } from "./ProviderLookup.js"
import type { RelationshipStore } from "./RelationshipStore.js"

/** Where a handshake is, for `activeSessions()`. */
export type SessionState = "queued" | "awaiting_auth" | "awaiting_challenge_response" | "completing"

/** What is known about one handshake in progress; the protocol fills it in as it learns. */
export interface SessionInfo {
  readonly connection_id: string
  readonly started_at: string
  readonly remote_address: string | null
  state: SessionState
  /** From a verified consent token. */
  provider_npi: string | null
  patient_agent_id: string | null
  /** `sha256:` and the first 16 hex digits of the SHA-256 of the raw key: never the key itself. */
  key_fingerprint: string | null
  /** When the socket was upgraded (ISO 8601): the time of its `handshake.started` audit entry. */
  upgraded_at: string | null
}

/** Something arriving for a connection: a frame, the end of the connection, its deadline, or a stop. */
export type Inbound =
  | { readonly _tag: "Frame"; readonly data: string | Uint8Array }
  | { readonly _tag: "Ended"; readonly closeCode: number; readonly code: string }
  | { readonly _tag: "TimedOut" }
  | { readonly _tag: "Stopping" }

/** The peer closed, or the transport refused a frame (1009, 1007, 1002): nothing more can be sent. */
export class ConnectionEnded extends Schema.TaggedError<ConnectionEnded>()("ConnectionEnded", {
  /** `CONNECTION_CLOSED`, `FRAME_TOO_LARGE`, `INVALID_UTF8` or `PROTOCOL_ERROR`. */
  code: Schema.String,
  closeCode: Schema.Number
}) {}

/** One upgraded connection, as the protocol sees it (methods: called on the connection). */
export interface Connection {
  /** The next inbound event, waiting for it. */
  readonly next: Effect.Effect<Inbound>
  /** The next inbound event if one has already arrived. */
  poll(): Inbound | undefined
  /** Moves the connection's deadline (Clock milliseconds; Infinity: none). */
  setDeadline(atMillis: number): Effect.Effect<void>
  /** Sends one text frame. */
  send(text: string): Effect.Effect<void>
}

/** Settings the protocol needs. */
export interface ProtocolOptions {
  readonly authTimeout: Duration.Duration
  /** The Neuron's public URL without a trailing slash, for `<public url>/ws/provider/<npi>`. */
  readonly publicUrl: string
}

/** The services a handshake uses, taken once when the server is built (not looked up per handshake). */
export interface ProtocolServices {
  readonly verifier: ConsentVerifier["Type"]
  readonly providers: ProviderLookup["Type"]
  readonly relationships: RelationshipStore
  readonly audit: AuditLog
  /** The revocation of `POST /v1/consent/revoke`, for a `consent.revoke` first message. */
  readonly revoke: Relationships["revoke"]
}

/** The fingerprint of a raw public key that audit entries carry. */
export const keyFingerprint = (raw: Uint8Array): string =>
  "sha256:" + createHash("sha256").update(raw).digest("hex").slice(0, 16)

const fromConsent = (error: ConsentError) => {
  const wire = toWire(error)
  return new HandshakeFailure({ code: wire.code, message: wire.message })
}

const decodeResponse = decodeFrame(HandshakeChallengeResponse, MessageType.challengeResponse)

type Refusal = HandshakeFailure | ConnectionEnded | ServerStopping

/** An event that is not the frame the protocol waits for, as the failure it is. */
const interrupting = (event: Exclude<Inbound, { _tag: "Frame" }>, onTimeout: string): Refusal => {
  switch (event._tag) {
    case "Ended":
      return new ConnectionEnded({ code: event.code, closeCode: event.closeCode })
    case "Stopping":
      return new ServerStopping()
    case "TimedOut":
      return new HandshakeFailure({ code: "AUTH_TIMEOUT", message: onTimeout })
  }
}

/** A frame, the end of the connection or a stop arriving after the last message (`handshake.challenge_response`). */
const beyondLast = (event: Inbound | undefined, last: string = MessageType.challengeResponse): Refusal | undefined => {
  if (event === undefined || event._tag === "TimedOut") return undefined
  return event._tag === "Frame"
    ? invalidMessage(`no frame is expected after ${last}`)
    : interrupting(event, "")
}

/**
 * A patient's `consent.revoke` as the first message: the same revocation as `POST /v1/consent/revoke`
 * (`Relationships.revoke`: window, key rules, signature, then the state, idempotent), answered with
 * `consent.revoked`. Every refusal is `CONSENT_FAILED` (section 2 has no code of its own for an unknown or a
 * terminated relationship), a malformed signature `INVALID_MESSAGE`. A frame already there with it comes after
 * the last expected message: refused, nothing revoked. The relationship's audit entry names the connection.
 */
const revokeOnSocket = (
  session: SessionInfo,
  connection: Connection,
  services: ProtocolServices,
  request: ConsentRevokeMessage
): Effect.Effect<ConsentRevokedMessage, Refusal> =>
  Effect.suspend(() => {
    session.state = "completing"
    const early = beyondLast(connection.poll(), RevocationMessageType.revoke)
    if (early !== undefined) return Effect.fail(early)
    return Effect.zipRight(
      connection.setDeadline(Infinity),
      services.revoke(request, { via: "handshake_socket", connection_id: session.connection_id })
    ).pipe(
      Effect.map((revoked): ConsentRevokedMessage => ({
        type: RevocationMessageType.revoked,
        relationship_id: revoked.relationship_id,
        ended_at: revoked.ended_at
      })),
      Effect.catchTags({
        ConsentError: (e) => Effect.fail(fromConsent(e)),
        RelationshipNotFound: (e) => Effect.fail(new HandshakeFailure({ code: "CONSENT_FAILED", message: e.message })),
        AlreadyEnded: (e) => Effect.fail(new HandshakeFailure({ code: "CONSENT_FAILED", message: e.message }))
      })
    )
  })

/**
 * Runs one handshake to its `handshake.complete` message (which the caller sends before closing with 1000).
 * The completion is written together with its audit entries (started, completed), in one transaction.
 * Untraced: a span per handshake costs more than the rest of its Effect bookkeeping.
 */
export const run = Effect.fnUntraced(function*(
  session: SessionInfo,
  connection: Connection,
  options: ProtocolOptions,
  services: ProtocolServices
) {
  const { providers, relationships, verifier } = services

  const receive = <A>(
    decode: (frame: string | Uint8Array) => Either.Either<A, HandshakeFailure>,
    onTimeout: string
  ) =>
    Effect.flatMap(
      connection.next,
      (event): Effect.Effect<A, Refusal> =>
        event._tag === "Frame" ? decode(event.data) : Effect.fail(interrupting(event, onTimeout))
    )

  // 1. handshake.auth (or a patient's consent.revoke), within the auth timeout (the deadline set at the upgrade).
  const auth = yield* receive(decodeFirstMessage, "no handshake.auth within the auth timeout")
  if (auth.type === RevocationMessageType.revoke) return yield* revokeOnSocket(session, connection, services, auth)
  session.patient_agent_id = auth.patient_agent_id
  const verified = yield* Effect.mapError(verifier.verifyToken(auth), fromConsent)
  const npi = verified.claims.provider_npi
  session.provider_npi = npi
  session.key_fingerprint = keyFingerprint(verified.publicKey.raw)
  const provider = yield* providers.find(npi)
  if (Option.isNone(provider)) {
    return yield* new HandshakeFailure({
      code: "PROVIDER_NOT_FOUND",
      message: `provider_npi ${npi} is not a provider of this neuron`
    })
  }

  // 2. handshake.challenge, bound to this connection.
  const challenge = yield* verifier.issueChallenge(session.connection_id, verified.publicKey)
  session.state = "awaiting_challenge_response"
  const now = yield* Clock.currentTimeMillis
  // 3. handshake.challenge_response, before expires_at (and never longer than the auth timeout).
  yield* connection.setDeadline(
    Math.min(now + Duration.toMillis(options.authTimeout), DateTime.toEpochMillis(challenge.expiresAt))
  )
  yield* connection.send(encodeServerMessage({
    type: MessageType.challenge,
    nonce: challenge.nonce,
    provider_npi: npi,
    organization_npi: verifier.organizationNpi,
    expires_at: DateTime.formatIso(challenge.expiresAt)
  }))
  const response = yield* receive(decodeResponse, "no handshake.challenge_response before expires_at")
  session.state = "completing"
  yield* connection.setDeadline(Infinity)

  // 4. The answer and the relationship. A frame arriving meanwhile comes after the last expected message: it
  // is refused and the completion is abandoned. Already there (sent together with the answer), it is seen
  // now; arriving while the answer is checked and stored, just before the commit (the transaction rolls back).
  const early = beyondLast(connection.poll())
  if (early !== undefined) return yield* Effect.fail(early)
  yield* Effect.mapError(
    verifier.answerChallenge(session.connection_id, challenge.nonce, response.signed_nonce),
    fromConsent
  )
  const provider_endpoint = Option.getOrElse(
    provider.value.provider_endpoint_url,
    () => `${options.publicUrl}/ws/provider/${npi}`
  )
  const established = yield* relationships.establish({
    patient_agent_id: verified.claims.patient_agent_id,
    provider_npi: npi,
    patient_public_key: verified.publicKey.b64u,
    consented_actions: verified.claims.consented_actions
  }, {
    audit: (established) => [
      startedEntry(session),
      {
        actor: `patient:${verified.claims.patient_agent_id}`,
        action: "handshake.completed",
        subject: established.relationship_id,
        details: {
          connection_id: session.connection_id,
          status: established.status,
          provider_npi: npi,
          key_fingerprint: session.key_fingerprint,
          consented_actions: verified.claims.consented_actions
        }
      }
    ],
    beforeCommit: () => beyondLast(connection.poll())
  }).pipe(
    Effect.catchTag(
      "RelationshipKeyMismatch",
      (e) => Effect.fail(fromConsent(new ConsentError({ reason: e.reason, message: e.message })))
    )
  )
  const message: HandshakeComplete = {
    type: MessageType.complete,
    relationship_id: established.relationship_id,
    provider_npi: npi,
    provider_endpoint,
    status: established.status
  }
  return message
})
