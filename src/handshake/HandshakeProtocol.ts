/**
 * The per-connection state machine of the consent handshake (PROTOCOL.md section 2), independent of the
 * socket: auth → challenge → challenge_response → complete. Every refusal is a `HandshakeFailure` whose code
 * and close code come from one table; the transport (HandshakeServer) sends it and closes.
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
import { ConsentVerifier } from "../consent/ConsentVerifier.js"
import { AuditLog } from "../store/AuditLog.js"
import {
  decodeFrame,
  HandshakeAuth,
  HandshakeChallengeResponse,
  type HandshakeComplete,
  HandshakeFailure,
  invalidMessage,
  MessageType,
  type ServerMessage
} from "./HandshakeMessages.js"
import { ProviderLookup } from "./ProviderLookup.js"
import { RelationshipStore } from "./RelationshipStore.js"

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
}

/** Something arriving from the peer: a frame, or the end of the connection. */
export type Inbound =
  | { readonly _tag: "Frame"; readonly data: string | Uint8Array }
  | { readonly _tag: "Ended"; readonly closeCode: number; readonly code: string }

/** The peer closed, or the transport refused a frame (1009, 1007, 1002): nothing more can be sent. */
export class ConnectionEnded extends Schema.TaggedError<ConnectionEnded>()("ConnectionEnded", {
  /** `CONNECTION_CLOSED`, `FRAME_TOO_LARGE`, `INVALID_UTF8` or `PROTOCOL_ERROR`. */
  code: Schema.String,
  closeCode: Schema.Number
}) {}

/** One upgraded connection, as the protocol sees it. */
export interface Connection {
  readonly session: SessionInfo
  /** The next inbound event; None when `within` elapses first. */
  readonly next: (within: Duration.Duration) => Effect.Effect<Option.Option<Inbound>>
  /** The next inbound event if one has already arrived. */
  readonly poll: Effect.Effect<Option.Option<Inbound>>
  readonly send: (message: ServerMessage) => Effect.Effect<void>
}

/** Settings the protocol needs. */
export interface ProtocolOptions {
  readonly authTimeout: Duration.Duration
  /** The Neuron's public URL without a trailing slash, for `<public url>/ws/provider/<npi>`. */
  readonly publicUrl: string
}

/** The fingerprint of a raw public key that audit entries carry. */
export const keyFingerprint = (raw: Uint8Array): string =>
  "sha256:" + createHash("sha256").update(raw).digest("hex").slice(0, 16)

const fromConsent = (error: ConsentError) => {
  const wire = toWire(error)
  return new HandshakeFailure({ code: wire.code, message: wire.message })
}

const decodeAuth = decodeFrame(HandshakeAuth, MessageType.auth)
const decodeResponse = decodeFrame(HandshakeChallengeResponse, MessageType.challengeResponse)

/**
 * Runs one handshake to its `handshake.complete` message (which the caller sends before closing with 1000).
 * The completion is written together with its audit entry, in one transaction.
 */
export const run = Effect.fn("HandshakeProtocol.run")(function*(connection: Connection, options: ProtocolOptions) {
  const verifier = yield* ConsentVerifier
  const providers = yield* ProviderLookup
  const relationships = yield* RelationshipStore
  const audit = yield* AuditLog
  const session = connection.session

  const receive = <A>(
    within: Duration.Duration,
    decode: (frame: string | Uint8Array) => Either.Either<A, HandshakeFailure>,
    onTimeout: string
  ) =>
    Effect.flatMap(connection.next(within), (inbound): Effect.Effect<A, HandshakeFailure | ConnectionEnded> => {
      if (Option.isNone(inbound)) return Effect.fail(new HandshakeFailure({ code: "AUTH_TIMEOUT", message: onTimeout }))
      const event = inbound.value
      if (event._tag === "Ended") {
        return Effect.fail(new ConnectionEnded({ code: event.code, closeCode: event.closeCode }))
      }
      return decode(event.data)
    })

  // 1. handshake.auth, within the auth timeout.
  const auth = yield* receive(options.authTimeout, decodeAuth, "no handshake.auth within the auth timeout")
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
  yield* connection.send({
    type: MessageType.challenge,
    nonce: challenge.nonce,
    provider_npi: npi,
    organization_npi: verifier.organizationNpi,
    expires_at: DateTime.formatIso(challenge.expiresAt)
  })

  // 3. handshake.challenge_response, before expires_at (and never longer than the auth timeout).
  const now = yield* Clock.currentTimeMillis
  const remaining = Duration.min(
    options.authTimeout,
    Duration.millis(Math.max(0, DateTime.toEpochMillis(challenge.expiresAt) - now))
  )
  const response = yield* receive(remaining, decodeResponse, "no handshake.challenge_response before expires_at")
  session.state = "completing"

  // 4. The answer and the relationship. A frame arriving meanwhile comes after the last expected message: it
  // is refused and the completion is abandoned (its transaction rolls back).
  const provider_endpoint = Option.getOrElse(
    provider.value.provider_endpoint_url,
    () => `${options.publicUrl}/ws/provider/${npi}`
  )
  const complete = Effect.gen(function*() {
    yield* Effect.mapError(
      verifier.answerChallenge(session.connection_id, challenge.nonce, response.signed_nonce),
      fromConsent
    )
    const established = yield* relationships.establish({
      patient_agent_id: verified.claims.patient_agent_id,
      provider_npi: npi,
      patient_public_key: verified.publicKey.b64u,
      consented_actions: verified.claims.consented_actions
    }, (established) =>
      audit.append({
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
      })).pipe(
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
  const beyondLast = (inbound: Inbound): Effect.Effect<never, HandshakeFailure | ConnectionEnded> =>
    inbound._tag === "Ended"
      ? Effect.fail(new ConnectionEnded({ code: inbound.code, closeCode: inbound.closeCode }))
      : Effect.fail(invalidMessage("no frame is expected after handshake.challenge_response"))
  // Already there (sent together with the answer), or arriving while the answer is checked and stored.
  const early = yield* connection.poll
  if (Option.isSome(early)) return yield* beyondLast(early.value)
  const frameAfterLast = Effect.flatMap(
    connection.next(Duration.infinity),
    Option.match({ onNone: () => Effect.never, onSome: beyondLast })
  )
  return yield* Effect.raceFirst(complete, frameAfterLast)
})
