/**
 * The WebSocket half of a patient's CareAgent: performs the consent handshake (PROTOCOL.md section 2) with a
 * Neuron and returns the relationship, or a `CareAgentError` carrying the Neuron's code and close code.
 * Built on the `ws` client, so that close codes and refused upgrades (status, error body) are visible.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import { WebSocket } from "ws"
import type { Npi } from "../domain/Npi.js"
import {
  HandshakeChallenge,
  type HandshakeComplete,
  type HandshakeErrorMessage,
  MessageType,
  ServerMessage
} from "../protocol/HandshakeMessages.js"
import { makeConsentClaims, type PatientKeyPair, signConsentToken, signNonce } from "./CareAgentKeys.js"

/** Why a handshake did not produce a relationship. */
export class CareAgentError extends Schema.TaggedError<CareAgentError>()("CareAgentError", {
  /**
   * `Refused`: the Neuron sent `handshake.error` (see `code`, `closeCode`); `HttpStatus`: the upgrade was
   * answered with an HTTP status (`status`, and `code` from the error body); `Closed`: the connection closed
   * without an answer (`closeCode`); `Protocol`: the Neuron sent something unexpected; `Connect`: no
   * connection; `Timeout`: no result in time.
   */
  reason: Schema.Literal("Refused", "HttpStatus", "Closed", "Protocol", "Connect", "Timeout"),
  message: Schema.String,
  code: Schema.optional(Schema.String),
  closeCode: Schema.optional(Schema.Number),
  status: Schema.optional(Schema.Number),
  cause: Schema.optional(Schema.Defect)
}) {}

/** What the patient asks for. */
export interface HandshakeRequest {
  /** The Neuron's handshake URL (`ws://host:port/ws/handshake`); see `handshakeUrl`. */
  readonly url: string
  readonly key: PatientKeyPair
  readonly patient_agent_id: string
  readonly provider_npi: Npi
  readonly consented_actions: ReadonlyArray<string>
  readonly organization_npi?: Npi | undefined
  readonly patient_endpoint: string
  /** How long the consent token is valid (one hour by default). */
  readonly ttl?: Duration.DurationInput | undefined
  /** The longest the whole handshake may take (30 s by default). */
  readonly timeout?: Duration.DurationInput | undefined
  /** An `Origin` header, as a browser would send. */
  readonly origin?: string | undefined
}

/** The relationship the Neuron returned. */
export interface HandshakeResult {
  readonly relationship_id: string
  readonly provider_npi: string
  readonly provider_endpoint: string
  readonly status: "new" | "existing"
}

/** The handshake URL of a Neuron endpoint (`http://host:port` → `ws://host:port/ws/handshake`). */
export const handshakeUrl = (neuronUrl: string): string => {
  const url = new URL(neuronUrl)
  url.protocol = url.protocol === "https:" || url.protocol === "wss:" ? "wss:" : "ws:"
  url.pathname = url.pathname.replace(/\/+$/, "") + "/ws/handshake"
  return url.toString()
}

type Event =
  | { readonly _tag: "Open" }
  | { readonly _tag: "Message"; readonly data: string | undefined }
  | { readonly _tag: "Close"; readonly code: number }
  | { readonly _tag: "Error"; readonly error: Error }
  | { readonly _tag: "Status"; readonly status: number; readonly body: string }

const MAX_ERROR_BODY = 16_384

/** Opens the socket; every event goes to one queue. Closed (1000) or dropped with the scope. */
const connect = (request: { readonly url: string; readonly origin?: string | undefined }) =>
  Effect.gen(function*() {
    const events = yield* Queue.unbounded<Event>()
    const offer = (event: Event) => Queue.unsafeOffer(events, event)
    const ws = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const ws = new WebSocket(request.url, {
          perMessageDeflate: false,
          ...(request.origin === undefined ? {} : { origin: request.origin })
        })
        ws.on("open", () => offer({ _tag: "Open" }))
        ws.on("message", (data, isBinary) => offer({ _tag: "Message", data: isBinary ? undefined : data.toString() }))
        ws.on("close", (code) => offer({ _tag: "Close", code }))
        ws.on("error", (error) => offer({ _tag: "Error", error }))
        ws.on("unexpected-response", (req, res) => {
          let body = ""
          res.setEncoding("utf8")
          res.on("data", (chunk: string) => {
            if (body.length < MAX_ERROR_BODY) body += chunk
          })
          const done = () => {
            offer({ _tag: "Status", status: res.statusCode ?? 0, body })
            req.destroy()
          }
          res.once("end", done)
          res.once("close", done)
          res.once("error", done)
        })
        return ws
      }),
      (ws) =>
        Effect.sync(() => {
          if (ws.readyState === WebSocket.OPEN) ws.close(1000)
          else if (ws.readyState === WebSocket.CONNECTING) ws.terminate()
        })
    )
    return { ws, events }
  })

const decodeServerMessage = Schema.decodeUnknownEither(Schema.parseJson(ServerMessage))
const ErrorBody = Schema.parseJson(
  Schema.Struct({ error: Schema.Struct({ code: Schema.String, message: Schema.String }) })
)

/** An HTTP answer other than the expected one, with the code and message of the Neuron's error body when it has one. */
export const httpStatusError = (status: number, text: string): CareAgentError => {
  const body = Schema.decodeUnknownEither(ErrorBody)(text)
  return new CareAgentError({
    reason: "HttpStatus",
    status,
    ...(Either.isRight(body) ? { code: body.right.error.code } : {}),
    message: Either.isRight(body)
      ? `the neuron answered ${status}: ${body.right.error.message}`
      : `the neuron answered ${status}`
  })
}

/** A `Protocol` error: the Neuron sent something unexpected. */
export const protocolError = (message: string) => new CareAgentError({ reason: "Protocol", message })

/**
 * A connected handshake socket, for the length of the scope: waits for the upgrade (an HTTP answer instead is
 * `HttpStatus`), then `send` writes one JSON message and `nextMessage` reads the next server message, a
 * `handshake.error` becoming a `Refused` failure with the close code that follows it.
 */
export const openSession = (request: { readonly url: string; readonly origin?: string | undefined }) =>
  Effect.gen(function*() {
    const { events, ws } = yield* connect(request)

    // The close code that follows a refusal or a result.
    const awaitClose: Effect.Effect<number> = Effect.flatMap(
      Queue.take(events),
      (event) => event._tag === "Close" ? Effect.succeed(event.code) : awaitClose
    )
    const ended = (event: Event): CareAgentError => {
      switch (event._tag) {
        case "Close":
          return new CareAgentError({
            reason: "Closed",
            closeCode: event.code,
            message: `the neuron closed the connection (${event.code})`
          })
        case "Status":
          return httpStatusError(event.status, event.body)
        case "Error":
          return new CareAgentError({ reason: "Connect", message: event.error.message, cause: event.error })
        default:
          return protocolError(`unexpected ${event._tag} event`)
      }
    }
    const refused = (error: HandshakeErrorMessage) =>
      Effect.flatMap(awaitClose, (closeCode) =>
        Effect.fail(
          new CareAgentError({ reason: "Refused", code: error.code, closeCode, message: error.message })
        ))
    // The next server message; a `handshake.error` becomes a `Refused` failure.
    const nextMessage: Effect.Effect<ServerMessage, CareAgentError> = Effect.flatMap(Queue.take(events), (event) => {
      if (event._tag !== "Message") return Effect.fail(ended(event))
      if (event.data === undefined) return Effect.fail(protocolError("the neuron sent a binary frame"))
      const decoded = decodeServerMessage(event.data)
      if (Either.isLeft(decoded)) return Effect.fail(protocolError("the neuron sent an undecodable message"))
      const message = decoded.right
      return message.type === MessageType.error ? refused(message) : Effect.succeed(message)
    })

    const first = yield* Queue.take(events)
    if (first._tag !== "Open") return yield* ended(first)
    return {
      send: (message: Record<string, unknown>) => ws.send(JSON.stringify(message)),
      nextMessage,
      awaitClose
    }
  })

/**
 * Performs the handshake: consent token (claims issued now, signed by `key`), challenge, relationship.
 * The clock is Effect's, so tests under `TestClock` issue tokens at the test's time.
 */
export const handshake = Effect.fn("CareAgentClient.handshake")(function*(request: HandshakeRequest) {
  const timeout = Duration.decode(request.timeout ?? Duration.seconds(30))
  const claims = yield* makeConsentClaims({
    patient_agent_id: request.patient_agent_id,
    provider_npi: request.provider_npi,
    consented_actions: request.consented_actions,
    ...(request.organization_npi === undefined ? {} : { organization_npi: request.organization_npi }),
    ...(request.ttl === undefined ? {} : { validFor: request.ttl })
  })
  const token = signConsentToken(request.key, claims)
  yield* Effect.logDebug("consent token signed").pipe(
    Effect.annotateLogs({ provider_npi: request.provider_npi, consented_actions: claims.consented_actions.join(",") })
  )

  return yield* Effect.gen(function*() {
    const { awaitClose, nextMessage, send } = yield* openSession(request)
    send({
      type: MessageType.auth,
      ...token,
      patient_agent_id: request.patient_agent_id,
      patient_public_key: request.key.publicKeyB64u,
      patient_endpoint: request.patient_endpoint
    })
    yield* Effect.logDebug("handshake.auth sent")

    const challenge = yield* nextMessage
    if (!Schema.is(HandshakeChallenge)(challenge)) return yield* protocolError(`expected handshake.challenge`)
    if (challenge.provider_npi !== request.provider_npi) {
      return yield* protocolError("the challenge names another provider")
    }
    send({ type: MessageType.challengeResponse, signed_nonce: signNonce(request.key, challenge.nonce) })
    yield* Effect.logDebug("handshake.challenge answered").pipe(
      Effect.annotateLogs({ expires_at: challenge.expires_at })
    )

    const complete = yield* nextMessage
    if (complete.type !== MessageType.complete) return yield* protocolError("expected handshake.complete")
    const closeCode = yield* awaitClose
    const { provider_endpoint, provider_npi, relationship_id, status } = complete as HandshakeComplete
    yield* Effect.logDebug("handshake.complete received").pipe(Effect.annotateLogs({ status, close_code: closeCode }))
    return { relationship_id, provider_npi, provider_endpoint, status } satisfies HandshakeResult
  }).pipe(
    Effect.scoped,
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () =>
        new CareAgentError({ reason: "Timeout", message: `no result within ${Duration.format(timeout)}` })
    })
  )
})
