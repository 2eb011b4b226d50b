/**
 * The messages of the consent handshake (PROTOCOL.md section 2), wire-compatible with the CareAgent Neuron,
 * and the one table of its error codes and close codes. Shared by the server and the CareAgent client.
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as Json from "../domain/Json.js"
import { describeParseError } from "../http/ErrorBody.js"
import { ConsentRevokedMessage, ConsentRevokeMessage, RevocationMessageType } from "./ConsentRevocation.js"

/** The `type` of every message. */
export const MessageType = {
  auth: "handshake.auth",
  challenge: "handshake.challenge",
  challengeResponse: "handshake.challenge_response",
  complete: "handshake.complete",
  error: "handshake.error"
} as const

const Field = (max: number, what: string) =>
  Schema.String.pipe(
    Schema.filter((s) => (s.length >= 1 && s.length <= max) || `must be ${what}: a string of 1 to ${max} characters`)
  )

/**
 * Client → server, first message. The token fields are checked in depth by the ConsentVerifier (alphabet,
 * lengths, signature); here they only have to be strings of a plausible size.
 */
export const HandshakeAuth = Schema.Struct({
  type: Schema.Literal(MessageType.auth),
  consent_token_payload: Field(16_384, "base64url of the consent claims"),
  consent_token_signature: Field(128, "an Ed25519 signature"),
  patient_agent_id: Schema.String.pipe(
    Schema.filter((s) => /^[\x20-\x7e]{1,256}$/.test(s) || "must be 1 to 256 printable ASCII characters")
  ),
  patient_public_key: Field(64, "an Ed25519 public key"),
  patient_endpoint: Field(2048, "the patient agent's endpoint")
}).annotations({ identifier: "HandshakeAuth" })
/** @see HandshakeAuth */
export type HandshakeAuth = typeof HandshakeAuth.Type

/** Client → server, second and last message: the signature over the 32 raw nonce bytes. */
export const HandshakeChallengeResponse = Schema.Struct({
  type: Schema.Literal(MessageType.challengeResponse),
  signed_nonce: Field(128, "an Ed25519 signature")
}).annotations({ identifier: "HandshakeChallengeResponse" })
/** @see HandshakeChallengeResponse */
export type HandshakeChallengeResponse = typeof HandshakeChallengeResponse.Type

/** Server → client: prove possession of the key. */
export const HandshakeChallenge = Schema.Struct({
  type: Schema.Literal(MessageType.challenge),
  nonce: Schema.String.pipe(Schema.pattern(/^[0-9a-f]{64}$/)),
  provider_npi: Schema.String,
  organization_npi: Schema.String,
  expires_at: Schema.String
}).annotations({ identifier: "HandshakeChallenge" })
/** @see HandshakeChallenge */
export type HandshakeChallenge = typeof HandshakeChallenge.Type

/** Server → client: the relationship, then the server closes with 1000. */
export const HandshakeComplete = Schema.Struct({
  type: Schema.Literal(MessageType.complete),
  relationship_id: Schema.String,
  provider_npi: Schema.String,
  provider_endpoint: Schema.String,
  status: Schema.Literal("new", "existing")
}).annotations({ identifier: "HandshakeComplete" })
/** @see HandshakeComplete */
export type HandshakeComplete = typeof HandshakeComplete.Type

/** The error codes of section 2. */
export const HandshakeErrorCode = Schema.Literal(
  "AUTH_TIMEOUT",
  "INVALID_MESSAGE",
  "CONSENT_FAILED",
  "PROVIDER_NOT_FOUND",
  "SERVER_ERROR"
)
/** @see HandshakeErrorCode */
export type HandshakeErrorCode = typeof HandshakeErrorCode.Type

/** The close code that follows each error code. */
export const closeCodeOf: Readonly<Record<HandshakeErrorCode, number>> = {
  AUTH_TIMEOUT: 4001,
  INVALID_MESSAGE: 4002,
  CONSENT_FAILED: 4003,
  PROVIDER_NOT_FOUND: 4004,
  SERVER_ERROR: 1011
}

/** Server → client: why the handshake ends; the close frame with `closeCodeOf[code]` follows. */
export const HandshakeErrorMessage = Schema.Struct({
  type: Schema.Literal(MessageType.error),
  // A string on the way in, so that a client can still read codes a newer server adds.
  code: Schema.String,
  message: Schema.String
}).annotations({ identifier: "HandshakeErrorMessage" })
/** @see HandshakeErrorMessage */
export type HandshakeErrorMessage = typeof HandshakeErrorMessage.Type

/** Anything the server sends (`consent.revoked`: the answer to a revocation sent as the first message). */
export const ServerMessage = Schema.Union(
  HandshakeChallenge,
  HandshakeComplete,
  HandshakeErrorMessage,
  ConsentRevokedMessage
)
/** @see ServerMessage */
export type ServerMessage = typeof ServerMessage.Type

/** A refused handshake, as sent to the peer: the message never carries internals or secrets. */
export class HandshakeFailure extends Schema.TaggedError<HandshakeFailure>()("HandshakeFailure", {
  code: HandshakeErrorCode,
  message: Schema.String
}) {
  /** The close code that goes with `code`. */
  get closeCode(): number {
    return closeCodeOf[this.code]
  }
}

/** An `INVALID_MESSAGE` failure. */
export const invalidMessage = (message: string) => new HandshakeFailure({ code: "INVALID_MESSAGE", message })

/** One frame as a JSON object, or the `INVALID_MESSAGE` refusal saying why it is not one. */
const parseObject = (frame: string | Uint8Array): { readonly type?: unknown } | HandshakeFailure => {
  if (typeof frame !== "string") {
    return invalidMessage("binary frames are not accepted: send one JSON object per text frame")
  }
  const json = Json.parseUntrusted(frame)
  if (Either.isLeft(json)) {
    return invalidMessage(
      json.left === "too_deep" ? `the frame ${Json.describeRefusal(json.left)}` : "the frame is not valid JSON"
    )
  }
  const value = json.right
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return invalidMessage("the frame must hold one JSON object")
  }
  return value
}

/** A `type` that is not one of `expected` (quoted, joined with "or"). */
const wrongType = (type: unknown, expected: string) =>
  Either.left(invalidMessage(
    type === undefined ? `type: is required (expected ${expected})` : `type: expected ${expected}`
  ))

const decoderOf = <A, I>(schema: Schema.Schema<A, I>) => {
  const decode = Schema.decodeUnknownEither(schema, { errors: "all" })
  return (value: unknown): Either.Either<A, HandshakeFailure> =>
    Either.mapLeft(decode(value), (error) => invalidMessage(describeParseError(error)))
}

/**
 * Decodes one frame as the message `schema` expects: a text frame holding one JSON object of the right
 * `type` with every field well-formed. Each refusal says what was wrong and names the field.
 */
export const decodeFrame = <A extends { readonly type: string }, I>(
  schema: Schema.Schema<A, I>,
  expected: A["type"]
) => {
  const decode = decoderOf(schema)
  return (frame: string | Uint8Array): Either.Either<A, HandshakeFailure> => {
    const value = parseObject(frame)
    if (value instanceof HandshakeFailure) return Either.left(value)
    return value.type === expected ? decode(value) : wrongType(value.type, `"${expected}"`)
  }
}

/** The first message of a handshake socket: the handshake's `handshake.auth`, or a patient's `consent.revoke`. */
export type FirstMessage = HandshakeAuth | ConsentRevokeMessage

/**
 * Decodes the first frame of a handshake socket (PROTOCOL.md sections 2 and 8): `handshake.auth`, tested first
 * (the handshake's cost is that of `decodeFrame`), or `consent.revoke`; any other `type` is refused naming both.
 */
export const decodeFirstMessage: (frame: string | Uint8Array) => Either.Either<FirstMessage, HandshakeFailure> =
  (() => {
    const auth = decoderOf(HandshakeAuth)
    const revoke = decoderOf(ConsentRevokeMessage)
    const expected = `"${MessageType.auth}" or "${RevocationMessageType.revoke}"`
    return (frame) => {
      const value = parseObject(frame)
      if (value instanceof HandshakeFailure) return Either.left(value)
      const type = value.type
      if (type === MessageType.auth) return auth(value)
      return type === RevocationMessageType.revoke ? revoke(value) : wrongType(type, expected)
    }
  })()

/** The JSON text of a server message. */
export const encodeServerMessage = (message: ServerMessage): string => JSON.stringify(message)
