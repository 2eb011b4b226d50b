/**
 * The end of a handshake connection: send the outcome (`handshake.complete` or `handshake.error`), close with
 * its code, and record it in the audit log (PROTOCOL.md section 2). Audit entries carry the connection id,
 * the code, the provider and a key fingerprint: never a token, a signature or a key.
 */
import { clientAbortFiberId } from "@effect/platform/HttpServerError"
import * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as HashSet from "effect/HashSet"
import * as Option from "effect/Option"
import type { ConsentVerifier } from "../consent/ConsentVerifier.js"
import { describeCause } from "../log/Causes.js"
import type { ConsentRevokedMessage } from "../protocol/ConsentRevocation.js"
import {
  closeCodeOf,
  encodeServerMessage,
  type HandshakeComplete,
  HandshakeFailure,
  MessageType
} from "../protocol/HandshakeMessages.js"
import type { AuditInput, AuditLog } from "../store/AuditLog.js"
import type { ConnectionEnded, SessionInfo } from "./HandshakeProtocol.js"
import type { Upgraded } from "./WebSocketConnection.js"

/** The HandshakeServer is shutting down: open handshakes close with 1001. */
export class ServerStopping extends Data.TaggedError("ServerStopping") {}

/**
 * How a handshake that did not complete ended: refused, or a patient's revocation (`consent.revoked`). A
 * completion ends without it: `sendComplete` from the group commit's outcome.
 */
export type Outcome = Exit.Exit<ConsentRevokedMessage, HandshakeFailure | ConnectionEnded | ServerStopping>

/**
 * The `handshake.started` entry of an upgraded connection, dated at its upgrade. It is written with the
 * handshake's outcome, in the same transaction (completed, or failed): one commit per handshake instead of two.
 */
export const startedEntry = (session: SessionInfo): AuditInput => ({
  at: session.upgraded_at ?? undefined,
  actor: "anonymous",
  action: "handshake.started",
  subject: session.connection_id,
  details: { connection_id: session.connection_id, remote_address: session.remote_address }
})

/** The entries of a handshake that did not complete: its `handshake.started` and `handshake.failed`. */
export const failedEntries = (
  session: SessionInfo,
  code: string,
  closeCode: number,
  message?: string
): ReadonlyArray<AuditInput> => [startedEntry(session), {
  // The patient is named only once its consent token verified (the provider is known from then on).
  actor: session.provider_npi === null ? "anonymous" : `patient:${session.patient_agent_id}`,
  action: "handshake.failed",
  subject: session.connection_id,
  details: {
    connection_id: session.connection_id,
    code,
    close_code: closeCode,
    ...(message === undefined ? {} : { message }),
    ...(session.provider_npi === null
      ? { claimed_patient_agent_id: session.patient_agent_id }
      : { provider_npi: session.provider_npi, key_fingerprint: session.key_fingerprint })
  }
}]

/** Reports a `handshake.failed` entry that could not be written (the peer has its answer already). */
export const unwritten = (session: SessionInfo, cause: Cause.Cause<unknown>): Effect.Effect<void> =>
  Effect.logError("could not write the handshake.failed audit entry").pipe(
    Effect.annotateLogs({
      service: "HandshakeServer",
      connection_id: session.connection_id,
      error: describeCause(cause)
    })
  )

const failed = (audit: AuditLog, session: SessionInfo, code: string, closeCode: number, message?: string) =>
  audit.appendAll(failedEntries(session, code, closeCode, message)).pipe(
    // The peer has its answer already; a failed audit write is reported, not turned into another error.
    Effect.catchAllCause((cause) => unwritten(session, cause))
  )

/** Sends `handshake.complete` and starts the close (1000): plain code, the last step of a completed handshake. */
export const sendComplete = (connection: Upgraded, message: HandshakeComplete): void => {
  connection.write(encodeServerMessage(message))
  connection.end(1000, "handshake complete")
}

/**
 * Sends a refusal of section 2 (`handshake.error`) and starts the close with its code; a connection that ended
 * gets nothing. Returns what its `handshake.failed` entry records.
 */
export const sendRefusal = (
  connection: Upgraded,
  refusal: HandshakeFailure | ConnectionEnded
): { readonly code: string; readonly closeCode: number; readonly message?: string } => {
  if (refusal._tag === "ConnectionEnded") return { code: refusal.code, closeCode: refusal.closeCode }
  const closeCode = closeCodeOf[refusal.code]
  connection.write(encodeServerMessage({ type: MessageType.error, code: refusal.code, message: refusal.message }))
  connection.end(closeCode, refusal.code)
  return { code: refusal.code, closeCode, message: refusal.message }
}

/**
 * The DEBUG line of a completed handshake. Only built when debug logging is on: one line per handshake is too
 * much for a busy clinic's log, and building it costs CPU on the hot path; `/metrics` counts them instead.
 */
export const logCompletion = (session: SessionInfo, message: HandshakeComplete): Effect.Effect<void> =>
  Effect.logDebug("handshake completed").pipe(
    Effect.annotateLogs({
      service: "HandshakeServer",
      connection_id: session.connection_id,
      status: message.status,
      provider_npi: message.provider_npi
    })
  )

/**
 * Sends the outcome of a handshake that did not complete, starts the close with its code, and records a failure.
 * Meant to run uninterruptibly. Returns the outcome's label for the `neuron_handshakes_total{outcome}` counter:
 * `revoked` (a `consent.revoke` first message), or the failure's code (`AUTH_TIMEOUT`, ...).
 */
export const finish = (
  session: SessionInfo,
  connection: Upgraded,
  exit: Outcome,
  services: {
    readonly verifier: ConsentVerifier["Type"]
    readonly audit: AuditLog
  }
): Effect.Effect<string> =>
  Effect.gen(function*() {
    const { audit, verifier } = services
    yield* verifier.forget(session.connection_id)
    if (Exit.isSuccess(exit)) {
      // A revocation is recorded by its relationship's audit entry, written with the revocation.
      yield* connection.send(encodeServerMessage(exit.value))
      yield* connection.close(1000, "consent revoked")
      return "revoked"
    }
    const cause = exit.cause
    if (Cause.isInterruptedOnly(cause)) {
      // The server interrupts with `clientAbortFiberId` when the peer dropped the connection.
      const peerGone = HashSet.has(Cause.interruptors(cause), clientAbortFiberId)
      yield* connection.close(1001, "going away")
      const code = peerGone ? "CONNECTION_CLOSED" : "SHUTDOWN"
      yield* failed(audit, session, code, peerGone ? 1006 : 1001)
      return code
    }
    const failure = Cause.failureOption(cause)
    if (Option.isSome(failure) && failure.value._tag === "ConnectionEnded") {
      yield* failed(audit, session, failure.value.code, failure.value.closeCode)
      return failure.value.code
    }
    if (Option.isSome(failure) && failure.value._tag === "ServerStopping") {
      yield* connection.close(1001, "going away")
      yield* failed(audit, session, "SHUTDOWN", 1001)
      return "SHUTDOWN"
    }
    const refusal = Option.isSome(failure) && failure.value._tag === "HandshakeFailure"
      ? failure.value
      : new HandshakeFailure({ code: "SERVER_ERROR", message: "the neuron could not complete the handshake" })
    if (refusal.code === "SERVER_ERROR") {
      yield* Effect.logError("handshake failed unexpectedly").pipe(
        Effect.annotateLogs({
          service: "HandshakeServer",
          connection_id: session.connection_id,
          error: describeCause(cause)
        })
      )
    }
    const sent = sendRefusal(connection, refusal)
    yield* failed(audit, session, sent.code, sent.closeCode, sent.message)
    return refusal.code
  })
