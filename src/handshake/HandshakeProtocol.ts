/**
 * The per-connection state machine of the consent handshake (PROTOCOL.md section 2), independent of the
 * socket: auth → challenge → challenge_response → complete; or, when the first message is a patient's
 * `consent.revoke` (section 8), the revocation and its `consent.revoked` answer. Every refusal is a
 * `HandshakeFailure` whose code and close code come from one table; the transport (HandshakeServer) sends it
 * and closes.
 *
 * The messages are answered as plain code on the socket's callbacks (`Handshake`): decoding, the token's checks
 * and the challenge are pure and synchronous (`Either`s), and a fiber per step cost more CPU than the steps
 * themselves (BENCHMARKS.md, issue 11). The completion joins the group commit (the relationship and its audit
 * entries in one transaction) and `handshake.complete` is sent from its outcome; a refusal is sent at once and
 * recorded once its audit entry is written (`refused`). A revocation, a stop or an unexpected failure runs in one
 * fiber (`Ending`).
 */
import type * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { createHash } from "node:crypto"
import { ConsentError, toWire } from "../consent/ConsentError.js"
import type { ConsentVerifier, VerifiedConsent } from "../consent/ConsentVerifier.js"
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
import type { ProviderEntry, ProviderLookup } from "./ProviderLookup.js"
import type { Established, EstablishOptions, RelationshipKeyMismatch, RelationshipStore } from "./RelationshipStore.js"

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
  /** The next inbound event if one has already arrived (a frame is taken; an end stays for every later read). */
  poll(): Inbound | undefined
  /** Calls `callback` once an event has arrived (now, if one has). */
  whenReady(callback: () => void): void
  /** Moves the connection's deadline (Clock milliseconds; Infinity: none): `TimedOut` arrives once it passed. */
  deadline(atMillis: number): void
  /** `deadline` as an Effect. */
  setDeadline(atMillis: number): Effect.Effect<void>
  /** Sends one text frame (nothing if the socket is no longer open). */
  write(text: string): void
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

/** What ends a handshake in a fiber: a revocation's answer, or a refusal that is not answered in plain code. */
export type Ending = Effect.Effect<ConsentRevokedMessage, Refusal>

/**
 * The relationship of an answered challenge (4 of section 2), written together with the handshake's audit
 * entries (started, completed) in one transaction, and the `handshake.complete` it is answered with. A frame
 * arriving meanwhile comes after the last expected message: just before the commit it is seen, refused, and the
 * completion rolls back.
 */
const completion = (
  session: SessionInfo,
  connection: Connection,
  options: ProtocolOptions,
  verified: VerifiedConsent,
  provider: ProviderEntry
) => {
  const npi = verified.claims.provider_npi
  const provider_endpoint = Option.getOrElse(
    provider.provider_endpoint_url,
    () => `${options.publicUrl}/ws/provider/${npi}`
  )
  const request = {
    patient_agent_id: verified.claims.patient_agent_id,
    provider_npi: npi,
    patient_public_key: verified.publicKey.b64u,
    consented_actions: verified.claims.consented_actions
  }
  const writing: EstablishOptions<Refusal> = {
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
  }
  const message = (established: Established): HandshakeComplete => ({
    type: MessageType.complete,
    relationship_id: established.relationship_id,
    provider_npi: npi,
    provider_endpoint,
    status: established.status
  })
  return { request, writing, message }
}

/** A completion that was not written, as the handshake's refusal (another key: `CONSENT_FAILED`). */
const notCompleted = (cause: Cause.Cause<RelationshipKeyMismatch | Refusal>): Ending =>
  Effect.catchTag(
    Effect.failCause(cause),
    "RelationshipKeyMismatch",
    (e) => Effect.fail(fromConsent(new ConsentError({ reason: e.reason, message: e.message })))
  )

/** What a handshake is given by the server that runs it. */
export interface HandshakeRun {
  readonly options: ProtocolOptions
  readonly services: ProtocolServices
  /** The server's Clock (a TestClock in tests), read without a fiber. */
  readonly clock: Clock.Clock
  /** Runs `effect` in a fiber and calls `onExit` with its exit: a provider lookup that needs a read. */
  readonly await: <A>(effect: Effect.Effect<A>, onExit: (exit: Exit.Exit<A>) => void) => void
  /**
   * Runs what ends the handshake in a fiber, then sends and records its outcome: a revocation, a stop, a
   * defect. Called once, or `refused`, or `completed`.
   */
  readonly end: (ending: Ending) => void
  /**
   * Refuses the handshake in plain code: a refusal of section 2 (not `SERVER_ERROR`) is sent with its close code;
   * a connection that ended is only recorded. Its `handshake.failed` entry is written by the audit log's group
   * commit, and the refusal recorded once it is.
   */
  readonly refused: (refusal: HandshakeFailure | ConnectionEnded) => void
  /** Answers a completed handshake (its relationship written) and records it, in plain code. */
  readonly completed: (message: HandshakeComplete) => void
}

const AUTH_TIMEOUT = "no handshake.auth within the auth timeout"
const RESPONSE_TIMEOUT = "no handshake.challenge_response before expires_at"

/**
 * One handshake, driven by its connection's events: `step` reads what has arrived and answers it, then waits
 * for the next event without a fiber. Steps 1 to 4 of section 2 are decided here, synchronously; the completion
 * is written by the group commit and answered from its outcome (`run.completed`); a revocation or a refusal is
 * handed to `run.end`, and the handshake is over. A defect (a throw) in a step ends the handshake as a
 * `SERVER_ERROR`, never escapes into the socket's events.
 */
export class Handshake {
  private stage: "auth" | "lookup" | "response" | "completing" | "ended" = "auth"
  private verified: VerifiedConsent | undefined = undefined
  private provider: ProviderEntry | undefined = undefined
  private nonce = ""

  constructor(
    private readonly session: SessionInfo,
    private readonly connection: Connection,
    private readonly run: HandshakeRun
  ) {}

  /** Answers every event that has arrived, then waits for the next one (from the first event on). */
  readonly step = (): void => {
    try {
      while (this.stage === "auth" || this.stage === "response") {
        const event = this.connection.poll()
        if (event === undefined) return this.connection.whenReady(this.step)
        if (event._tag !== "Frame") {
          return this.refuse(interrupting(event, this.stage === "auth" ? AUTH_TIMEOUT : RESPONSE_TIMEOUT))
        }
        if (this.stage === "auth") this.auth(event.data)
        else this.answer(event.data)
      }
    } catch (defect) {
      this.end(Effect.die(defect))
    }
  }

  private end(ending: Ending): void {
    if (this.stage === "ended") return
    this.stage = "ended"
    this.run.end(ending)
  }

  // A refusal of section 2 or a connection that ended: answered in plain code. A stop or a SERVER_ERROR (it is
  // logged) ends in a fiber.
  private refuse(failure: Refusal): void {
    if (failure._tag === "ServerStopping" || (failure._tag === "HandshakeFailure" && failure.code === "SERVER_ERROR")) {
      return this.end(Effect.fail(failure))
    }
    if (this.stage === "ended") return
    this.stage = "ended"
    this.run.refused(failure)
  }

  /** 1. `handshake.auth` (or a patient's `consent.revoke`), within the auth timeout (set at the upgrade). */
  private auth(frame: string | Uint8Array): void {
    const { services, clock } = this.run
    const session = this.session
    const first = decodeFirstMessage(frame)
    if (Either.isLeft(first)) return this.refuse(first.left)
    const auth = first.right
    if (auth.type === RevocationMessageType.revoke) {
      return this.end(revokeOnSocket(session, this.connection, services, auth))
    }
    session.patient_agent_id = auth.patient_agent_id
    const verified = services.verifier.verifyTokenAt(auth, clock.unsafeCurrentTimeMillis())
    if (Either.isLeft(verified)) return this.refuse(fromConsent(verified.left))
    const npi = verified.right.claims.provider_npi
    session.provider_npi = npi
    session.key_fingerprint = keyFingerprint(verified.right.publicKey.raw)
    this.verified = verified.right
    const known = services.providers.findNow?.(npi)
    if (known !== undefined) return this.challenge(known)
    // Not cached: read in a fiber, then go on from here.
    this.stage = "lookup"
    this.run.await(services.providers.find(npi), (exit) => {
      try {
        if (Exit.isFailure(exit)) return this.end(Effect.failCause(exit.cause))
        this.challenge(exit.value)
      } catch (defect) {
        return this.end(Effect.die(defect))
      }
      this.step()
    })
  }

  /** 2. `handshake.challenge`, bound to this connection; the answer is due before it expires. */
  private challenge(provider: Option.Option<ProviderEntry>): void {
    const { clock, options, services } = this.run
    const session = this.session
    const verified = this.verified!
    const npi = verified.claims.provider_npi
    if (Option.isNone(provider)) {
      return this.refuse(
        new HandshakeFailure({
          code: "PROVIDER_NOT_FOUND",
          message: `provider_npi ${npi} is not a provider of this neuron`
        })
      )
    }
    this.provider = provider.value
    const now = clock.unsafeCurrentTimeMillis()
    const challenge = services.verifier.issueChallengeAt(session.connection_id, verified.publicKey, now)
    this.nonce = challenge.nonce
    session.state = "awaiting_challenge_response"
    this.stage = "response"
    // 3. The answer before expires_at, and never later than the auth timeout.
    this.connection.deadline(
      Math.min(now + Duration.toMillis(options.authTimeout), DateTime.toEpochMillis(challenge.expiresAt))
    )
    this.connection.write(encodeServerMessage({
      type: MessageType.challenge,
      nonce: challenge.nonce,
      provider_npi: npi,
      organization_npi: services.verifier.organizationNpi,
      expires_at: DateTime.formatIso(challenge.expiresAt)
    }))
  }

  /**
   * 4. `handshake.challenge_response`: the answer is checked, then the relationship written. A frame already
   * there with it (sent together) comes after the last expected message: refused, nothing written.
   */
  private answer(frame: string | Uint8Array): void {
    const { clock, options, services } = this.run
    const session = this.session
    const response = decodeResponse(frame)
    if (Either.isLeft(response)) return this.refuse(response.left)
    session.state = "completing"
    this.connection.deadline(Infinity)
    const early = beyondLast(this.connection.poll())
    if (early !== undefined) return this.refuse(early)
    const answered = services.verifier.answerChallengeAt(
      session.connection_id,
      this.nonce,
      response.right.signed_nonce,
      clock.unsafeCurrentTimeMillis()
    )
    if (Either.isLeft(answered)) return this.refuse(fromConsent(answered.left))
    // Written with the next group commit; answered from its outcome, without a fiber when it completes.
    this.stage = "completing"
    const { message, request, writing } = completion(session, this.connection, options, this.verified!, this.provider!)
    services.relationships.establishNow(request, writing, (outcome) => {
      try {
        if (Exit.isFailure(outcome)) return this.end(notCompleted(outcome.cause))
        this.stage = "ended"
        this.run.completed(message(outcome.value))
      } catch (defect) {
        this.end(Effect.die(defect))
      }
    })
  }
}
